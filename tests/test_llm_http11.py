"""The small HTTP/1.1 client (``friendsim.llm.http11``) against raw servers on 127.0.0.1.

Each server here answers with exact bytes, so every way an HTTP/1.1 answer can be framed
(Content-Length, chunked with extensions and trailers, up to the end of the connection, after
an interim 1xx) and every way it can go wrong (garbage, an oversized body, a server that hangs,
trickles or hangs up) is exercised over a real socket. TLS is tested against a certificate made
by ``openssl`` for the test and trusted through ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from friendsim.llm import LLM, LLMConnectionError, LLMRequest, LLMTimeoutError, user
from friendsim.llm.http11 import HTTP11Client
from friendsim.llm.openai_provider import OpenAIChatLLM

Answer = Callable[[bytes], list[bytes] | None]
"""Given one whole request, the byte pieces to send back (None: hang up at once; a last piece
``CLOSE``: hang up after the others)."""
CLOSE = b"<close>"


class RawServer:
    """An asyncio server that reads whole requests and answers each with ``answer``."""

    def __init__(self, answer: Answer, *, gap_s: float = 0.0) -> None:
        self.answer = answer
        self.gap_s = gap_s
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                pieces = self.answer(request)
                if pieces is None:
                    break
                for piece in pieces:
                    if piece is CLOSE:
                        return
                    writer.write(piece)
                    await writer.drain()
                    if self.gap_s:
                        await asyncio.sleep(self.gap_s)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future[tuple[RawServer, str]]]]:
    servers: list[RawServer] = []

    async def start(answer: Answer, **kw: object) -> tuple[RawServer, str]:
        tls = kw.pop("tls", None)
        server = RawServer(answer, **kw)  # type: ignore[arg-type]
        port = await server.start(tls)  # type: ignore[arg-type]
        servers.append(server)
        scheme = "https" if tls is not None else "http"
        return server, f"{scheme}://127.0.0.1:{port}/v1"

    yield start  # type: ignore[misc]
    for server in servers:
        await server.stop()


def completion(text: str) -> bytes:
    return json.dumps(
        {
            "choices": [{"message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2},
        }
    ).encode()


def with_length(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body


def chunked(body: bytes, size: int = 7) -> list[bytes]:
    out = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for i in range(0, len(body), size):
        part = body[i : i + size]
        out.append(b"%x;ext=1\r\n" % len(part) + part + b"\r\n")
    out.append(b"0\r\nx-trailer: yes\r\n\r\n")
    return out


BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'


async def test_the_request_leaves_whole_and_content_length_answers_are_read(serve) -> None:  # type: ignore[no-untyped-def]
    server, url = await serve(lambda req: [with_length(b'{"ok":1}')])
    client = HTTP11Client(url, headers={"authorization": "Bearer k", "user-agent": "t"})
    for _ in range(5):
        reply = await client.post_json("/chat/completions", BODY)
        assert (reply.status, reply.body) == (200, b'{"ok":1}')
    assert client.opened == 1 and server.connections == 1  # kept alive
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
    fields = dict(line.split(": ", 1) for line in lines[1:])
    assert fields["host"] == url.split("//")[1].split("/")[0]
    assert fields["authorization"] == "Bearer k"
    assert fields["content-type"] == "application/json"
    assert int(fields["content-length"]) == len(BODY) and body == BODY
    await client.aclose()


async def test_chunked_answers_with_extensions_trailers_and_split_reads(serve) -> None:  # type: ignore[no-untyped-def]
    payload = completion("chunked hello " * 20)
    # every piece of the framing arrives in its own segment
    _, url = await serve(lambda req: chunked(payload), gap_s=0.002)
    llm = OpenAIChatLLM("m", base_url=url)
    out = await llm.complete(LLMRequest(messages=(user("x"),)))
    assert out.text == "chunked hello " * 20 and out.usage.input_tokens == 7
    again = await llm.complete(LLMRequest(messages=(user("y"),)))  # the same connection again
    assert again.text == out.text
    assert isinstance(llm._lean, HTTP11Client) and llm._lean.opened == 1
    await llm.aclose()


async def test_an_interim_answer_then_the_real_one_and_an_answer_ended_by_close(serve) -> None:  # type: ignore[no-untyped-def]
    answers = iter(
        [
            [b"HTTP/1.1 100 Continue\r\n\r\n", with_length(b'{"n":1}')],
            # no length, not chunked: the body runs to the end of the connection
            [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n", b'{"n":', b"2}",
             CLOSE],
            [b"HTTP/1.0 200 OK\r\n" + with_length(b'{"n":3}').split(b"\r\n", 1)[1]],
            [with_length(b'{"n":4}')],
        ]
    )  # fmt: skip
    server, url = await serve(lambda req: next(answers), gap_s=0.01)
    client = HTTP11Client(url, headers={})
    assert (await client.post_json("/c", BODY)).body == b'{"n":1}'
    reply = await client.post_json("/c", BODY)
    assert reply.body == b'{"n":2}' and reply.headers["content-type"] == "application/json"
    assert (await client.post_json("/c", BODY)).body == b'{"n":3}'  # HTTP/1.0: not kept
    assert (await client.post_json("/c", BODY)).body == b'{"n":4}'
    assert client.opened == server.connections == 3
    await client.aclose()


async def test_a_connection_close_answer_is_not_reused(serve) -> None:  # type: ignore[no-untyped-def]
    server, url = await serve(lambda req: [with_length(b"{}", extra="Connection: close\r\n")])
    client = HTTP11Client(url, headers={})
    for _ in range(3):
        assert (await client.post_json("/c", BODY)).status == 200
    assert client.opened == 3 and server.connections == 3
    await client.aclose()


@pytest.mark.parametrize(
    ("pieces", "words"),
    [
        ([b"SMTP ready\r\n\r\n"], "status line"),
        ([b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"], "header line"),
        ([b"HTTP/1.1 200 OK\r\ncontent-length: -3\r\n\r\n"], "content-length"),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], "chunk size"),
        ([b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n"], "too large"),
        ([b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", CLOSE], "closed the connection"),
        ([CLOSE], "closed the connection"),
    ],
)  # fmt: skip
async def test_broken_answers_are_connection_errors_and_the_next_call_recovers(
    serve,
    pieces: list[bytes],
    words: str,  # type: ignore[no-untyped-def]
) -> None:
    calls: list[bytes] = []

    def answer(req: bytes) -> list[bytes]:
        calls.append(req)
        return pieces if len(calls) == 1 else [with_length(b'{"fine":true}')]

    _, url = await serve(answer)
    client = HTTP11Client(url, headers={}, max_body=1024 * 1024)
    with pytest.raises(LLMConnectionError, match=words):
        await client.post_json("/c", BODY)
    assert (await client.post_json("/c", BODY)).body == b'{"fine":true}'
    assert client.opened == 2  # the broken connection was not reused
    await client.aclose()


def trickled(body: bytes) -> list[bytes]:
    """A whole 200 answer with ``body``, as one piece per byte of the body."""
    return [b"HTTP/1.1 200 OK\r\n", b"content-length: %d\r\n\r\n" % len(body)] + [
        bytes([b]) for b in body
    ]


async def test_the_timeout_bounds_the_whole_request_a_trickled_answer_included(serve) -> None:  # type: ignore[no-untyped-def]
    body = b'{"slow":true}'
    _, url = await serve(lambda req: trickled(body), gap_s=0.02)  # 0.3 s in all
    client = HTTP11Client(url, headers={}, timeout_s=2.0)
    assert (await client.post_json("/c", BODY)).body == body  # within the deadline: read
    await client.aclose()

    loop = asyncio.get_running_loop()
    for answer, gap in ((trickled(body), 0.1), ([b"HTTP/1.1 200 OK\r\n"], 0.0)):
        _, url = await serve(lambda req, answer=answer: answer, gap_s=gap)  # a byte every 0.1 s
        client = HTTP11Client(url, headers={}, timeout_s=0.5)  # or silence after the status line
        started = loop.time()
        with pytest.raises(LLMTimeoutError, match="timed out"):
            await client.post_json("/c", BODY)
        assert 0.45 <= loop.time() - started < 1.0
        await client.aclose()


@pytest.mark.parametrize("path", ["lean", "httpcore", "sdk"])
async def test_every_openai_path_times_out_a_trickled_answer(serve, path: str) -> None:  # type: ignore[no-untyped-def]
    """A valid answer sent a byte every 0.1 s (about 10 s) fails after ``timeout_s`` (0.5 s)
    as LLMTimeoutError, on the lean, httpcore and SDK paths alike."""
    _, url = await serve(lambda req: trickled(completion("a" * 80)), gap_s=0.1)
    llm = OpenAIChatLLM("m", base_url=url, timeout_s=0.5, http_path=path)  # type: ignore[arg-type]
    await _times_out_within(llm, 1.5)


async def test_the_anthropic_sdk_path_times_out_a_trickled_answer(
    serve,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from friendsim.llm.anthropic_provider import AnthropicLLM

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy-key")
    message = json.dumps(
        {"id": "m", "type": "message", "role": "assistant", "model": "m",
         "content": [{"type": "text", "text": "a" * 80}], "stop_reason": "end_turn",
         "usage": {"input_tokens": 3, "output_tokens": 20}}
    ).encode()  # fmt: skip
    _, url = await serve(lambda req: trickled(message), gap_s=0.1)
    llm = AnthropicLLM("m", base_url=url.removesuffix("/v1"), timeout_s=0.5)
    await _times_out_within(llm, 1.5)


async def _times_out_within(llm: LLM, seconds: float) -> None:
    """``llm``'s answer to one request is an :class:`LLMTimeoutError` within ``seconds``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(LLMTimeoutError, match="timed out"):
        await llm.complete(LLMRequest(messages=(user("hi"),)))
    assert loop.time() - started < seconds
    await llm.aclose()


async def test_a_refused_connection_names_the_server() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    client = HTTP11Client(f"http://127.0.0.1:{port}/v1", headers={"authorization": "Bearer k"})
    with pytest.raises(LLMConnectionError, match=f"cannot connect: 127.0.0.1:{port}") as info:
        await client.post_json("/c", BODY)
    assert "Bearer" not in str(info.value)


async def test_a_cancelled_request_closes_its_connection(serve) -> None:  # type: ignore[no-untyped-def]
    server, url = await serve(lambda req: [b"HTTP/1.1 200 OK\r\n"])  # never finishes
    client = HTTP11Client(url, headers={})
    task = asyncio.ensure_future(client.post_json("/c", BODY))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    server.answer = lambda req: [with_length(b"{}")]
    assert (await client.post_json("/c", BODY)).status == 200
    assert client.opened == 2  # the abandoned connection (an answer half read) was dropped
    await client.aclose()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl command is needed (Debian package openssl)"
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_with_a_trusted_certificate_and_a_refused_untrusted_one(
    serve,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server, url = await serve(lambda req: [with_length(completion("over tls"))], tls=tls)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    llm = OpenAIChatLLM("m", base_url=url)
    assert llm.http_path == "lean"
    assert (await llm.complete(LLMRequest(messages=(user("x"),)))).text == "over tls"
    await llm.aclose()
    monkeypatch.delenv("SSL_CERT_FILE")
    client = HTTP11Client(url, headers={})
    with pytest.raises(LLMConnectionError, match="TLS failed"):
        await client.post_json("/chat/completions", BODY)
    assert len(server.requests) == 1  # nothing was sent over the untrusted connection
