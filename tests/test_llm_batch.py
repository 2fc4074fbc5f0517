"""Batch mode against stub servers implementing the batch endpoints (started here on 127.0.0.1):
the same log as live mode given the same answers, half the price, a live fallback for expired
batches, and a run killed while its batch is pending resumes without submitting it again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from llm_stub_server import StubLLMServer, mind_responder
from test_replay_support import rows

from friendsim.llm.anthropic_provider import AnthropicLLM
from friendsim.llm.base import LLM, Completion, LLMRequest, user
from friendsim.llm.batch import BatchingLLM, BatchJournal, PollPolicy
from friendsim.llm.scripted import ScriptedLLM
from friendsim.replay.resume import resume
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import ExperimentConfig, parse_config
from friendsim.runtime.engine import RunInterrupted


def config(provider: str, *, agents: int = 30, batch: bool = False) -> ExperimentConfig:
    return parse_config(
        {
            "experiment": {"name": "batch", "seed": 7, "rounds": 2, "n_actions": 2},
            "agents": {"count": agents, "policy": "llm"},
            "llm": {
                "provider": provider,
                "retries": 0,
                "cache": "read_through",
                "batch": batch,
                "batch_poll_s": 0.05,
            },
            "rewards": {"sentiment": "lexicon"},
        }
    )


def live_paths(stub: StubLLMServer) -> list[str]:
    return [r.path for r in stub.requests if r.path in ("/v1/chat/completions", "/v1/messages")]


async def test_openai_batch_run_equals_live_run_at_half_price(tmp_path: Path) -> None:
    with StubLLMServer(responder=mind_responder(0)) as live:
        spec = f"openai:{live.openai_base_url}#gpt-4o-mini"
        await run_experiment(config(spec), out_dir=tmp_path / "live")
    with StubLLMServer(responder=mind_responder(0)) as stub:
        spec = f"openai:{stub.openai_base_url}#gpt-4o-mini"
        result = await run_experiment(config(spec, batch=True), out_dir=tmp_path / "batch")
    assert result.manifest.status == "completed"
    assert rows(tmp_path / "batch" / "events.db") == rows(tmp_path / "live" / "events.db")
    assert live_paths(stub) == []  # every answer came through a batch
    assert len(stub.batch_creates) >= 4  # 2 rounds x (plans, texts, votes) at least
    sent = sum(len(keys) for _, _, keys in stub.batch_creates)
    assert sent == len(live_paths(live))
    paths = {r.path for r in stub.requests}
    assert "/v1/files" in paths and any(p.startswith("/v1/batches/") for p in paths)
    b = result.manifest.llm_usage["total"]
    lv = json.loads((tmp_path / "live" / "manifest.json").read_text())["llm_usage"]["total"]
    assert b["batch_calls"] == b["calls"] - b["cache_hits"] == sent
    assert b["input_tokens"] == lv["input_tokens"] and b["output_tokens"] == lv["output_tokens"]
    # prompt caching on both sides; batch answers at half price
    assert b["uncached_cost_usd"] == pytest.approx(lv["uncached_cost_usd"] / 2, rel=1e-6)
    assert result.manifest.files.llm_batches == "llm_batches.db"


async def test_anthropic_message_batches_equal_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    outs = {}
    for mode in ("live", "batch"):
        with StubLLMServer(responder=mind_responder(0)) as stub:

            def factory(spec: str, url: str = stub.base_url) -> LLM:
                return AnthropicLLM("claude-haiku-4-5", base_url=url)

            cfg = config("anthropic:claude-haiku-4-5", agents=8, batch=mode == "batch")
            await run_experiment(cfg, out_dir=tmp_path / mode, llm_factory=factory)
            outs[mode] = stub
    assert rows(tmp_path / "batch" / "events.db") == rows(tmp_path / "live" / "events.db")
    assert live_paths(outs["batch"]) == []
    assert outs["batch"].batch_creates and all(
        api == "anthropic" for api, _, _ in outs["batch"].batch_creates
    )


async def test_expired_batches_fall_back_to_live_calls(tmp_path: Path) -> None:
    with StubLLMServer(responder=mind_responder(0)) as live:
        await run_experiment(
            config(f"openai:{live.openai_base_url}#gpt-4o-mini", agents=6), out_dir=tmp_path / "a"
        )
    with StubLLMServer(responder=mind_responder(0), expire_batches=True) as stub:
        spec = f"openai:{stub.openai_base_url}#gpt-4o-mini"
        result = await run_experiment(config(spec, agents=6, batch=True), out_dir=tmp_path / "b")
    assert result.manifest.status == "completed"
    assert rows(tmp_path / "b" / "events.db") == rows(tmp_path / "a" / "events.db")
    asked = sum(len(keys) for _, _, keys in stub.batch_creates)
    assert asked > 0 and len(live_paths(stub)) == asked  # each expired item asked live once
    assert result.manifest.llm_usage["total"]["batch_calls"] == 0


CHILD = """
import asyncio, sys
from friendsim.runtime.config import parse_config
from friendsim.runtime.assembly import run_experiment
import json
cfg = parse_config(json.loads(sys.argv[1]))
asyncio.run(run_experiment(cfg, out_dir=sys.argv[2]))
"""


def journal_rows(run: Path) -> list[tuple[Any, ...]]:
    db = run / "llm_batches.db"
    if not db.is_file():
        return []
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT * FROM batches").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def kill_when_a_batch_is_pending(cfg: ExperimentConfig, run: Path) -> None:
    """Run ``cfg`` in a child process; SIGKILL it once a submitted batch is in its journal."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(cfg.model_dump(mode="json")), str(run)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 60
        while not journal_rows(run) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # it is polling the held batch now
        assert child.poll() is None
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


async def test_killed_while_a_batch_is_pending_resumes_without_resubmitting(
    tmp_path: Path,
) -> None:
    with StubLLMServer(responder=mind_responder(0)) as live:
        await run_experiment(
            config(f"openai:{live.openai_base_url}#gpt-4o-mini", agents=8), out_dir=tmp_path / "a"
        )
    with StubLLMServer(responder=mind_responder(0), hold_batches=True) as stub:
        spec = f"openai:{stub.openai_base_url}#gpt-4o-mini"
        cfg = config(spec, agents=8, batch=True)
        run = tmp_path / "run"
        kill_when_a_batch_is_pending(cfg, run)
        pending = journal_rows(run)
        assert len(pending) == len(stub.batch_creates) >= 1
        assert all(state == "pending" for _, _, state, _ in pending)
        held = {bid for _, bid, _ in stub.batch_creates}
        creates_before = len(stub.batch_creates)
        requests_before = len(stub.requests)
        stub.release_batches()
        report = await resume(run)
        assert report.status == "completed"
    assert rows(run / "events.db") == rows(tmp_path / "a" / "events.db")
    keys = [k for _, _, ks in stub.batch_creates for k in ks]
    assert len(keys) == len(set(keys))  # no request was ever submitted twice
    assert len(stub.batch_creates) > creates_before  # later phases were batched after resuming
    resumed = [r.path for r in stub.requests[requests_before:] if r.path.startswith("/v1/batches/")]
    assert held <= {p.rsplit("/", 1)[-1] for p in resumed}  # the held batches were collected
    assert live_paths(stub) == []


async def test_a_resumed_batch_run_counts_its_replayed_answers_at_batch_prices(
    tmp_path: Path,
) -> None:
    """The answers a budget-stopped batch run paid half price for are replayed by its resume at
    that price: the resume's budget spends what the whole batch run costs (it counted them at the
    live price, twice what was paid)."""
    with StubLLMServer(responder=mind_responder(0)) as stub:
        spec = f"openai:{stub.openai_base_url}#gpt-4o-mini"
        full = await run_experiment(config(spec, agents=8, batch=True), out_dir=tmp_path / "full")
    cost = full.manifest.llm_usage["total"]["cost_usd"]
    assert full.manifest.llm_usage["total"]["batch_calls"] > 0
    with StubLLMServer(responder=mind_responder(0)) as stub:  # its prompt cache cold again
        spec = f"openai:{stub.openai_base_url}#gpt-4o-mini"
        cfg = config(spec, agents=8, batch=True)
        cfg = cfg.model_copy(update={"llm": cfg.llm.model_copy(update={"budget_usd": cost * 0.6})})
        run = tmp_path / "run"
        with pytest.raises(RunInterrupted):
            await run_experiment(cfg, out_dir=run)
        paid = json.loads((run / "manifest.json").read_text())["llm_usage"]["total"]["cost_usd"]
        assert paid > 0
        report = await resume(run, budget_usd=cost * 10)
        assert report.status == "completed"
    done = json.loads((run / "manifest.json").read_text())
    assert done["llm_usage"]["total"]["replayed_cost_usd"] == pytest.approx(paid, rel=1e-6)
    assert done["budget"]["spent_usd"] == pytest.approx(cost, rel=1e-6)
    assert rows(run / "events.db") == rows(tmp_path / "full" / "events.db")


class SlowSubmitBackend:
    """A unit-test backend whose submission takes a while (requests keep arriving meanwhile)."""

    name = "fake"

    def __init__(self) -> None:
        self.batches: dict[str, list[tuple[str, LLMRequest]]] = {}

    async def submit(self, items: Any) -> str:
        await asyncio.sleep(0.3)
        bid = f"b{len(self.batches)}"
        self.batches[bid] = list(items)
        return bid

    async def poll(self, batch_id: str) -> str:
        return "ended"

    async def results(self, batch_id: str) -> dict[str, Any]:
        return {k: f"batched {r.messages[0].content}" for k, r in self.batches[batch_id]}

    def decode(self, request: LLMRequest, raw: Any) -> Completion:
        return Completion(text=raw, model="m", provider="fake", batch=True)


async def test_requests_arriving_during_a_submission_are_batched_next(tmp_path: Path) -> None:
    backend = SlowSubmitBackend()
    journal = BatchJournal(tmp_path / "j.db")
    llm = BatchingLLM(
        ScriptedLLM(default="live"),
        backend,  # type: ignore[arg-type]
        journal,
        poll=PollPolicy(first=0.01, most=0.01, gather_s=0.05),
    )
    first = asyncio.create_task(llm.complete(LLMRequest(messages=(user("a"),))))
    await asyncio.sleep(0.15)  # the first batch is being submitted now
    second = await llm.complete(LLMRequest(messages=(user("b"),)))
    assert (await first).text == "batched a" and second.text == "batched b"
    assert second.batch and len(backend.batches) == 2
    assert [state for _, _, state, _ in journal.rows()] == ["collected", "collected"]
    journal.close()
