"""A small HTTP/1.1 client for JSON POSTs to OpenAI-compatible servers, on asyncio protocols.

Why: a model-bound run sends hundreds of requests per second to its inference servers from one
event loop. Through httpx's core (httpcore and h11, even on a free list of connections and an
asyncio-native network backend: :mod:`friendsim.llm.lean_http`) a request still costs about
half a millisecond of this process's CPU, which is most of what a run can spend per request
before the one core it runs on, not the servers, sets its pace (see ``bench/llm_bound.py``).
This client does only what such a request needs, in a few Python calls per request:

- the request leaves in one ``write``: a request line and headers prepared once per client,
  then ``Content-Length`` and the body;
- the answer is framed as it arrives, in the protocol's ``data_received`` (status line and
  headers up to the blank line, then ``Content-Length`` bytes, or ``chunked`` chunks, or up to
  the end of the connection), and the one waiting request is woken once, when it is whole;
- one deadline per request: ``timeout_s`` from the moment it leaves the queue for a connection
  slot, covering connecting, sending and the whole answer (a server sending a valid answer
  slowly, a byte at a time, times out too: :class:`LLMTimeoutError`, which the retry layer
  retries); one timer per request, set once;
- idle connections wait on a free list; a request takes the most recently used one that is
  still open and not idle for longer than ``keepalive_s`` (or opens one), so finding one costs
  O(1) whatever the concurrency;
- at most ``max_connections`` requests are in flight, the others wait in a queue, whole, in the
  order they came. A slot is handed over where it frees: the connection that has just read a
  whole answer writes the next queued request at once, inside the same ``data_received``, before
  the answer's caller (or any other task) runs. Handing it over through a semaphore instead
  would leave the slot idle until the waiting task's turn on the loop, behind every answer
  already read and being applied, which at a hundred answers per wave is milliseconds per slot
  (see ``bench/llm_bound.py``). :meth:`HTTP11Client.cap_in_flight` lets a concurrency limit
  above (:class:`~friendsim.llm.limits.ConcurrencyLimitedLLM`) use this queue as its own.

``https://`` works the same on asyncio's TLS transport (certificates checked against
``SSL_CERT_FILE`` when set, as httpx does, else certifi's bundle when installed, else the
system's). Proxies are not supported: with a proxy configured for the server's host, the
provider's ``auto`` path takes the SDK (httpx honours proxies). No retries here: the retry
layer above retries. An answer larger than ``max_body`` bytes, or one that is not HTTP/1.x, is
a broken connection. Errors are ours (:mod:`friendsim.llm.errors`): a timeout is
:class:`LLMTimeoutError`, a refused, reset, dropped or garbled connection
:class:`LLMConnectionError`; a connection that could not be opened (TCP and TLS) within the
deadline sent nothing, so it is an unreachable :class:`LLMConnectionError`, as a refused one.
Messages name the provider, never a header (so never a key).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from typing import cast
from urllib.parse import urlsplit

from friendsim.llm.connect_watch import connect_timeout
from friendsim.llm.errors import LLMConnectionError, LLMTimeoutError, ProviderConfigError
from friendsim.llm.http_reply import HTTPReply
from friendsim.llm.urls import host_header, url_problem

_MAX_HEAD = 64 * 1024
_NO_BODY = (204, 304)


class _Broken(Exception):
    """The server's bytes are not an HTTP/1.1 answer we can read."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time (see module docstring)."""

    __slots__ = (
        "body",
        "buf",
        "closed",
        "framing",
        "headers",
        "idle_since",
        "keep",
        "loop",
        "max_body",
        "need",
        "on_free",
        "provider",
        "status",
        "timeout",
        "timer",
        "transport",
        "waiter",
    )  # fmt: skip

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_body: int,
        provider: str,
        on_free: Callable[[_Connection | None], None],
    ) -> None:
        self.loop = loop
        self.provider = provider
        self.on_free = on_free
        """Called as a request ends here (answered or failed), before its caller hears of it."""
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[HTTPReply] | None = None
        self.closed = False
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.max_body = max_body
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.framing = ""  # "" (head not read), "length", "chunked", "eof"
        self.need = 0
        self.body = bytearray()
        self.keep = True

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's implement asyncio.Transport without subclassing it)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: this connection is not reusable
            self._close()
            return
        self.buf += data
        try:
            reply = self._parse()
        except _Broken as exc:
            self._fail(
                LLMConnectionError(f"{self.provider}: connection failed (bad HTTP answer: {exc})")
            )
            self._close()
            return
        if reply is not None:
            self._finish(reply)

    def eof_received(self) -> bool:
        if self.waiter is not None and self.framing == "eof":
            self._finish(self._reply(bytes(self.body)))
        self._close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None:
            if self.framing == "eof" and exc is None:
                self._finish(self._reply(bytes(self.body)))
            else:
                why = f": {exc}" if exc is not None else ""
                self._fail(
                    LLMConnectionError(
                        f"{self.provider}: connection failed (the server closed the connection{why})"
                    )
                )

    # -- framing ---------------------------------------------------------------------------

    def _parse(self) -> HTTPReply | None:
        buf = self.buf
        if not self.framing:
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        raise _Broken("the header block is too large")
                    return None
                head = bytes(buf[:end]).decode("latin-1")
                del buf[: end + 4]
                lines = head.split("\r\n")
                version, _, rest = lines[0].partition(" ")
                code = rest[:3]
                if not version.startswith("HTTP/1.") or not code.isdigit():
                    raise _Broken(f"status line {lines[0][:60]!r}")
                status = int(code)
                if 100 <= status < 200:  # an interim answer: the real one follows
                    continue
                break
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    raise _Broken(f"header line {line[:60]!r}")
                key = name.strip().lower()
                value = value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            self.status, self.headers = status, headers
            self.keep = (
                version != "HTTP/1.0" and "close" not in headers.get("connection", "").lower()
            )
            if status in _NO_BODY:
                self.framing, self.need = "length", 0
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                self.framing, self.need = "chunked", -1
            elif "content-length" in headers:
                text = headers["content-length"]
                if not text.isdigit():
                    raise _Broken(f"content-length {text[:30]!r}")
                self.framing, self.need = "length", int(text)
                if self.need > self.max_body:
                    raise _Broken(f"a body of {self.need} bytes is too large")
            else:
                self.framing, self.keep = "eof", False
        if self.framing == "length":
            if len(buf) < self.need:
                return None
            body = bytes(buf[: self.need])
            if len(buf) > self.need:  # bytes beyond the answer: do not reuse the connection
                self.keep = False
            buf.clear()
            return self._reply(body)
        if self.framing == "chunked":
            return self._chunks()
        self.body += buf
        buf.clear()
        if len(self.body) > self.max_body:
            raise _Broken("the body is too large")
        return None

    def _chunks(self) -> HTTPReply | None:
        buf = self.buf
        while True:
            if self.need < 0:  # at a chunk-size line (or, after the last chunk, the trailers)
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        raise _Broken("a chunk-size line is too long")
                    return None
                line = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                if self.need == -2:  # trailers: skip lines up to the empty one
                    if not line:
                        if buf:  # bytes beyond the answer: do not reuse the connection
                            self.keep = False
                            buf.clear()
                        return self._reply(bytes(self.body))
                    continue
                try:
                    size = int(line, 16)
                except ValueError:
                    raise _Broken(f"chunk size {line[:30]!r}") from None
                if size == 0:
                    self.need = -2
                    continue
                if len(self.body) + size > self.max_body:
                    raise _Broken("the body is too large")
                self.need = size
            if len(buf) < self.need + 2:
                return None
            if buf[self.need : self.need + 2] != b"\r\n":
                raise _Broken("a chunk does not end with CRLF")
            self.body += buf[: self.need]
            del buf[: self.need + 2]
            self.need = -1

    def _reply(self, body: bytes) -> HTTPReply:
        return HTTPReply(status=self.status, headers=self.headers, body=body)

    # -- one request -----------------------------------------------------------------------

    def send(self, call: _Call, deadline: float) -> None:
        """Write ``call``'s request and read its answer into ``call.reply``, until the loop's
        clock reaches ``deadline`` (then :class:`LLMTimeoutError`). The connection is open and
        carries nothing else (:attr:`reusable`, or just opened)."""
        self._reset()
        call.conn = self
        self.waiter = call.reply
        self.timer = self.loop.call_at(deadline, self._timed_out)
        assert self.transport is not None
        self.transport.write(call.request)

    def _timed_out(self) -> None:
        self.timer = None
        self._fail(LLMTimeoutError(f"{self.provider}: request timed out"))
        self._close()

    def _ended(self) -> asyncio.Future[HTTPReply] | None:
        """The request in flight has ended: its future, no longer this connection's; the timer
        off; the slot handed on (this connection may already carry the next request)."""
        waiter, self.waiter = self.waiter, None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if waiter is not None:
            self.on_free(self)
        return waiter

    def _finish(self, reply: HTTPReply) -> None:
        waiter = self._ended()
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    def _fail(self, exc: Exception) -> None:
        self.keep = False  # whatever was left of the answer makes the connection unusable
        waiter = self._ended()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    @property
    def reusable(self) -> bool:
        transport = self.transport
        return (
            self.keep
            and not self.closed
            and not self.buf
            and transport is not None
            and not transport.is_closing()
        )


class _Call:
    """One request: its bytes, the future its caller awaits, the connection carrying it once it
    has left the queue."""

    __slots__ = ("conn", "reply", "request")

    def __init__(self, request: bytes, reply: asyncio.Future[HTTPReply]) -> None:
        self.request = request
        self.reply = reply
        self.conn: _Connection | None = None


class HTTP11Client:
    """POSTs JSON bodies to one server (see module docstring); the same interface as
    :class:`~friendsim.llm.lean_http.LeanHTTPClient`."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        timeout_s: float = 60.0,
        max_connections: int = 1000,
        keepalive_s: float = 5.0,
        max_body: int = 64 * 1024 * 1024,
        provider: str = "openai",
    ) -> None:
        problem = url_problem(base_url)
        if problem is not None:
            raise ProviderConfigError(f"{provider}: {problem}")
        parts = urlsplit(base_url)
        if max_connections < 1:
            raise ProviderConfigError(f"{provider}: max_connections must be >= 1")
        self._provider = provider
        self._host = parts.hostname or ""  # never empty: url_problem checked it
        self._tls = parts.scheme == "https"
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        fixed = {"host": host_header(parts), **{k.lower(): v for k, v in headers.items()}}
        fixed["content-type"] = "application/json"
        self._head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._lines: dict[str, bytes] = {}
        self._timeout = timeout_s
        self._keepalive = keepalive_s
        self._max_body = max_body
        self._max = max_connections
        self._queue: deque[_Call] = deque()
        self._opening: set[asyncio.Task[None]] = set()
        self._idle: list[_Connection] = []
        self._ssl: ssl.SSLContext | None = None
        self.in_flight = 0
        """Requests holding a slot now (connecting, sent or being answered)."""
        self.max_in_flight = 0
        """The most requests that held a slot at once."""
        self.opened = 0
        """Connections opened so far (a keep-alive check for tests and benchmarks)."""

    def cap_in_flight(self, limit: int) -> HTTP11Client:
        """Hold at most ``limit`` requests in flight (the lower of it and ``max_connections``)
        and queue the rest here, so that a concurrency limit above can leave its slots to this
        client, which hands each over where it frees (see module docstring). Returns the
        client, whose :attr:`in_flight` and :attr:`max_in_flight` count the slots."""
        if limit < 1:
            raise ValueError(f"concurrency limit must be >= 1, got {limit}")
        self._max = min(self._max, limit)
        return self

    def _start(self, path: str) -> bytes:
        line = self._lines.get(path)
        if line is None:
            target = f"{self._prefix}{path}".encode("ascii")
            line = self._lines[path] = b"POST " + target + b" HTTP/1.1\r\n" + self._head
        return line

    async def _open(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        max_body, provider, on_free = self._max_body, self._provider, self._freed
        context = None
        if self._tls:
            if self._ssl is None:
                self._ssl = _tls_context()
            context = self._ssl
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, max_body, provider, on_free),
                    self._host,
                    self._port,
                    ssl=context,
                )
        except TimeoutError:
            where = f"{self._host}:{self._port}"
            raise connect_timeout(self._provider, where, self._timeout) from None
        except (OSError, ssl.SSLError) as exc:
            tls = isinstance(exc, ssl.SSLError)
            what = "TLS failed" if tls else "cannot connect"
            raise LLMConnectionError(
                f"{self._provider}: connection failed ({what}: {self._host}:{self._port}: "
                f"{exc.strerror or exc})",
                unreachable=not tls,
            ) from exc
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.opened += 1
        return conn

    def _take(self, now: float) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive:
                return conn
            conn._close()
        return None

    def _give(self, conn: _Connection, now: float) -> None:
        if conn.reusable:
            conn.idle_since = now
            self._idle.append(conn)
        else:
            conn._close()
        idle = self._idle
        if idle and now - idle[0].idle_since >= self._keepalive:  # the least recently used
            idle.pop(0)._close()

    def _freed(self, conn: _Connection | None) -> None:
        """A slot has freed (``conn``: the connection its request ended on, if it had one):
        the next queued request takes it at once, on ``conn`` when it can carry another."""
        queue = self._queue
        while queue:
            call = queue.popleft()
            if call.reply.done():  # its caller gave up while it waited
                continue
            now = asyncio.get_running_loop().time()
            if conn is not None and conn.reusable:
                conn.send(call, now + self._timeout)
            else:
                if conn is not None:
                    conn._close()
                self._launch(call, now)
            return
        self.in_flight -= 1
        if conn is not None:
            self._give(conn, asyncio.get_running_loop().time())

    def _launch(self, call: _Call, now: float) -> None:
        """Send ``call``, which holds a slot, on an idle connection, else on a new one opened
        by a task of its own (its errors go to ``call.reply``; the slot goes on)."""
        conn = self._take(now)
        if conn is not None:
            conn.send(call, now + self._timeout)
            return
        task = asyncio.get_running_loop().create_task(self._open_for(call, now + self._timeout))
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    async def _open_for(self, call: _Call, deadline: float) -> None:
        try:
            conn = await self._open(deadline)
        except Exception as exc:
            if not call.reply.done():
                call.reply.set_exception(exc)
            self._freed(None)
            return
        except asyncio.CancelledError:  # the client is closing
            if not call.reply.done():
                call.reply.set_exception(
                    LLMConnectionError(f"{self._provider}: the client was closed")
                )
            self._freed(None)
            raise
        if call.reply.done():  # its caller gave up while the connection was opening
            self._freed(conn)
        else:
            conn.send(call, deadline)

    async def post_json(self, path: str, body: bytes) -> HTTPReply:
        """POST ``body`` (JSON) to ``base_url + path``; the whole answer, whatever its status.
        Raises :class:`LLMTimeoutError` when connecting, sending and reading the answer take
        longer than ``timeout_s`` in all (waiting for a free slot does not count), an
        unreachable :class:`LLMConnectionError` when that deadline passes before a connection
        could be opened."""
        request = b"".join((self._start(path), b"content-length: %d\r\n\r\n" % len(body), body))
        loop = asyncio.get_running_loop()
        call = _Call(request, loop.create_future())
        if self.in_flight < self._max and not self._queue:
            self.in_flight += 1
            if self.in_flight > self.max_in_flight:
                self.max_in_flight = self.in_flight
            now = loop.time()
            conn = self._take(now)
            if conn is None:
                try:
                    conn = await self._open(now + self._timeout)
                except BaseException:
                    self._freed(None)
                    raise
            conn.send(call, now + self._timeout)
        else:
            self._queue.append(call)
        try:
            return await call.reply
        except asyncio.CancelledError:
            self._abandon(call)
            raise

    def _abandon(self, call: _Call) -> None:
        """``call``'s caller was cancelled: out of the queue, or its connection (an answer half
        read) closed and its slot handed on."""
        conn = call.conn
        if conn is None:
            with contextlib.suppress(ValueError):
                self._queue.remove(call)  # else a task is opening its connection: it sees
            return  # the future done and passes the connection on
        if conn.waiter is call.reply:
            conn._close()
            conn._ended()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn._close()
        for task in list(self._opening):
            task.cancel()


def _tls_context() -> ssl.SSLContext:
    """Certificates from ``SSL_CERT_FILE`` if set, else certifi's bundle, else the system's."""
    cafile = os.environ.get("SSL_CERT_FILE") or None
    if cafile is None:
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:
            cafile = None
    return ssl.create_default_context(cafile=cafile)
