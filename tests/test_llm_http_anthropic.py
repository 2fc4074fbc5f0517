"""The Anthropic provider over real HTTP against the local stub server (tests/llm_stub_server.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from llm_stub_server import NeverAccepting, StubLLMServer, StubReply

from friendsim.llm import (
    LLMConnectionError,
    LLMRequest,
    LLMTimeoutError,
    MalformedResponseError,
    PermanentLLMError,
    ProviderConfigError,
    RateLimitedError,
    ServerError,
    build_llm,
    create_llm,
    user,
)
from friendsim.llm.anthropic_provider import AnthropicLLM
from friendsim.llm.retry import RetryingLLM, RetryPolicy

SYSTEM = "You are Ada, a careful climate scientist. " * 8
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


@pytest.fixture
def stub() -> Iterator[StubLLMServer]:
    with StubLLMServer(json_answer={"ok": True, "n": 3}) as server:
        yield server


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy-key")
    return "sk-ant-dummy-key"


def req(text: str = "hello", **kw: object) -> LLMRequest:
    return LLMRequest(system=SYSTEM, messages=(user(text),), **kw)  # type: ignore[arg-type]


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_success_sends_cached_system_and_accounts_cache_tokens(
    stub: StubLLMServer, key: str
) -> None:
    llm = create_llm("anthropic:claude-haiku-4-5", base_url=stub.base_url)
    assert llm.model == "anthropic:claude-haiku-4-5"
    first = await llm.complete(req("hi there", max_tokens=77))
    second = await llm.complete(req("again"))
    await llm.aclose()
    assert first.text == "echo: hi there" and first.provider == "anthropic"
    assert first.model == "claude-haiku-4-5" and first.parsed is None
    sent = stub.requests[0]
    assert sent.path == "/v1/messages"
    assert key in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "")[7:])
    assert sent.body["max_tokens"] == 77 and sent.body["model"] == "claude-haiku-4-5"
    assert sent.body["system"] == [
        {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}
    ]
    assert sent.body["messages"] == [{"role": "user", "content": "hi there"}]
    assert "temperature" not in sent.body
    prefix = len(SYSTEM) // 4
    assert first.usage.cache_write_tokens == prefix and first.usage.cached_input_tokens == 0
    assert second.usage.cached_input_tokens == prefix and second.usage.cache_write_tokens == 0
    assert second.usage.input_tokens > prefix  # includes the cached part
    assert len(stub.requests) == 2


async def test_structured_output_native_and_tool(stub: StubLLMServer, key: str) -> None:
    native = AnthropicLLM("m", base_url=stub.base_url)
    out = await native.complete(req(json_schema=SCHEMA))
    assert out.parsed == {"ok": True, "n": 3}
    assert stub.requests[-1].body["output_config"] == {
        "format": {"type": "json_schema", "schema": SCHEMA}
    }
    tool = AnthropicLLM("m", base_url=stub.base_url, structured_output="tool")
    out = await tool.complete(req(json_schema=SCHEMA))
    body = stub.requests[-1].body
    assert body["tool_choice"] == {"type": "tool", "name": "respond"}
    assert body["tools"][0]["input_schema"] == SCHEMA
    assert out.parsed == {"ok": True, "n": 3} and '"n": 3' in out.text
    await native.aclose()
    await tool.aclose()


async def test_native_structured_output_unsupported_falls_back_to_tool(key: str) -> None:
    with StubLLMServer(json_answer={"ok": False}, supports_output_config=False) as server:
        llm = RetryingLLM(AnthropicLLM("m", base_url=server.base_url))
        first = await llm.complete(req(json_schema=SCHEMA))
        second = await llm.complete(req("b", json_schema=SCHEMA))
        await llm.aclose()
    assert first.parsed == second.parsed == {"ok": False}
    sent = [("output_config" in r.body, "tool_choice" in r.body) for r in server.requests]
    assert sent == [(True, False), (False, True), (False, True)]
    assert llm.inner.structured_output == "tool" and llm.inner.downgrades == 1
    assert llm.stats.retries == 0


async def test_429_retry_after_is_honoured_and_counted(stub: StubLLMServer, key: str) -> None:
    stub.enqueue(StubReply(status=429, headers={"retry-after": "1.5"}))
    sleeps = Sleeps()
    llm = RetryingLLM(AnthropicLLM("m", base_url=stub.base_url), sleep=sleeps)
    out = await llm.complete(req())
    assert out.text == "echo: hello"
    assert sleeps.waits == [1.5]
    assert llm.stats.retries == 1 and dict(llm.stats.by_error) == {"RateLimitedError": 1}
    assert len(stub.requests) == 2  # the SDK itself did not retry (max_retries=0)
    await llm.aclose()


async def test_500_then_success_and_error_types(stub: StubLLMServer, key: str) -> None:
    plain = AnthropicLLM("m", base_url=stub.base_url)
    stub.enqueue(StubReply(status=429, headers={"retry-after-ms": "250"}))
    with pytest.raises(RateLimitedError) as rl:
        await plain.complete(req())
    assert rl.value.retry_after == 0.25 and rl.value.status == 429
    stub.enqueue(StubReply(status=529))
    with pytest.raises(ServerError, match="HTTP 529"):
        await plain.complete(req())
    stub.enqueue(StubReply(status=400))
    with pytest.raises(PermanentLLMError, match="HTTP 400"):
        await plain.complete(req())

    stub.enqueue(StubReply(status=500), StubReply(status=503))
    llm = RetryingLLM(plain, RetryPolicy(base_delay_s=0.01), seed=1)
    assert (await llm.complete(req("x"))).text == "echo: x"
    assert llm.stats.retries == 2 and llm.stats.by_error["ServerError"] == 2
    await llm.aclose()


async def test_timeout_then_recovery(stub: StubLLMServer, key: str) -> None:
    stub.enqueue(StubReply(delay_s=2.0))
    llm = RetryingLLM(
        AnthropicLLM("m", base_url=stub.base_url, timeout_s=0.3), RetryPolicy(base_delay_s=0.01)
    )
    out = await llm.complete(req())
    assert out.text == "echo: hello" and llm.stats.by_error == {"LLMTimeoutError": 1}
    stub.enqueue(StubReply(delay_s=2.0))
    with pytest.raises(LLMTimeoutError):
        await llm.inner.complete(req())
    await llm.aclose()


async def test_a_connect_timeout_is_unreachable_and_a_read_timeout_is_not(
    stub: StubLLMServer, key: str
) -> None:
    """A server down without refusing (the connect times out: nothing was sent) is unreachable,
    as a refused one is; a server that took the request and never answered was reached."""
    with NeverAccepting() as dead:
        llm = AnthropicLLM("m", base_url=dead.base_url, timeout_s=0.3)
        with pytest.raises(LLMConnectionError) as silent:
            await llm.complete(req())
        assert silent.value.unreachable and "no connection within 0.3 s" in str(silent.value)
        await llm.aclose()
    stub.enqueue(StubReply(delay_s=2.0))
    llm = AnthropicLLM("m", base_url=stub.base_url, timeout_s=0.3)
    with pytest.raises(LLMTimeoutError):
        await llm.complete(req())
    assert len(stub.requests) == 1
    await llm.aclose()


@pytest.mark.parametrize(
    "reply",
    [
        StubReply(body=b"<html>definitely not json"),
        StubReply(body={"unexpected": "shape"}),
        StubReply(body=b"<html></html>", headers={"content-type": "text/html"}),
    ],
)
async def test_malformed_body_is_transient_and_retried(
    stub: StubLLMServer, key: str, reply: StubReply
) -> None:
    stub.enqueue(reply)
    with pytest.raises(MalformedResponseError):
        await AnthropicLLM("m", base_url=stub.base_url).complete(req())
    stub.enqueue(reply)
    llm = RetryingLLM(AnthropicLLM("m", base_url=stub.base_url), RetryPolicy(base_delay_s=0.01))
    await llm.complete(req())  # the retry gets the normal answer
    assert llm.stats.retries == 1 and len(stub.requests) == 3
    await llm.aclose()


async def test_server_dies_mid_run(key: str) -> None:
    server = StubLLMServer().start()
    stack = await build_llm(
        "anthropic:m",
        base_url=server.base_url,
        concurrency=4,
        retries=RetryPolicy(max_retries=2, base_delay_s=0.01),
    )
    done = [await stack.complete(req(f"m{i}")) for i in range(3)]
    assert [d.text for d in done] == ["echo: m0", "echo: m1", "echo: m2"]
    server.stop()
    with pytest.raises(LLMConnectionError):
        await stack.complete(req("lost"))
    assert stack.retry is not None and stack.retry.stats.retries == 2
    assert stack.retry.stats.gave_up == 1
    total = stack.ledger.total()
    assert total.calls == 3 and total.errors == 1
    assert total.usage.output_tokens == sum(d.usage.output_tokens for d in done) > 0
    await stack.aclose()


async def test_dropped_connection_is_transient(stub: StubLLMServer, key: str) -> None:
    stub.enqueue(StubReply(drop=True))
    llm = AnthropicLLM("m", base_url=stub.base_url)
    with pytest.raises(LLMConnectionError):
        await llm.complete(req())
    assert (await llm.complete(req("after"))).text == "echo: after"
    await llm.aclose()


async def test_no_credentials_is_a_config_error(stub: StubLLMServer) -> None:
    llm = AnthropicLLM("m", base_url=stub.base_url)
    with pytest.raises(ProviderConfigError, match="ANTHROPIC_API_KEY"):
        await llm.complete(req())
    assert stub.requests == []
    with pytest.raises(ProviderConfigError, match="MY_KEY_VAR"):
        AnthropicLLM("m", base_url=stub.base_url, api_key_env="MY_KEY_VAR")


async def test_concurrent_calls_share_one_client(stub: StubLLMServer, key: str) -> None:
    llm = AnthropicLLM("m", base_url=stub.base_url)
    outs = await asyncio.gather(*(llm.complete(req(f"c{i}")) for i in range(20)))
    assert sorted(o.text for o in outs) == sorted(f"echo: c{i}" for i in range(20))
    await llm.aclose()


async def test_stop_sequences_sent_without_whitespace_only_ones(
    stub: StubLLMServer, key: str
) -> None:
    llm = create_llm("anthropic:claude-haiku-4-5", base_url=stub.base_url)
    await llm.complete(req("one", stop=("\n\n", "END")))
    await llm.complete(req("two", stop=("\n\n",)))
    await llm.aclose()
    assert stub.requests[0].body["stop_sequences"] == ["END"]
    assert "stop_sequences" not in stub.requests[1].body


@pytest.mark.parametrize("mode", ["native", "tool"])
async def test_lone_surrogates_in_an_answer_are_replaced_where_it_is_decoded(
    mode: str, key: str
) -> None:
    """Text blocks and a forced tool's input with a lone surrogate (``\\ud800`` in the JSON)
    decode to U+FFFD, storable as UTF-8."""
    answer = {"ok": True, "note": "kind \ud800 words"}
    with StubLLMServer(responder=lambda api, body: answer) as server:
        llm = AnthropicLLM("m", base_url=server.base_url, structured_output=mode)  # type: ignore[arg-type]
        done = await llm.complete(req(json_schema=SCHEMA))
        await llm.aclose()
    assert done.parsed == {"ok": True, "note": "kind \ufffd words"}
    assert "\ud800" not in done.text
    done.text.encode("utf-8")
