"""The lean HTTP/1.1 client's slots (``friendsim.llm.http11``): at most ``max_connections``
requests in flight, the rest queued whole in arrival order, and a freed slot handed to the next
queued request by the connection that read the answer, before the answer's caller runs.

Servers are real sockets on 127.0.0.1: an asyncio one on the test's loop where only the bytes
matter, and one in a thread of its own where the test must see when a request reached the
server while the client's loop is busy.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from friendsim.llm import LLMConnectionError, LLMRequest, user
from friendsim.llm.http11 import HTTP11Client
from friendsim.llm.limits import CapsInFlight, ConcurrencyLimitedLLM
from friendsim.llm.openai_provider import OpenAIChatLLM
from friendsim.llm.stack import build_llm
from friendsim.testing import ScriptedLLM


def answer(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n" % (len(body), extra) + body


def completion(text: str) -> bytes:
    return json.dumps(
        {
            "choices": [{"message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }
    ).encode()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return await reader.readexactly(length)


class HeldServer:
    """Answers each request (by default its body echoed) only when the test releases it; counts the
    requests it holds at once and keeps their bodies in arrival order."""

    def __init__(
        self, *, close_after: bool = False, respond: Callable[[bytes], bytes] = bytes
    ) -> None:
        self.respond = respond
        self.bodies: list[bytes] = []
        self.holding = 0
        self.most_held = 0
        self.connections = 0
        self.release = asyncio.Queue[None]()
        self.arrived = asyncio.Queue[bytes]()
        self.close_after = close_after
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                body = await read_request(reader)
                self.bodies.append(body)
                self.holding += 1
                self.most_held = max(self.most_held, self.holding)
                self.arrived.put_nowait(body)
                await self.release.get()
                self.holding -= 1
                extra = b"connection: close\r\n" if self.close_after else b""
                writer.write(answer(self.respond(body), extra))
                await writer.drain()
                if self.close_after:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def held() -> Iterator[HeldServer]:  # type: ignore[misc]
    server = HeldServer()
    yield server
    await server.stop()


async def test_at_most_the_cap_is_in_flight_and_the_queue_goes_in_arrival_order(
    held: HeldServer,
) -> None:
    client = HTTP11Client(await held.start(), headers={}, max_connections=5)
    assert client.cap_in_flight(2) is client  # the lower of the two holds
    calls = [asyncio.ensure_future(client.post_json("/c", b"%d" % i)) for i in range(6)]
    for _ in range(6):
        await held.arrived.get()  # a request arrived: answer one held one
        held.release.put_nowait(None)
    replies = await asyncio.gather(*calls)
    assert [r.body for r in replies] == [b"%d" % i for i in range(6)]
    assert held.bodies == [b"%d" % i for i in range(6)]  # sent in the order asked
    assert held.most_held == 2 and client.max_in_flight == 2 and client.in_flight == 0
    assert client.opened == 2  # the two connections carried all six
    await client.aclose()


async def test_a_request_cancelled_while_queued_is_never_sent(held: HeldServer) -> None:
    client = HTTP11Client(await held.start(), headers={}, max_connections=1)
    first = asyncio.ensure_future(client.post_json("/c", b"first"))
    assert await held.arrived.get() == b"first"
    dropped = asyncio.ensure_future(client.post_json("/c", b"dropped"))
    third = asyncio.ensure_future(client.post_json("/c", b"third"))
    await asyncio.sleep(0)
    dropped.cancel()
    held.release.put_nowait(None)
    assert (await first).body == b"first"
    assert await held.arrived.get() == b"third"
    held.release.put_nowait(None)
    assert (await third).body == b"third"
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert held.bodies == [b"first", b"third"] and client.in_flight == 0
    await client.aclose()


async def test_a_cancelled_request_in_flight_hands_its_slot_on() -> None:
    server = HeldServer()
    client = HTTP11Client(await server.start(), headers={}, max_connections=1)
    first = asyncio.ensure_future(client.post_json("/c", b"first"))
    await server.arrived.get()
    second = asyncio.ensure_future(client.post_json("/c", b"second"))
    await asyncio.sleep(0)
    first.cancel()  # its answer half read: its connection is dropped, the slot goes on
    assert await server.arrived.get() == b"second"
    for _ in range(2):
        server.release.put_nowait(None)
    assert (await second).body == b"second"
    assert client.opened == 2 and client.in_flight == 0
    with pytest.raises(asyncio.CancelledError):
        await first
    await client.aclose()
    await server.stop()


async def test_after_a_connection_close_answer_the_next_request_opens_a_connection() -> None:
    server = HeldServer(close_after=True)
    client = HTTP11Client(await server.start(), headers={}, max_connections=1)
    calls = [asyncio.ensure_future(client.post_json("/c", b"%d" % i)) for i in range(3)]
    for _ in range(3):
        await server.arrived.get()
        server.release.put_nowait(None)
    assert [r.body for r in await asyncio.gather(*calls)] == [b"0", b"1", b"2"]
    assert client.opened == server.connections == 3 and client.in_flight == 0
    await client.aclose()
    await server.stop()


async def test_a_handed_over_request_that_cannot_connect_fails_and_frees_its_slot() -> None:
    """The server answers with ``connection: close`` and stops listening: the queued request
    needs a new connection, which is refused; it fails as unreachable, and the slot is free."""
    server = HeldServer(close_after=True)
    client = HTTP11Client(await server.start(), headers={}, max_connections=1)
    first = asyncio.ensure_future(client.post_json("/c", b"first"))
    await server.arrived.get()
    second = asyncio.ensure_future(client.post_json("/c", b"second"))
    await asyncio.sleep(0)
    await server.stop()  # no new connections; the open one still answers
    server.release.put_nowait(None)
    assert (await first).body == b"first"
    with pytest.raises(LLMConnectionError, match="cannot connect") as info:
        await second
    assert info.value.unreachable
    assert client.in_flight == 0 and server.bodies == [b"first"]
    await client.aclose()


class ThreadServer:
    """A keep-alive HTTP server in a thread of its own, answering at once; it notes when each
    request arrived (``time.monotonic``), whatever the client's loop is doing."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.arrivals: list[tuple[bytes, float]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                self.arrivals.append((body, time.monotonic()))
                conn.sendall(answer(body))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def thread_server() -> Iterator[ThreadServer]:
    server = ThreadServer()
    yield server
    server.close()


async def test_a_freed_slot_sends_the_next_request_before_the_answers_caller_runs(
    thread_server: ThreadServer,
) -> None:
    """The task that asked for the first answer goes on, in the same step, to work that holds
    the loop (as applying a ballot does); the queued request must already be on its way: it
    reaches the server while the loop is held."""
    client = HTTP11Client(thread_server.url, headers={}, max_connections=1)

    async def ask_then_hold() -> float:
        assert (await client.post_json("/c", b"first")).body == b"first"
        time.sleep(0.5)  # noqa: ASYNC251 (the loop is held on purpose: nothing on it runs)
        return time.monotonic()

    first = asyncio.ensure_future(ask_then_hold())
    second = asyncio.ensure_future(client.post_json("/c", b"second"))
    held_until = await first
    assert (await second).body == b"second"
    arrived = dict(thread_server.arrivals)
    assert arrived[b"second"] < held_until
    await client.aclose()


async def test_the_stack_leaves_its_concurrency_limit_to_the_lean_client() -> None:
    held = HeldServer(respond=lambda body: completion(json.loads(body)["messages"][0]["content"]))
    url = await held.start()
    provider = OpenAIChatLLM("m", base_url=url, http_path="lean")
    assert isinstance(provider, CapsInFlight)
    stack = await build_llm(provider, concurrency=2, retries=0)
    assert stack.concurrency is not None and isinstance(provider._lean, HTTP11Client)
    assert stack.concurrency.in_flight == 0
    calls = [
        asyncio.ensure_future(stack.complete(LLMRequest(messages=(user(f"q{i}"),))))
        for i in range(5)
    ]
    for _ in range(5):
        body = await held.arrived.get()
        assert stack.concurrency.in_flight == provider._lean.in_flight <= 2
        held.release.put_nowait(None)
        assert json.loads(body)["messages"][0]["content"].startswith("q")
    replies = await asyncio.gather(*calls)
    assert [r.text for r in replies] == [f"q{i}" for i in range(5)] and held.most_held == 2
    assert stack.concurrency.max_in_flight == provider._lean.max_in_flight == 2
    await stack.aclose()
    await held.stop()


async def test_providers_that_cannot_hold_the_limit_are_limited_above() -> None:
    """The SDK path and providers without the hook keep the semaphore of the layer."""
    sdk = OpenAIChatLLM("m", base_url="http://127.0.0.1:9/v1", http_path="sdk")
    assert sdk.cap_in_flight(4) is None
    gate = asyncio.Event()
    inside = 0
    most = 0

    async def slow(request: LLMRequest) -> str:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await gate.wait()
        inside -= 1
        return "{}"

    limited = ConcurrencyLimitedLLM(ScriptedLLM(slow), 3)
    calls = [
        asyncio.ensure_future(limited.complete(LLMRequest(messages=(user("x"),)))) for _ in range(7)
    ]
    for _ in range(5):
        await asyncio.sleep(0)
    assert limited.in_flight == 3 == inside
    gate.set()
    await asyncio.gather(*calls)
    assert most == 3 and limited.max_in_flight == 3 and limited.in_flight == 0
