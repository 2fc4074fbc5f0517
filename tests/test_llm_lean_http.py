"""The lean HTTP paths of the OpenAI provider against the SDK path, over real HTTP to the stub.

All paths must send the same body and give the same completions and the same error types;
the lean paths (our HTTP/1.1 client, and httpcore on a free list) must keep their connections
alive and recover from a server that went away.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_stub_server import StubLLMServer, StubReply

from friendsim.llm import (
    LLMConnectionError,
    LLMRequest,
    LLMTimeoutError,
    MalformedResponseError,
    PermanentLLMError,
    RateLimitedError,
    ServerError,
    user,
)
from friendsim.llm.errors import ProviderConfigError
from friendsim.llm.http11 import HTTP11Client
from friendsim.llm.lean_http import LeanHTTPClient
from friendsim.llm.openai_provider import OpenAIChatLLM

SYSTEM = "You are Ada, who writes about trains. " * 5
SCHEMA = {"type": "object", "properties": {"tone": {"type": "string"}}, "required": ["tone"]}
ANSWER = {"tone": "critical", "n": [3, 4]}
PATHS = ("sdk", "lean", "httpcore")
LEAN = {"lean": HTTP11Client, "httpcore": LeanHTTPClient}


@pytest.fixture
def stub() -> Iterator[StubLLMServer]:
    with StubLLMServer(json_answer=ANSWER) as server:
        yield server


def req(text: str = "hello", **kw: Any) -> LLMRequest:
    return LLMRequest(system=SYSTEM, messages=(user(text),), **kw)


def test_auto_takes_the_sdk_for_the_hosted_api_and_lean_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert OpenAIChatLLM("gpt-4o-mini").http_path == "sdk"
    assert OpenAIChatLLM("m", base_url="https://api.openai.com/v1").http_path == "sdk"
    assert OpenAIChatLLM("m", base_url="http://10.0.0.7:8000/v1").http_path == "lean"
    assert OpenAIChatLLM("m", base_url="http://h/v1", http_path="sdk").http_path == "sdk"
    assert OpenAIChatLLM("gpt-4o-mini", http_path="lean").http_path == "lean"
    assert OpenAIChatLLM("m", base_url="http://h/v1", http_path="httpcore").http_path == "httpcore"
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "10.0.0.9")
    assert (
        OpenAIChatLLM("m", base_url="http://10.0.0.7:8000/v1").http_path == "sdk"
    )  # httpx proxies
    assert OpenAIChatLLM("m", base_url="http://10.0.0.9:8000/v1").http_path == "lean"
    with pytest.raises(ProviderConfigError, match="http_path"):
        OpenAIChatLLM("m", base_url="http://h/v1", http_path="fast")  # type: ignore[arg-type]


async def test_both_paths_send_the_same_body_and_read_the_same_answer() -> None:
    outs, bodies, headers = {}, {}, {}
    for path in PATHS:
        with StubLLMServer(json_answer=ANSWER) as server:
            llm = OpenAIChatLLM("m", base_url=server.openai_base_url, http_path=path)
            assert llm.http_path == path
            outs[path] = [
                await llm.complete(req("hi", json_schema=SCHEMA, seed=3, stop=("\n\n",))),
                await llm.complete(req("plain", temperature=0.2, max_tokens=9)),
            ]
            await llm.aclose()
        bodies[path] = [r.body for r in server.requests]
        headers[path] = server.requests[0].headers
    assert bodies["lean"] == bodies["sdk"] == bodies["httpcore"]
    assert bodies["lean"][0]["response_format"]["type"] == "json_schema"
    assert bodies["lean"][0]["stop"] == ["\n\n"] and "stop" not in bodies["lean"][1]
    for lean in ("lean", "httpcore"):
        for a, b in zip(outs["sdk"], outs[lean], strict=True):
            assert (a.text, a.parsed, a.usage, a.provider) == (
                b.text, b.parsed, b.usage, b.provider
            )  # fmt: skip
    assert outs["lean"][0].parsed == ANSWER and outs["lean"][1].text == "echo: plain"
    assert outs["lean"][1].usage.cached_input_tokens == len(SYSTEM) // 4  # the repeated prefix
    assert headers["lean"]["authorization"] == headers["sdk"]["authorization"] == "Bearer EMPTY"
    assert headers["httpcore"]["authorization"] == "Bearer EMPTY"
    assert headers["lean"]["content-type"] == "application/json"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("reply", "error", "words"),
    [
        (StubReply(status=429, headers={"retry-after": "3"}), RateLimitedError, "429"),
        (StubReply(status=503), ServerError, "503"),
        (StubReply(status=404, body={"error": {"message": "no model m"}}), PermanentLLMError,
         "no model m"),
        (StubReply(status=401, body={"error": {"message": "bad key"}}), PermanentLLMError,
         "bad key"),
        (StubReply(body=b"{not json"), MalformedResponseError, "undecodable"),
        (StubReply(body={"choices": []}), MalformedResponseError, "no choices"),
        (StubReply(body={"id": "x"}), MalformedResponseError, "no choices"),
        (StubReply(body=b"plain", headers={"content-type": "text/plain"}),
         MalformedResponseError, "undecodable|chat completion"),
    ],
)  # fmt: skip
async def test_errors_map_to_the_same_types(
    stub: StubLLMServer, path: str, reply: StubReply, error: type[Exception], words: str
) -> None:
    stub.enqueue(reply)
    llm = OpenAIChatLLM("m", base_url=stub.openai_base_url, http_path=path)  # type: ignore[arg-type]
    with pytest.raises(error, match=words) as info:
        await llm.complete(req())
    if isinstance(info.value, RateLimitedError):
        assert info.value.retry_after == 3.0 and info.value.status == 429
    assert (await llm.complete(req("after"))).text == "echo: after"  # the next call is fine
    await llm.aclose()


@pytest.mark.parametrize("path", PATHS)
async def test_json_mode_steps_down_on_both_paths(path: str) -> None:
    with StubLLMServer(json_answer=ANSWER, supports_response_format=False) as server:
        llm = OpenAIChatLLM("m", base_url=server.openai_base_url, http_path=path)  # type: ignore[arg-type]
        out = await llm.complete(req(json_schema=SCHEMA))
        await llm.aclose()
    assert llm.json_mode == "prompt" and llm.downgrades == 2
    assert out.parsed == ANSWER
    assert [("response_format" in r.body) for r in server.requests] == [True, True, False]


@pytest.mark.parametrize("path", LEAN)
async def test_connections_are_kept_alive_and_bounded(stub: StubLLMServer, path: str) -> None:
    llm = OpenAIChatLLM("m", base_url=stub.openai_base_url, http_path=path)  # type: ignore[arg-type]
    lean = llm._lean
    assert isinstance(lean, LEAN[path])
    for i in range(20):
        assert (await llm.complete(req(f"s{i}"))).text == f"echo: s{i}"
    assert lean.opened == 1  # one connection, reused
    outs = await asyncio.gather(*(llm.complete(req(f"c{i}")) for i in range(30)))
    assert [o.text for o in outs] == [f"echo: c{i}" for i in range(30)]
    assert lean.opened <= 30
    before = lean.opened
    await asyncio.gather(*(llm.complete(req(f"d{i}")) for i in range(30)))
    assert lean.opened == before  # the second wave reused the first wave's connections
    await llm.aclose()

    capped = LEAN[path](stub.openai_base_url, headers={}, max_connections=4)
    body = b'{"model":"m","messages":[{"role":"user","content":"x"}]}'
    replies = await asyncio.gather(
        *(capped.post_json("/chat/completions", body) for _ in range(24))
    )
    assert {r.status for r in replies} == {200} and capped.opened <= 4
    await capped.aclose()


@pytest.mark.parametrize("path", LEAN)
async def test_timeouts_and_a_dead_server_are_transient_errors(
    stub: StubLLMServer, path: str
) -> None:
    llm = OpenAIChatLLM("m", base_url=stub.openai_base_url, timeout_s=0.3, http_path=path)  # type: ignore[arg-type]
    assert (await llm.complete(req("warm"))).text == "echo: warm"
    stub.enqueue(StubReply(delay_s=2.0))
    with pytest.raises(LLMTimeoutError, match="timed out"):
        await llm.complete(req("slow"))
    assert (await llm.complete(req("fine"))).text == "echo: fine"  # a fresh or clean connection
    stub.enqueue(StubReply(drop=True))
    with pytest.raises(LLMConnectionError):
        await llm.complete(req("dropped"))
    assert (await llm.complete(req("again"))).text == "echo: again"
    stub.stop()  # kills the idle keep-alive connection too
    with pytest.raises(LLMConnectionError, match="connection failed"):
        await llm.complete(req("nobody"))
    await llm.aclose()


@pytest.mark.parametrize("path", LEAN)
async def test_a_restarted_server_is_reached_again(stub: StubLLMServer, path: str) -> None:
    """An idle connection the server closed is noticed and replaced, not used."""
    llm = OpenAIChatLLM("m", base_url=stub.openai_base_url, http_path=path)  # type: ignore[arg-type]
    lean = llm._lean
    assert lean is not None
    await llm.complete(req("one"))
    server = stub._server
    assert server is not None
    with server.conn_lock:
        conns = list(server.connections)
    for conn in conns:  # the server hangs up on its idle keep-alive connections
        conn.shutdown(2)
    await asyncio.sleep(0.2)
    assert (await llm.complete(req("two"))).text == "echo: two"
    assert lean.opened == 2
    await llm.aclose()


@pytest.mark.parametrize("path", LEAN)
def test_bad_base_url_is_a_config_error(path: str) -> None:
    with pytest.raises(ProviderConfigError, match="not an http"):
        LEAN[path]("ftp://h/v1", headers={})


def test_the_lean_path_never_imports_the_sdk(tmp_path: Path) -> None:
    """Importing the SDK costs about a second of CPU; a run on the lean path does without it
    (and without httpcore)."""
    script = tmp_path / "probe.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from llm_stub_server import StubLLMServer
            from friendsim.llm import LLMRequest, build_llm, user

            async def main():
                with StubLLMServer() as stub:
                    stack = await build_llm(f"openai:{{stub.openai_base_url}}#m")
                    out = await stack.complete(LLMRequest(messages=(user("x"),)))
                    await stack.aclose()
                print(out.text, "openai" in sys.modules, "httpcore" in sys.modules)

            asyncio.run(main())
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["echo:", "x", "False", "False"]


async def test_lean_errors_carry_the_status_and_are_redacted(
    stub: StubLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-lean-SECRET-0123456789"
    monkeypatch.setenv("LEAN_KEY", secret)
    llm = OpenAIChatLLM("m", base_url=stub.openai_base_url, api_key_env="LEAN_KEY")
    assert llm.http_path == "lean"
    echo = {"error": {"message": f"bad key: Authorization: Bearer {secret}"}}
    stub.enqueue(StubReply(status=401, body=echo))
    with pytest.raises(PermanentLLMError, match="HTTP 401: bad key") as info:
        await llm.complete(req())
    assert info.value.status == 401 and secret not in str(info.value)
    assert stub.requests[-1].headers["authorization"] == f"Bearer {secret}"  # it was sent
    await llm.aclose()
