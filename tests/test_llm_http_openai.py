"""The OpenAI provider (and endpoint pool) over real HTTP against the local stub server."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from llm_stub_server import NeverAccepting, StubLLMServer, StubReply

from friendsim.llm import (
    LLMConnectionError,
    LLMRequest,
    LLMTimeoutError,
    MalformedResponseError,
    PermanentLLMError,
    PooledLLM,
    ProviderConfigError,
    RateLimitedError,
    build_llm,
    create_llm,
    user,
)
from friendsim.llm.http_reply import HTTPReply, error_text
from friendsim.llm.openai_provider import OpenAIChatLLM
from friendsim.llm.retry import RetryingLLM, RetryPolicy

SYSTEM = "You are Bo, a playful gardener who posts about soil. " * 6
SCHEMA = {"type": "object", "properties": {"tone": {"type": "string"}}, "required": ["tone"]}
ANSWER = {"tone": "supportive", "k": [1, 2]}


@pytest.fixture
def stub() -> Iterator[StubLLMServer]:
    with StubLLMServer(json_answer=ANSWER) as server:
        yield server


def req(text: str = "hello", **kw: object) -> LLMRequest:
    return LLMRequest(system=SYSTEM, messages=(user(text),), **kw)  # type: ignore[arg-type]


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_success_request_shape_usage_and_cached_tokens(
    stub: StubLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_KEY", "dummy-vllm-key")
    llm = create_llm(f"openai:{stub.openai_base_url}#my-model", api_key_env="VLLM_KEY")
    assert isinstance(llm, OpenAIChatLLM) and llm.model == "openai:my-model"
    first = await llm.complete(req("hi", temperature=0.3, max_tokens=50, seed=9))
    second = await llm.complete(req("again"))
    await llm.aclose()
    assert first.text == "echo: hi" and first.parsed is None and first.provider == "openai"
    sent = stub.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer dummy-vllm-key"
    body = sent.body
    assert body["model"] == "my-model" and body["temperature"] == 0.3
    assert body["max_tokens"] == 50 and body["seed"] == 9 and "response_format" not in body
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "hi"},
    ]
    assert first.usage.cached_input_tokens == 0
    assert second.usage.cached_input_tokens == len(SYSTEM) // 4
    assert first.usage.input_tokens == len(json.dumps(body["messages"])) // 4
    assert first.usage.output_tokens == len("echo: hi") // 4 or first.usage.output_tokens == 1


async def test_custom_base_url_never_gets_the_openai_key(
    stub: StubLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-secret")
    llm = OpenAIChatLLM("m", base_url=stub.openai_base_url)
    await llm.complete(req())
    await llm.aclose()
    assert stub.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_default_endpoint_needs_openai_key() -> None:
    with pytest.raises(ProviderConfigError, match="OPENAI_API_KEY is not set"):
        create_llm("openai:gpt-4o-mini")


async def test_json_schema_structured_output(stub: StubLLMServer) -> None:
    llm = OpenAIChatLLM("m", base_url=stub.openai_base_url)
    out = await llm.complete(req(json_schema=SCHEMA))
    assert out.parsed == ANSWER
    assert stub.requests[-1].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": SCHEMA, "strict": False},
    }
    assert llm.json_mode == "json_schema" and llm.downgrades == 0
    await llm.aclose()


async def test_fallback_to_json_object_is_remembered() -> None:
    with StubLLMServer(json_answer=ANSWER, supports_json_schema=False) as server:
        llm = OpenAIChatLLM("m", base_url=server.openai_base_url)
        out1 = await llm.complete(req(json_schema=SCHEMA))
        out2 = await llm.complete(req("two", json_schema=SCHEMA))
        await llm.aclose()
    kinds = [r.body["response_format"]["type"] for r in server.requests]
    assert kinds == ["json_schema", "json_object", "json_object"]
    assert out1.parsed == out2.parsed == ANSWER
    assert llm.json_mode == "json_object" and llm.downgrades == 1
    system = server.requests[1].body["messages"][0]["content"]
    assert system.startswith(SYSTEM) and '"required": ["tone"]' in system


async def test_fallback_to_prompting_extracts_json_from_prose() -> None:
    with StubLLMServer(json_answer=ANSWER, supports_response_format=False) as server:
        llm = RetryingLLM(OpenAIChatLLM("m", base_url=server.openai_base_url))
        out = await llm.complete(req(json_schema=SCHEMA))
        plain = await llm.complete(req("no schema"))
        await llm.aclose()
    assert [("response_format" in r.body) for r in server.requests] == [True, True, False, False]
    assert out.text.startswith("Sure!") and out.parsed == ANSWER
    assert plain.parsed is None and plain.text == "echo: no schema"
    assert llm.stats.retries == 0  # downgrades are not retries


async def test_other_400_is_permanent(stub: StubLLMServer) -> None:
    stub.enqueue(StubReply(status=400, body={"error": {"message": "context too long"}}))
    llm = RetryingLLM(OpenAIChatLLM("m", base_url=stub.openai_base_url))
    with pytest.raises(PermanentLLMError, match="context too long"):
        await llm.complete(req(json_schema=SCHEMA))
    assert len(stub.requests) == 1 and llm.stats.retries == 0
    await llm.aclose()


async def test_invalid_schema_400_does_not_downgrade(stub: StubLLMServer) -> None:
    message = "Invalid schema for response_format 'response': 'required' is missing"
    stub.enqueue(StubReply(status=400, body={"error": {"message": message}}))
    llm = OpenAIChatLLM("m", base_url=stub.openai_base_url)
    with pytest.raises(PermanentLLMError, match="Invalid schema"):
        await llm.complete(req(json_schema=SCHEMA))
    assert llm.json_mode == "json_schema" and llm.downgrades == 0 and len(stub.requests) == 1
    await llm.aclose()


async def test_429_retry_after_500_and_timeout_are_retried_and_counted(
    stub: StubLLMServer,
) -> None:
    stub.enqueue(
        StubReply(status=429, headers={"retry-after": "2"}),
        StubReply(status=500),
        StubReply(status=502),
    )
    sleeps = Sleeps()
    llm = RetryingLLM(
        OpenAIChatLLM("m", base_url=stub.openai_base_url, timeout_s=0.3),
        RetryPolicy(max_retries=5, base_delay_s=0.1, jitter=0.0),
        sleep=sleeps,
    )
    out = await llm.complete(req())
    assert out.text == "echo: hello"
    assert sleeps.waits == [2.0, 0.2, 0.4]  # Retry-After, then backoff 0.1*2**1, 0.1*2**2
    assert llm.stats.retries == 3 and llm.stats.attempts == 4
    assert dict(llm.stats.by_error) == {"RateLimitedError": 1, "ServerError": 2}
    assert len(stub.requests) == 4

    stub.enqueue(StubReply(delay_s=2.0))
    out = await llm.complete(req("slow"))
    assert out.text == "echo: slow" and llm.stats.by_error["LLMTimeoutError"] == 1
    stub.enqueue(StubReply(delay_s=2.0))
    with pytest.raises(LLMTimeoutError):
        await llm.inner.complete(req())
    stub.enqueue(StubReply(status=429, headers={"retry-after": "7"}))
    with pytest.raises(RateLimitedError) as info:
        await llm.inner.complete(req())
    assert info.value.retry_after == 7.0
    await llm.aclose()


@pytest.mark.parametrize(
    "reply",
    [
        StubReply(body=b"{not json"),
        StubReply(body={"choices": []}),
        StubReply(body={"id": "x"}),
        StubReply(body=b"plain text", headers={"content-type": "text/plain"}),
    ],
)
async def test_malformed_bodies(stub: StubLLMServer, reply: StubReply) -> None:
    """A malformed 200 body is transient: raised as MalformedResponseError, retried like a
    truncated body, and the next (good) answer is returned."""
    stub.enqueue(reply)
    with pytest.raises(MalformedResponseError):
        await OpenAIChatLLM("m", base_url=stub.openai_base_url).complete(req())
    stub.enqueue(reply)
    llm = RetryingLLM(
        OpenAIChatLLM("m", base_url=stub.openai_base_url), RetryPolicy(base_delay_s=0.01)
    )
    done = await llm.complete(req())
    assert done.text.startswith("echo:")
    assert llm.stats.retries == 1 and llm.stats.by_error["MalformedResponseError"] == 1
    await llm.aclose()


DEEP = "[" * 200_000 + "]" * 200_000  # nested far past any JSON decoder's recursion limit


@pytest.mark.parametrize("path", ["lean", "sdk"])
async def test_a_deeply_nested_answer_is_an_invalid_answer_with_its_tokens_counted(
    path: str,
) -> None:
    """Model text nested past the decoder's limit decodes to nothing (``parsed`` None, as for
    any unparsable answer: the caller re-asks); the call itself succeeded and is counted."""
    for text in (DEEP, f"Sure:\n```json\n{DEEP}\n```", f"here {{ {DEEP} }}"):
        with StubLLMServer(responder=lambda api, body, text=text: text) as server:
            llm = OpenAIChatLLM("m", base_url=server.openai_base_url, http_path=path)  # type: ignore[arg-type]
            done = await llm.complete(req(json_schema=SCHEMA))
            await llm.aclose()
        assert done.text == text and done.parsed is None
        assert done.usage.output_tokens == len(text) // 4 > 0


@pytest.mark.parametrize("path", ["lean", "sdk"])
async def test_lone_surrogates_in_an_answer_are_replaced_where_it_is_decoded(path: str) -> None:
    """The envelope's ``\\ud800`` (and one inside the answer's own JSON) decode to U+FFFD: text
    and parsed value can be stored and logged as UTF-8."""
    answer = 'Soil \ud800 first {"tone": "kind \\udfff"}'
    with StubLLMServer(responder=lambda api, body: answer) as server:
        llm = OpenAIChatLLM("m", base_url=server.openai_base_url, http_path=path)  # type: ignore[arg-type]
        done = await llm.complete(req(json_schema=SCHEMA))
        await llm.aclose()
    assert done.text == 'Soil \ufffd first {"tone": "kind \\udfff"}'
    assert done.parsed == {"tone": "kind \ufffd"}
    done.text.encode("utf-8")


async def test_a_deeply_nested_body_is_a_malformed_answer(stub: StubLLMServer) -> None:
    stub.enqueue(StubReply(body=DEEP.encode()))
    llm = OpenAIChatLLM("m", base_url=stub.openai_base_url)
    with pytest.raises(MalformedResponseError, match="nested too deeply"):
        await llm.complete(req())
    await llm.aclose()
    # an error answer's body is read for its message: a deep one is shown as text
    assert error_text(HTTPReply(status=500, headers={}, body=DEEP.encode())).startswith("[[[")


async def test_pool_survives_a_server_dying_mid_run() -> None:
    a = StubLLMServer(text_answer="from-a").start()
    b = StubLLMServer(text_answer="from-b").start()
    try:
        stack = await build_llm(
            f"openai:{a.openai_base_url},{b.openai_base_url}#m",
            concurrency=8,
            retries=RetryPolicy(max_retries=3, base_delay_s=0.01),
            cooldown_s=5.0,
        )
        pool = stack.provider
        assert isinstance(pool, PooledLLM)
        first = await asyncio.gather(*(stack.complete(req(f"{i}")) for i in range(16)))
        assert {c.text for c in first} == {"from-a", "from-b"}
        a.stop()  # dies; its keep-alive connections are cut too
        second = await asyncio.gather(*(stack.complete(req(f"x{i}")) for i in range(16)))
        assert {c.text for c in second} == {"from-b"}
        assert pool.failovers >= 1 and pool.healthy() == [b.openai_base_url]
        assert pool.members[0].failures >= 1
        assert stack.retry is not None and stack.retry.stats.retries == 0  # failover, not retry
        tot = stack.ledger.total()
        assert tot.calls == 32 and tot.errors == 0
        assert tot.usage.input_tokens == sum(c.usage.input_tokens for c in first + second)
        b.stop()
        with pytest.raises(LLMConnectionError):
            await pool.complete(req("nobody left"))
        with pytest.raises(LLMConnectionError) as info:  # both cooling down: says how long
            await pool.complete(req("nobody left"))
        assert 0 < (info.value.retry_after or 0) <= 5.0
        await stack.aclose()
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize("http_path", ["sdk", "lean"])
async def test_a_pool_failover_passes_the_rate_limits_again(http_path: str) -> None:
    """Every request sent to an endpoint is admitted by the rpm/tpm limits: the request a
    failover sends to the next member is charged to them like the first one."""
    with (
        StubLLMServer(text_answer="a", fault=StubReply(status=503)) as a,
        StubLLMServer(text_answer="b") as b,
    ):
        pool = create_llm(
            f"openai:{a.openai_base_url},{b.openai_base_url}#m",
            http_path=http_path,
            affinity=False,
            cooldown_s=60.0,
        )
        stack = await build_llm(pool, concurrency=4, rpm=6000, tpm=10_000_000, retries=2)
        assert isinstance(pool, PooledLLM) and stack.rate is not None
        done = await stack.complete(req("over to b"))
        assert done.text == "b" and pool.failovers == 1
        sent = len(a.requests) + len(b.requests)
        assert (len(a.requests), len(b.requests)) == (1, 1)
        assert stack.rate.admitted == sent
        assert stack.ledger.total().attempts == sent
        await stack.aclose()


@pytest.mark.parametrize("http_path", ["sdk", "lean", "httpcore"])
@pytest.mark.parametrize("endpoints", [1, 2], ids=["one-server", "pool"])
async def test_the_breaker_tells_an_unreachable_provider_from_a_lost_answer(
    http_path: str, endpoints: int
) -> None:
    """Connections refused (on every member of a pool) make the provider unreachable: the
    breaker reports an outage at a window's end although fewer calls failed than open it. A
    server that takes the request and drops the connection was reached: no outage."""
    dead = [f"http://127.0.0.1:{_free_port()}/v1" for _ in range(endpoints)]
    await _assert_an_outage(await _breaker_stack(dead, http_path), dead)
    with (
        StubLLMServer(fault=StubReply(drop=True)) as a,
        StubLLMServer(fault=StubReply(drop=True)) as b,
    ):
        urls = [a.openai_base_url, b.openai_base_url][:endpoints]
        stack = await _breaker_stack(urls, http_path)
        with pytest.raises(LLMConnectionError) as dropped:
            await stack.complete(req("dropped"))
        assert not dropped.value.unreachable
        assert stack.breaker is not None and stack.breaker.outage("lost") is None
        await stack.aclose()


@pytest.mark.parametrize("http_path", ["sdk", "lean", "httpcore"])
@pytest.mark.parametrize("endpoints", [1, 2], ids=["one-server", "pool"])
async def test_a_connect_timeout_is_unreachable_and_a_read_timeout_is_not(
    http_path: str, endpoints: int
) -> None:
    """A server down without refusing (a connect times out: nothing was sent) is unreachable
    as a refused one is, and the breaker reports the outage; a server that took the request and
    never answered (a read timeout) was reached: a timeout, no outage."""
    with NeverAccepting() as a, NeverAccepting() as b:
        dead = [a.openai_base_url, b.openai_base_url][:endpoints]
        await _assert_an_outage(await _breaker_stack(dead, http_path, timeout_s=0.3), dead)
    with (
        StubLLMServer(fault=StubReply(delay_s=5.0)) as c,
        StubLLMServer(fault=StubReply(delay_s=5.0)) as d,
    ):
        urls = [c.openai_base_url, d.openai_base_url][:endpoints]
        stack = await _breaker_stack(urls, http_path, timeout_s=0.3)
        with pytest.raises((LLMTimeoutError, LLMConnectionError)) as slow:
            await stack.complete(req("slow"))  # a pool: all members cooling down after it
        assert not getattr(slow.value, "unreachable", False)
        assert c.requests, "the request reached the server"
        assert stack.breaker is not None and stack.breaker.outage("lost") is None
        await stack.aclose()


async def _breaker_stack(urls: list[str], http_path: str, **kw: Any) -> Any:
    """A stack over ``urls`` (a pool when more than one) whose breaker opens only after 10
    calls in a row failed, one quick retry per call."""
    return await build_llm(
        f"openai:{','.join(urls)}#m",
        retries=RetryPolicy(max_retries=1, base_delay_s=0.01),
        breaker_threshold=10,
        http_path=http_path,
        cooldown_s=0.01,
        **kw,
    )


async def _assert_an_outage(stack: Any, dead: list[str]) -> None:
    """A call through ``stack`` fails unreachable, the breaker stays closed, and at a window's
    end it reports the outage naming every one of ``dead``; then ``stack`` is closed."""
    with pytest.raises(LLMConnectionError) as failed:
        await stack.complete(req("anyone there?"))
    assert failed.value.unreachable
    assert stack.breaker is not None and stack.breaker.opened is None
    down = stack.breaker.outage("window 1 lost 1 of 1 decisions to it")
    assert down is not None and not down.fatal and "unreachable" in str(down)
    assert all(url in str(down) for url in dead) and "window 1 lost" in str(down)
    await stack.aclose()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_pool_balances_outstanding_requests_over_endpoints() -> None:
    with StubLLMServer(text_answer="a") as a, StubLLMServer(text_answer="b") as b:
        pool = create_llm("openai:m", base_urls=[a.openai_base_url, b.openai_base_url])
        assert isinstance(pool, PooledLLM)
        outs = await asyncio.gather(*(pool.complete(req(f"{i}")) for i in range(40)))
        await pool.aclose()
    counts = {t: [o.text for o in outs].count(t) for t in ("a", "b")}
    assert counts == {"a": 20, "b": 20}


async def test_api_key_never_in_cache_or_logs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "sk-test-SECRET-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    caplog.set_level(logging.DEBUG)
    structlog.reset_defaults()  # default config prints to stdout, which capsys sees
    with StubLLMServer(json_answer=ANSWER, supports_json_schema=False) as server:
        server.enqueue(StubReply(status=500), StubReply(status=429, headers={"retry-after": "0"}))
        cache = tmp_path / "run" / "llm_cache.sqlite"
        stack = await build_llm(
            f"openai:{server.openai_base_url}#m",
            api_key_env="OPENAI_API_KEY",
            retries=RetryPolicy(base_delay_s=0.01),
            cache_path=cache,
            cache_mode="record",
        )
        await stack.complete(req(json_schema=SCHEMA))  # 500, 429, downgrade, success
        anth = await build_llm(
            "anthropic:m", base_url=server.base_url, cache_path=cache, cache_mode="record"
        )
        await anth.complete(req("to anthropic"))
        server.enqueue(StubReply(status=401, body={"error": {"message": "bad key"}}))
        with pytest.raises(PermanentLLMError) as err:
            await stack.complete(req("unauthorised"))
        await stack.aclose()
        await anth.aclose()
    assert server.requests[0].headers["authorization"] == f"Bearer {secret}"  # it was used
    assert stack.retry is not None and stack.retry.stats.retries == 2
    blobs = [p.read_bytes() for p in cache.parent.iterdir()]
    assert blobs and any(b"echo: to anthropic" in b for b in blobs)  # the cache was written
    out = capsys.readouterr()
    logged = out.out + out.err + caplog.text + str(err.value) + json.dumps(stack.ledger.to_json())
    assert "llm_retry" in logged and "llm_json_mode_downgraded" in logged
    assert secret not in logged
    assert all(secret.encode() not in b for b in blobs)


async def test_stop_sequences_are_sent_only_when_set(stub: StubLLMServer) -> None:
    llm = OpenAIChatLLM("m", base_url=stub.openai_base_url)
    await llm.complete(req("one", stop=("\n\n", "###")))
    await llm.complete(req("two"))
    await llm.aclose()
    assert stub.requests[0].body["stop"] == ["\n\n", "###"]
    assert "stop" not in stub.requests[1].body


async def test_an_sdk_redirected_by_its_environment_is_named_by_the_url_it_talks_to(
    stub: StubLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``OPENAI_BASE_URL`` set the official SDK sends to that server, but a stopped run
    named ``https://api.openai.com/v1`` as the endpoint to fix; the anthropic SDK likewise with
    ``ANTHROPIC_BASE_URL``. A bad URL there is refused as a bad ``base_url`` is."""
    from friendsim.llm.anthropic_provider import AnthropicLLM
    from friendsim.llm.breaker import identify

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-redirected")
    monkeypatch.setenv("OPENAI_BASE_URL", stub.openai_base_url)
    llm = create_llm("openai:gpt-4o-mini")
    stub.enqueue(StubReply(status=401, body={"error": {"message": "bad key"}}))
    with pytest.raises(PermanentLLMError):
        await llm.complete(req())
    await llm.aclose()
    assert (
        stub.requests and stub.requests[0].headers["authorization"] == "Bearer sk-test-redirected"
    )
    assert identify(llm).describe() == (
        f"provider openai, model gpt-4o-mini, endpoint {stub.openai_base_url}, "
        "key from $OPENAI_API_KEY"
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.base_url)
    assert AnthropicLLM("m").endpoint == stub.base_url
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:pw@127.0.0.1:1/v1")
    with pytest.raises(ProviderConfigError, match=r"OPENAI_BASE_URL: .*carries credentials") as e:
        create_llm("openai:gpt-4o-mini")
    assert "pw" not in str(e.value)
