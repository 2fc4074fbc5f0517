"""When may the log have grown? Two answers, one protocol, and the follow loop built on it.

* :class:`BusNotifier` — inside the process that writes the run (``friendsim run --serve``): one
  subscription to the platform's bus, consumed at once (it only records the highest published
  seq, so it never slows the run), wakes every waiting stream. No polling at all.
* :class:`StatWatcher` — for a run written by another process (``friendsim serve RUN_DIR``):
  SQLite offers no cross-process change notification, so one task per server compares the
  ``stat`` of ``events.db`` and ``events.db-wal`` (size, mtime) every ``interval`` seconds and
  wakes the streams when they changed. Two ``stat`` calls per interval, whatever the number of
  browsers; inotify would need a platform-specific dependency for a saving nobody would notice.

Either way the streams then read the new rows from the log itself (:mod:`.logfile`), so the
live tail and the catch-up are the same code and give the same rows as ``friendsim log export``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from friendsim.serve.logfile import LogFile, LogReadError, Row

if TYPE_CHECKING:
    from friendsim.platform.bus import EventBus, Subscription

log = structlog.get_logger(__name__)

PAGE = 500
"""Rows per read while catching up."""


@dataclass(frozen=True, slots=True)
class LogProblem:
    """The log could not be read just now (sent to the browser as an SSE ``log-error`` event)."""

    message: str


class Notifier(Protocol):
    """Something that knows when the log may have grown.

    Usage (no lost wake-up): take ``token()`` *before* reading the log; if the read found
    nothing new, ``await wait(token, patience)``: it returns at once when anything was committed
    since the token was taken.
    """

    def token(self) -> int:
        """The current change generation."""
        ...

    async def wait(self, token: int, patience: float) -> bool:
        """Wait until the generation differs from ``token`` (True) or ``patience`` seconds passed (False)."""
        ...


class _Signal:
    """A generation counter with a condition: waiters wake on every bump."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self.generation = 0

    async def bump(self) -> None:
        async with self._cond:
            self.generation += 1
            self._cond.notify_all()

    async def wait(self, token: int, patience: float) -> bool:
        async with self._cond:
            if self.generation != token:
                return True
            try:
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: self.generation != token), patience
                )
            except TimeoutError:
                return False
            return True


class BusNotifier:
    """Wakes streams on every publish of an in-process platform bus (see module docstring).

    Created before the run's platform exists (the page may be opened first); :meth:`attach`
    subscribes to the bus once the platform is open, inside the running event loop.
    """

    def __init__(self) -> None:
        self.published = 0
        self._signal = _Signal()
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    def attach(self, bus: EventBus) -> None:
        self.published = bus.published_seq
        self._sub = bus.subscribe(name="serve", from_seq=self.published + 1, maxsize=4096)
        self._task = asyncio.create_task(self._pump(self._sub))
        self._signal.generation += 1

    async def _pump(self, sub: Subscription) -> None:
        async with sub:
            async for ev in sub:
                self.published = ev.seq
                if not sub.queued:
                    await self._signal.bump()
        await self._signal.bump()

    def token(self) -> int:
        return self._signal.generation

    async def wait(self, token: int, patience: float) -> bool:
        return await self._signal.wait(token, patience)

    async def aclose(self) -> None:
        if self._sub is not None:
            await self._sub.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class StatWatcher:
    """Wakes streams when ``stat`` of the log files changes (see module docstring)."""

    def __init__(self, logfile: LogFile, *, interval: float = 0.2) -> None:
        self.logfile = logfile
        self.interval = interval
        self._signal = _Signal()
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        last = self.logfile.stamp()
        while True:
            await asyncio.sleep(self.interval)
            now = self.logfile.stamp()
            if now != last:
                last = now
                await self._signal.bump()

    def token(self) -> int:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch())
            self._signal.generation += 1  # a fresh watcher: count as a change, re-read once
        return self._signal.generation

    async def wait(self, token: int, patience: float) -> bool:
        return await self._signal.wait(token, patience)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


async def follow(
    logfile: LogFile,
    notifier: Notifier,
    *,
    from_seq: int,
    heartbeat: float = 15.0,
) -> AsyncIterator[list[Row] | list[LogProblem]]:
    """Batches of rows from ``from_seq`` on: catch up from the log, then follow it live.

    Yields an empty batch after ``heartbeat`` seconds without rows (the SSE stream turns it into
    a comment line, which also detects a browser that went away). Never ends by itself.
    """
    nxt = max(1, from_seq)
    while True:
        token = notifier.token()
        try:
            rows = await asyncio.to_thread(logfile.read, nxt, PAGE)
        except LogReadError as exc:
            # A log being created can be briefly unreadable; a broken one stays so. Either way
            # say it once per change and keep the stream open for the next change.
            log.warning("serve.log_unreadable", error=str(exc))
            yield [LogProblem(str(exc))]
            await notifier.wait(token, heartbeat)
            continue
        if rows:
            nxt = rows[-1][0] + 1
            yield rows
            continue
        if not await notifier.wait(token, heartbeat):
            yield []
