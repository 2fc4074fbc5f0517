"""In-process publish/subscribe of committed events.

Delivery contract:

* Only committed events are published (``Platform.flush`` commits, then publishes), in ``seq``
  order, each exactly once per subscriber.
* A subscription starts at any ``from_seq``. It first *catches up* by reading the log in pages
  (through the ``read`` function the bus was built with), then attaches to the live stream. The
  hand-over has no gap and no duplicate: the bus records the highest seq it was asked to publish
  (``published_seq``) *before* delivering it, and those events are already committed, so the log
  holds them. A subscription attaches only once it has read at least that far (checked after each
  short page, with no ``await`` between the check and the attach; otherwise it reads again), and
  it drops any live event whose seq it has already yielded. Events published while it was
  catching up are therefore read from the log, and everything after the attach comes live.
* Backpressure: each live subscriber has a bounded ``asyncio.Queue`` holding at most
  ``maxsize`` events (in slices, see :data:`MAX_CHUNK`; the consumer additionally holds the one
  slice it is iterating). ``publish`` awaits while a subscriber's queue is full, so memory stays
  bounded and nothing is dropped; a slow subscriber slows the publisher.

Re-entrancy: publishing happens inside ``Platform.flush`` and waits for full queues, so a
consumer must not itself await ``flush()`` (or a burst of commands that may auto-flush) between
two reads of its subscription: the flush would wait for the publisher, and the publisher for the
consumer. Hand such work to another task (as the coach service does) and keep reading.

Failure policy: a subscriber is *detached* (removed from the live stream, its queue drained, its
iterator finished) when it is closed (``close()``), when its ``async with`` block exits, or when
its handler raises under :meth:`Subscription.consume`. An exception that ended it is kept in
``Subscription.error`` and in ``EventBus.failures[name]``; the publisher and the other subscribers
carry on unaffected. A consumer that merely stops reading without closing keeps applying
backpressure (lossless by design), so consume inside ``async with bus.subscribe(...) as sub:``.
``EventBus.close`` ends every live subscription once it has received everything already
published; a subscription still catching up from the log ends where it is (``last_seq`` says how
far it got; resubscribe from ``last_seq + 1`` on a reopened platform).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Final

import structlog

from .events import Event

log = structlog.get_logger(__name__)

ReadLog = Callable[[int, int], Awaitable[list[Event]]]
"""``read(from_seq, limit)`` -> up to ``limit`` committed events with ``seq >= from_seq``, in order."""


MAX_CHUNK = 64
"""Events per queue item: the queue carries slices of a published batch, not single events, so
delivery costs one queue operation per slice. A subscription with ``maxsize`` m uses slices of
``min(64, max(1, m // 4))`` events and ``m // slice`` queue slots, so at most m events are queued."""


class _End:
    """Queue sentinel: the stream is over."""


_END: Final = _End()


class Subscription:
    """An async iterator of events from ``from_seq`` on: catch-up from the log, then live."""

    def __init__(self, bus: EventBus, *, name: str, from_seq: int, maxsize: int, page: int):
        if from_seq < 1:
            raise ValueError(f"subscription {name!r}: from_seq must be >= 1, got {from_seq}")
        if maxsize < 1:
            raise ValueError(f"subscription {name!r}: maxsize must be >= 1, got {maxsize}")
        self.name = name
        self.last_seq = from_seq - 1
        """Seq of the last event yielded (``from_seq - 1`` before the first)."""
        self.error: BaseException | None = None
        self._bus = bus
        self._page = page
        self._chunk = min(MAX_CHUNK, max(1, maxsize // 4))
        self._queue: asyncio.Queue[Sequence[Event] | _End] = asyncio.Queue(maxsize // self._chunk)
        self.queued = 0
        """Events waiting in the queue (never more than ``maxsize``)."""
        self._backlog: deque[Event] = deque()
        self._live = False
        self._closed = False
        self._finished = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._backlog:
                e = self._backlog.popleft()
                if e.seq <= self.last_seq:
                    continue  # already yielded (read from the log before going live)
                self.last_seq = e.seq
                return e
            if self._finished:
                raise StopAsyncIteration
            if self._live:
                try:
                    item = self._queue.get_nowait()  # fast path: no coroutine
                except asyncio.QueueEmpty:
                    item = await self._queue.get()
                if isinstance(item, _End):
                    self._finished = True
                    raise StopAsyncIteration
                self.queued -= len(item)
                self._backlog.extend(item)
                continue
            if self._closed or self._bus._closed:
                self._finished = True
                raise StopAsyncIteration
            announced_before = self._bus._announced
            page = await self._bus._read(self.last_seq + 1, self._page)
            if self._closed:
                continue
            self._backlog.extend(page)
            last_read = page[-1].seq if page else self.last_seq
            if len(page) == self._page:
                continue
            if last_read >= self._bus._announced:
                self._bus._attach(self)
            elif not page and last_read < announced_before:
                raise RuntimeError(
                    f"subscription {self.name!r}: the log ends at seq {last_read} but seq "
                    f"{announced_before} was published before the read"
                )

    async def next_batch(self) -> list[Event]:
        """The next events, in order, at least one (the rest of the slice the first came in);
        an empty list once the stream is over. The same events as iterating, for a consumer
        that handles each one synchronously: one await per slice, not one per event (a round
        of votes is a hundred thousand events)."""
        try:
            first = await self.__anext__()
        except StopAsyncIteration:
            return []
        out = [first]
        last, backlog = self.last_seq, self._backlog
        while backlog:
            e = backlog.popleft()
            if e.seq > last:
                out.append(e)
                last = e.seq
        self.last_seq = last
        return out

    async def consume(self, handler: Callable[[Event], Awaitable[None]]) -> None:
        """Call ``handler`` on every event until the stream ends.

        If ``handler`` raises, the subscription is detached, the error kept (``self.error``,
        ``bus.failures``) and re-raised; the publisher and other subscribers are unaffected.
        """
        try:
            async for e in self:
                await handler(e)
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            await self.close()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None and not isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self.error = exc
            self._bus.failures[self.name] = exc
            log.warning("bus.subscriber_failed", subscriber=self.name, error=repr(exc))

    async def close(self) -> None:
        """Detach and end the iteration; undelivered queued events are dropped. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._bus._detach(self)
        self._backlog.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
        self.queued = 0
        self._queue.put_nowait(_END)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._fail(exc)
        await self.close()


class EventBus:
    """Fan-out of committed events to subscribers. Publishing is serialised by the caller."""

    def __init__(self, read: ReadLog, *, page: int = 1000, last_published: int = 0) -> None:
        self._read = read
        self._page = page
        self._subs: list[Subscription] = []
        self._announced = last_published
        self._closed = False
        self.failures: dict[str, BaseException] = {}
        """Subscriber name -> the exception that detached it."""

    @property
    def published_seq(self) -> int:
        """Highest seq handed to :meth:`publish` (all of it committed)."""
        return self._announced

    @property
    def subscribers(self) -> tuple[Subscription, ...]:
        return tuple(self._subs)

    def subscribe(
        self, *, name: str, from_seq: int = 1, maxsize: int = 1024, page: int | None = None
    ) -> Subscription:
        """A new subscription from ``from_seq``; it starts reading when first iterated."""
        sub = Subscription(
            self, name=name, from_seq=from_seq, maxsize=maxsize, page=page or self._page
        )
        if self._closed:
            sub._closed = True
            sub._queue.put_nowait(_END)
        return sub

    def _attach(self, sub: Subscription) -> None:
        if self._closed:
            sub._queue.put_nowait(_END)
        elif not sub._closed:
            self._subs.append(sub)
        sub._live = True

    def _detach(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    async def publish(self, events: Sequence[Event]) -> None:
        """Deliver committed ``events`` (ascending seq) to every live subscriber, in order."""
        if not events:
            return
        if self._closed:
            raise RuntimeError("publish on a closed EventBus")
        if events[0].seq <= self._announced:
            raise ValueError(f"publish seq {events[0].seq} <= already published {self._announced}")
        self._announced = events[-1].seq
        subs = tuple(self._subs)
        for sub in subs:
            q = sub._queue
            size = sub._chunk
            for i in range(0, len(events), size):
                chunk = events[i : i + size]
                try:
                    q.put_nowait(chunk)
                except asyncio.QueueFull:
                    if sub._closed:
                        break
                    await q.put(chunk)
                if sub._closed:
                    break
                sub.queued += len(chunk)

    async def close(self) -> None:
        """End every subscription once it has received everything already published."""
        self._closed = True
        for sub in tuple(self._subs):
            if not sub._closed:
                await sub._queue.put(_END)
        self._subs.clear()
