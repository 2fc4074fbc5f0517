"""A lean JSON-over-HTTP client for OpenAI-compatible servers, on httpx's core (httpcore).

Why: through the official SDK a request to a local inference server costs milliseconds of this
process's CPU: the SDK's per-call parameter transform and response models, httpx's client
layer, and httpcore's connection pool, which scans every connection (with a ``poll`` system
call for each idle one) whenever a request starts or ends. At the concurrency a run keeps busy
(hundreds of requests in flight) that saturates one core and holds runs far below the servers'
capacity. See ``bench/llm_bound.py`` and BENCHMARKS.md for the measurements.

What: httpcore's HTTP/1.1 connections (h11 underneath, as in httpx), kept on a free list
instead of a pool: a request takes the most recently used idle connection (or opens one), and
gives it back when the answer is read, so finding a connection is O(1) whatever the
concurrency. Plain ``http://`` connections use the asyncio-native network backend of
:mod:`friendsim.llm.net_backend`; ``https://`` ones httpcore's own (TLS, certificates). At most
``max_connections`` requests are in flight (others wait); at most that many idle connections
are kept, each for ``keepalive_s`` seconds. No retries here: the retry layer above retries.

Errors are ours (:mod:`friendsim.llm.errors`): a timeout is :class:`LLMTimeoutError`, a
refused, reset or dropped connection :class:`LLMConnectionError`, and so is a timeout before a
new connection was opened (unreachable, as a refused one: a
:class:`~friendsim.llm.connect_watch.ConnectWatch` follows it); an HTTP error answer is
mapped by :func:`friendsim.llm.http_reply.status_error`. Messages name the provider, never a
header (so never a key).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpcore

from friendsim.llm.connect_watch import ConnectWatch, timeout_error
from friendsim.llm.errors import LLMConnectionError, ProviderConfigError
from friendsim.llm.http_reply import HTTPReply
from friendsim.llm.net_backend import AsyncioBackend
from friendsim.llm.urls import host_header, url_problem


class LeanHTTPClient:
    """POSTs JSON bodies to one server (see module docstring)."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        timeout_s: float = 60.0,
        max_connections: int = 1000,
        keepalive_s: float = 5.0,
        provider: str = "openai",
    ) -> None:
        problem = url_problem(base_url)
        if problem is not None:
            raise ProviderConfigError(f"{provider}: {problem}")
        parts = urlsplit(base_url)
        if max_connections < 1:
            raise ProviderConfigError(f"{provider}: max_connections must be >= 1")
        self._base = base_url.rstrip("/")
        self._provider = provider
        self._timeout = {"connect": timeout_s, "read": timeout_s, "write": timeout_s}
        self._total_s = timeout_s
        self._headers = [(b"host", host_header(parts).encode("ascii"))] + [
            (k.lower().encode("ascii"), v.encode("latin-1")) for k, v in headers.items()
        ]
        self._backend = AsyncioBackend() if parts.scheme == "http" else None
        self._keepalive_s = keepalive_s
        self._max_idle = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[httpcore.AsyncHTTPConnection] = []
        self._urls: dict[str, httpcore.URL] = {}
        self.opened = 0
        """Connections opened so far (a keep-alive check for tests and benchmarks)."""

    def _url(self, path: str) -> httpcore.URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpcore.URL(self._base + path)
        return url

    async def _take(
        self, url: httpcore.URL
    ) -> tuple[httpcore.AsyncHTTPConnection, ConnectWatch | None]:
        """An idle connection (no watch: it is open), else a new one with a watch to follow
        its opening."""
        while self._idle:
            conn = self._idle.pop()
            if conn.is_available() and not conn.has_expired():
                return conn, None
            await conn.aclose()
        self.opened += 1
        conn = httpcore.AsyncHTTPConnection(
            url.origin, keepalive_expiry=self._keepalive_s, network_backend=self._backend
        )
        return conn, ConnectWatch()

    async def _give(self, conn: httpcore.AsyncHTTPConnection) -> None:
        if conn.is_available() and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            await conn.aclose()
        if self._idle and self._idle[0].has_expired():  # the least recently used one
            await self._idle.pop(0).aclose()

    async def post_json(self, path: str, body: bytes) -> HTTPReply:
        """POST ``body`` (JSON) to ``base_url + path``; the whole answer, whatever its status.
        Raises :class:`LLMTimeoutError` when the request takes longer than ``timeout_s`` in all
        (waiting for a free slot does not count), an unreachable :class:`LLMConnectionError`
        when that was before its connection could be opened."""
        url = self._url(path)
        headers = [
            *self._headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
        ]
        async with self._slots:
            conn, watch = await self._take(url)
            extensions: dict[str, object] = {"timeout": self._timeout}
            if watch is not None:
                extensions["trace"] = watch
            request = httpcore.Request(
                b"POST", url, headers=headers, content=body, extensions=extensions
            )
            try:
                async with asyncio.timeout(self._total_s):  # httpcore's timeouts are per read
                    response = await conn.handle_async_request(request)
                    try:
                        data = await response.aread()
                    finally:
                        await response.aclose()
            except BaseException as exc:
                await _close_quietly(conn)
                if isinstance(exc, httpcore.TimeoutException | TimeoutError):
                    where = url.origin.host.decode("ascii") + f":{url.origin.port}"
                    raise timeout_error(self._provider, watch, where, self._total_s) from exc
                if isinstance(exc, httpcore.NetworkError | httpcore.ProtocolError | OSError):
                    raise LLMConnectionError(
                        f"{self._provider}: connection failed ({type(exc).__name__})",
                        unreachable=isinstance(exc, httpcore.ConnectError),
                    ) from exc
                raise
            await self._give(conn)
        return HTTPReply(
            status=response.status,
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers},
            body=data,
        )

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close_quietly(conn)


async def _close_quietly(conn: httpcore.AsyncHTTPConnection) -> None:
    try:
        await conn.aclose()
    except Exception:  # a connection already broken may fail to close
        pass
