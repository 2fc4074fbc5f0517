"""An asyncio-native network backend for httpcore's HTTP/1.1 connections (plain ``http://``).

httpcore's default backend runs every read and write through anyio (a cancel scope and a
timeout per call) and answers "is this idle connection readable?" with a ``poll`` system call.
At hundreds of requests per second that is most of a core. This backend implements httpcore's
:class:`~httpcore.AsyncNetworkBackend` extension point on an :class:`asyncio.Protocol`:

- reads wait on one future, with a timer only when a timeout is given;
- writes are held until the next read (an HTTP/1.1 request is written as headers then body and
  then the response is read), so a request leaves in one ``send`` call; more than 64 KiB held
  is sent at once. Writes never wait for the peer to drain (requests are small), so httpcore's
  write timeout does not apply;
- ``is_readable`` (httpcore's test for a server that hung up on an idle connection) reads a flag;
- ``TCP_NODELAY`` is set.

TLS is not offered (``start_tls`` raises): ``https://`` origins use httpcore's own backend.
"""

# ruff: noqa: ASYNC109  (timeouts are parameters of httpcore's network-backend interface)
from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from typing import Any, cast

import httpcore

_FLUSH_AT = 64 * 1024
_PAUSE_AT = 1024 * 1024


class _Protocol(asyncio.Protocol):
    """Collects what the peer sends and wakes the one reader waiting for it."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's implement asyncio.Transport without subclassing it)
        self.transport = cast(asyncio.Transport, transport)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _PAUSE_AT and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpcore.ReadTimeout("timed out waiting for the server"))


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP connection (see module docstring)."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._held: list[bytes] = []
        self._held_bytes = 0

    def _flush(self) -> None:
        if not self._held:
            return
        data = b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(data)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._flush()
        p = self._protocol
        if not p.buffer and not p.eof:
            loop = asyncio.get_running_loop()
            p.waiter = waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
            try:
                await waiter
            finally:
                p.waiter = None
                if timer is not None:
                    timer.cancel()
        if p.buffer:
            if len(p.buffer) <= max_bytes:
                data = bytes(p.buffer)
                p.buffer.clear()
            else:
                data = bytes(p.buffer[:max_bytes])
                del p.buffer[:max_bytes]
            if p.paused and len(p.buffer) < _PAUSE_AT:
                p.paused = False
                self._transport.resume_reading()
            return data
        if p.error is not None:
            raise httpcore.ReadError(f"connection lost: {p.error}")
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._held.append(bytes(buffer))
            self._held_bytes += len(buffer)
            if self._held_bytes > _FLUSH_AT:
                self._flush()

    async def aclose(self) -> None:
        self._held.clear()
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("this network backend serves plain http:// only")

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self._protocol.eof or bool(self._protocol.buffer)
        if info in ("socket", "client_addr", "server_addr"):
            key = {"socket": "socket", "client_addr": "sockname", "server_addr": "peername"}
            return self._transport.get_extra_info(key[info])
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Opens :class:`AsyncioStream` connections (see module docstring)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(_Protocol, host, port, local_addr=local), timeout
            )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("this network backend serves TCP only")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
