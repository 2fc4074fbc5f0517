"""Cost accounting, the SQLite record/replay cache, and the stacked build_llm."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from friendsim.llm import (
    CacheMissError,
    Completion,
    Ledger,
    LLMRequest,
    Price,
    PriceTable,
    ProviderConfigError,
    ScriptedLLM,
    ServerError,
    Usage,
    build_llm,
    user,
)
from friendsim.llm.accounting import AccountingLLM
from friendsim.llm.cache import CacheMode, CachingLLM, LLMCache


def req(text: str = "hi", **kw: object) -> LLMRequest:
    return LLMRequest(messages=(user(text),), **kw)  # type: ignore[arg-type]


def test_price_cost_splits_cached_and_written_input() -> None:
    price = Price(input=1.0, output=5.0, cached_input=0.1, cache_write=1.25)
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=200_000,
        cached_input_tokens=500_000,
        cache_write_tokens=100_000,
    )
    # 400k plain * 1 + 500k * 0.1 + 100k * 1.25 + 200k * 5  (per 1M)
    assert price.cost(usage) == pytest.approx(0.4 + 0.05 + 0.125 + 1.0)


def test_price_table_lookup_order_and_unpriced() -> None:
    table = PriceTable(
        {
            "openai:m": {"input": 1, "output": 2},
            "m2": {"input": 3, "output": 4},
            "local:*": {"input": 0, "output": 0},
        }
    )
    assert table.price_for("openai", "m") == Price(input=1, output=2)
    assert table.price_for("x", "m2") == Price(input=3, output=4)
    assert table.price_for("local", "anything") == Price(input=0, output=0)
    assert table.price_for("openai", "nope") is None
    assert table.unpriced == {"openai:nope"}


def test_price_table_rejects_bad_entries() -> None:
    with pytest.raises(ProviderConfigError, match=r"'bad'.*'input' and 'output'"):
        PriceTable({"bad": {"input": 1}})
    with pytest.raises(ProviderConfigError, match="'bad2'"):
        PriceTable({"bad2": {"input": 1, "output": 1, "extra": 2}})


async def test_accounting_per_label_with_errors_and_cost() -> None:
    inner = ScriptedLLM(["a" * 400, ServerError("x", status=500), "b" * 40], model="m")
    ledger = Ledger(PriceTable({"scripted:m": {"input": 10.0, "output": 20.0}}))
    llm = AccountingLLM(inner, ledger)
    await llm.complete(req("p" * 80, label="plan"))
    with pytest.raises(ServerError):
        await llm.complete(req(label="plan"))
    await llm.complete(req("q" * 40, label="vote"))
    plan = ledger.entries[("scripted", "m", "plan")]
    vote = ledger.entries[("scripted", "m", "vote")]
    assert (plan.calls, plan.errors, plan.usage.input_tokens, plan.usage.output_tokens) == (
        1,
        1,
        20,
        100,
    )
    assert (vote.calls, vote.usage.input_tokens, vote.usage.output_tokens) == (1, 10, 10)
    assert plan.cost_usd == pytest.approx((20 * 10 + 100 * 20) / 1e6)
    total = ledger.to_json()["total"]
    assert total["calls"] == 2 and total["errors"] == 1 and total["output_tokens"] == 110


async def test_cache_record_then_replay_and_miss(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    live = ScriptedLLM(lambda r: {"echo": r.messages[-1].content}, model="m")
    rec = CachingLLM(live, await LLMCache.open(path), "record")
    schema = {"type": "object"}
    a = await rec.complete(req("one", json_schema=schema, label="plan"))
    await rec.complete(req("two"))
    assert rec.stored == 2 and a.parsed == {"echo": "one"}
    await rec.aclose()
    assert live.closed

    dead = ScriptedLLM([], model="m")  # would raise if called
    rep = CachingLLM(dead, await LLMCache.open(path), CacheMode.REPLAY)
    got = await rep.complete(req("one", json_schema=schema, label="other-label"))
    assert got.cached and got.parsed == {"echo": "one"} and got.text == a.text
    assert got.usage == a.usage and got.latency_s == 0.0
    with pytest.raises(CacheMissError, match=r"label='vote'.*'three'"):
        await rep.complete(req("three", label="vote"))
    with pytest.raises(CacheMissError):  # a different model is a different key
        await CachingLLM(
            ScriptedLLM([], model="other"), rep.cache, "replay", owns_cache=False
        ).complete(req("one", json_schema=schema))
    assert dead.calls == [] and rep.hits == 1 and rep.misses == 1
    await rep.aclose()
    with sqlite3.connect(path) as db:
        labels = sorted(r[0] for r in db.execute("SELECT label FROM llm_cache"))
    assert labels == ["default", "plan"]


async def test_a_batch_answer_is_replayed_at_its_batch_price(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    usage = Usage(input_tokens=1000, output_tokens=100)
    answers = iter(
        [
            Completion(text="b", model="m", usage=usage, provider="openai", batch=True),
            Completion(text="l", model="m", usage=usage, provider="openai"),
        ]
    )  # replay never asks: a third call would raise StopIteration

    class Answers:
        model = "openai:m"

        async def complete(self, request: LLMRequest) -> Completion:
            return next(answers)

        async def aclose(self) -> None:
            return None

    rec = CachingLLM(Answers(), await LLMCache.open(path), "record")
    await rec.complete(req("one"))
    await rec.aclose()
    prices = PriceTable({"openai:m": {"input": 1.0, "output": 2.0}})
    ledger = Ledger(prices)
    rep = AccountingLLM(CachingLLM(Answers(), await LLMCache.open(path), "replay"), ledger)
    got = await rep.complete(req("one"))
    assert got.cached and got.batch
    assert ledger.total().replayed_cost_usd == pytest.approx(0.5 * (1000 * 1.0 + 100 * 2.0) / 1e6)
    assert ledger.total().cost_usd == 0 and ledger.total().batch_calls == 0
    await rep.aclose()
    rec = CachingLLM(Answers(), await LLMCache.open(path), "record")  # a live answer replaces it
    await rec.complete(req("one"))
    await rec.aclose()
    again = CachingLLM(Answers(), await LLMCache.open(path), "replay")
    assert not (await again.complete(req("one"))).batch
    await again.aclose()


async def test_read_through_hits_and_coalesces_concurrent_misses(tmp_path: Path) -> None:
    live = ScriptedLLM(lambda r: "answer", latency_s=0.05)
    llm = CachingLLM(live, await LLMCache.open(tmp_path / "c.sqlite"), "read-through")
    results = await asyncio.gather(*(llm.complete(req("same")) for _ in range(5)))
    assert len(live.calls) == 1
    assert [r.cached for r in results].count(False) == 1
    assert (await llm.complete(req("same"))).cached
    await llm.complete(req("different"))
    assert len(live.calls) == 2 and llm.hits == 5 and llm.misses == 2
    await llm.aclose()


async def test_read_through_failure_is_not_cached(tmp_path: Path) -> None:
    live = ScriptedLLM([ServerError("x", status=500), "fine"])
    llm = CachingLLM(live, await LLMCache.open(tmp_path / "c.sqlite"), "read_through")
    with pytest.raises(ServerError):
        await llm.complete(req())
    assert (await llm.complete(req())).text == "fine"
    assert await llm.cache.count() == 1
    await llm.aclose()


async def test_a_failed_call_is_recorded_redacted_and_comes_back_as_the_same_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache whose calls all succeed gets no failure table (its file is as before failures
    were recorded); a failed call is recorded, secrets redacted, and read back (another open)
    as an error of the same class, message and status; a replay's miss is not recorded."""
    monkeypatch.setenv("FRIENDSIM_TEST_API_KEY", "s3cret-value-1234")
    path = tmp_path / "c.sqlite"
    ok = CachingLLM(ScriptedLLM(lambda r: "fine"), await LLMCache.open(path), "read_through")
    await ok.complete(req("ok"))
    await ok.aclose()
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"llm_cache"}

    error = ServerError("upstream said s3cret-value-1234 is bad", status=503)
    llm = CachingLLM(ScriptedLLM([error]), await LLMCache.open(path), "read_through")
    with pytest.raises(ServerError) as raised:
        await llm.complete(req("down"))
    await llm.aclose()
    assert raised.value is error  # the caller gets the error itself
    replay = CachingLLM(ScriptedLLM([]), await LLMCache.open(path), "replay")
    try:
        with pytest.raises(CacheMissError):
            await replay.complete(req("never asked"))
        key = req("down").cache_key(replay.model)
        recorded = replay.cache.failure(key)
        missed = replay.cache.failure(req("never asked").cache_key(replay.model))
        answered = replay.cache.has(req("ok").cache_key(replay.model))
        has_down = replay.cache.has(key)
    finally:
        await replay.aclose()  # an open cache's thread would keep the test process alive
    assert recorded is not None and not has_down
    again = recorded.to_error()
    assert type(again) is ServerError and again.status == 503
    assert str(again) == "upstream said *** is bad"
    assert missed is None and answered
    assert b"s3cret-value-1234" not in path.read_bytes()


def test_unknown_cache_mode() -> None:
    with pytest.raises(ProviderConfigError, match="unknown cache mode 'sometimes'"):
        CacheMode.parse("sometimes")


async def test_build_llm_stack_order_and_replay(tmp_path: Path) -> None:
    path = tmp_path / "run" / "llm.sqlite"
    script = [ServerError("x", status=503), "first", "second"]
    stack = await build_llm(
        ScriptedLLM(script, model="m"),
        concurrency=2,
        rpm=60_000,
        retries=3,
        cache_path=path,
        cache_mode="record",
        prices={"scripted:m": {"input": 1, "output": 1}},
    )
    outs = [await stack.complete(req(t)) for t in ("a", "b")]
    assert [o.text for o in outs] == ["first", "second"]
    assert stack.retry is not None and stack.retry.stats.retries == 1
    assert stack.concurrency is not None and stack.concurrency.max_in_flight == 1
    assert stack.ledger.total().calls == 2 and stack.ledger.total().errors == 0
    await stack.aclose()

    replay = await build_llm(ScriptedLLM([], model="m"), cache_path=path, cache_mode="replay")
    again = await replay.complete(req("b"))
    assert again.text == "second" and again.cached
    tot = replay.ledger.total()
    assert (tot.calls, tot.cache_hits, tot.usage.output_tokens, tot.cost_usd) == (1, 1, 0, 0.0)
    await replay.aclose()


async def test_build_llm_cache_mode_needs_path() -> None:
    with pytest.raises(ProviderConfigError, match="needs a cache_path"):
        await build_llm("scripted", cache_mode="replay")


async def test_completion_passthrough_keeps_provider_fields() -> None:
    ready = Completion(text="t", model="mm", provider="pp", usage=Usage(input_tokens=3))
    stack = await build_llm(ScriptedLLM([ready]), concurrency=None, retries=0)
    assert (await stack.complete(req())).provider == "pp"
    assert ("pp", "mm", "default") in stack.ledger.entries


async def test_concurrent_replay_gets_each_request_its_own_answer(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    live = ScriptedLLM(lambda r: {"n": int(r.messages[-1].content)})
    schema = {"type": "object"}
    rec = CachingLLM(live, await LLMCache.open(path), "record")
    await asyncio.gather(*(rec.complete(req(str(i), json_schema=schema)) for i in range(300)))
    await rec.aclose()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM llm_cache").fetchone() == (300,)

    rep = CachingLLM(ScriptedLLM([]), await LLMCache.open(path), "replay")
    order = list(range(300))[::-1]
    outs = await asyncio.gather(*(rep.complete(req(str(i), json_schema=schema)) for i in order))
    assert [o.parsed["n"] for o in outs] == order
    assert all(o.cached for o in outs) and rep.hits == 300
    await rep.aclose()


@pytest.mark.parametrize("retries", [0, 2])
async def test_attempts_are_the_requests_sent_with_or_without_retries(retries: int) -> None:
    """The ledger's attempts used to be counted by the retry layer only: with ``retries = 0``
    the manifest said 0 requests sent for a run that sent every one of them."""
    script = ["one", ServerError("x", status=503), "three"]
    stack = await build_llm(ScriptedLLM(script, model="m"), retries=retries)
    assert (await stack.complete(req("a"))).text == "one"
    if retries:
        assert (await stack.complete(req("b"))).text == "three"
    else:
        with pytest.raises(ServerError):
            await stack.complete(req("b"))
        assert (await stack.complete(req("c"))).text == "three"
    total = stack.ledger.total()
    assert total.attempts == 3
    assert (total.calls, total.errors) == ((2, 0) if retries else (2, 1))
    await stack.aclose()
