"""Reads started ahead of their turn, taken in order: the feeds of agents that wake together.

Observing the agents of one slice one after the other used to wait for one database round trip
per agent (the feed query runs on the database's thread), and building the next observation
waited for it; the requests of the first agents went out at the pace of those round trips, not
of the work. :class:`FeedsAhead` keeps up to ``depth`` reads queued ahead of the agent being
observed, and logs each feed only at its agent's turn, so the log is the one of serving the
feeds one after the other: a read changes nothing, and what it reads (committed posts and
follows, the clock) does not change while the agents of one slice are observed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

R = TypeVar("R")
T = TypeVar("T")


class FeedsAhead(Generic[R, T]):
    """``read(agent)`` started in the order of ``agents``, at most ``depth`` of them at once
    (the one whose turn it is included); :meth:`take` awaits the read of the agent whose turn
    it is and returns ``log(agent, read)``. :meth:`aclose` cancels the reads never taken (after
    an error or a stop)."""

    def __init__(
        self,
        agents: Sequence[str],
        *,
        read: Callable[[str], Awaitable[R]],
        log: Callable[[str, R], Awaitable[T]],
        depth: int,
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._agents = agents
        self._read = read
        self._log = log
        self._depth = depth
        self._next = 0
        self._queued: deque[tuple[str, asyncio.Future[R]]] = deque()

    def _fill(self) -> None:
        agents, queued = self._agents, self._queued
        while len(queued) < self._depth and self._next < len(agents):
            agent = agents[self._next]
            queued.append((agent, asyncio.ensure_future(self._read(agent))))
            self._next += 1

    async def take(self, agent: str) -> T:
        """The feed of ``agent``, which must be the next agent of the order, logged now."""
        self._fill()
        if not self._queued or self._queued[0][0] != agent:
            expected = self._queued[0][0] if self._queued else None
            raise ValueError(f"feed of {agent!r} asked out of turn (next: {expected!r})")
        _, read = self._queued.popleft()
        return await self._log(agent, await read)

    async def aclose(self) -> None:
        """Cancel the reads started and not taken; wait for them to end."""
        pending = [f for _, f in self._queued]
        self._queued.clear()
        self._next = len(self._agents)
        for f in pending:
            f.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
