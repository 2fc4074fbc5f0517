"""Whether a request's connection was ever opened, for telling a connect timeout from a read one.

A request that times out before its connection is open (TCP and TLS) sent nothing: the server
is down or unreachable (a blackholed address, a listener that never accepts), the same outage as
a refused connection. One that times out after that was received, or may have been. The lean
path (:mod:`friendsim.llm.http11`) knows which by itself; on httpcore's connections (the
``httpcore`` path and the SDKs' httpx) a :class:`ConnectWatch` given as the request's ``trace``
extension follows the connection's steps: :data:`WATCH` holds the current SDK call's watch and
:func:`watch_request`, an httpx ``request`` event hook, puts it on the request.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from friendsim.llm.errors import LLMConnectionError, LLMError, LLMTimeoutError

_CONNECTING = frozenset(
    {"connection.connect_tcp.started", "connection.connect_unix_socket.started"}
)


class ConnectWatch:
    """An httpcore ``trace`` callback: ``connecting`` once a connection starts to be opened for
    the request, ``opened`` once the request starts to go out on an open connection."""

    __slots__ = ("connecting", "opened")

    def __init__(self) -> None:
        self.connecting = False
        self.opened = False

    async def __call__(self, name: str, info: Any) -> None:
        if self.opened:  # decided: every later step of the request returns here
            return
        if name in _CONNECTING:
            self.connecting = True
        elif not name.startswith("connection."):
            self.opened = True

    @property
    def unreachable(self) -> bool:
        """A connection was being opened for the request and never was: nothing was sent."""
        return self.connecting and not self.opened


WATCH: ContextVar[ConnectWatch | None] = ContextVar("friendsim_connect_watch", default=None)
"""The watch of the SDK call in progress in this task, if any."""


async def watch_request(request: Any) -> None:
    """An httpx ``request`` event hook: give the request :data:`WATCH`'s watch as its trace."""
    watch = WATCH.get()
    if watch is not None:
        request.extensions["trace"] = watch


def timeout_error(
    provider: str, watch: ConnectWatch | None, where: str, timeout_s: float
) -> LLMError:
    """The error of a request to ``where`` that timed out: when ``watch`` saw no connection
    opened, an unreachable :class:`LLMConnectionError`; otherwise :class:`LLMTimeoutError`."""
    if watch is not None and watch.unreachable:
        return connect_timeout(provider, where, timeout_s)
    return LLMTimeoutError(f"{provider}: request timed out")


def connect_timeout(provider: str, where: str, timeout_s: float) -> LLMConnectionError:
    """No connection to ``where`` could be opened within ``timeout_s``: unreachable."""
    return LLMConnectionError(
        f"{provider}: connection failed (cannot connect: {where}: "
        f"no connection within {timeout_s:g} s)",
        unreachable=True,
    )
