"""Wrappers that bound how hard a provider is driven: a concurrency cap and RPM/TPM limits.

Rate limits use a reservation token bucket (GCRA): each call reserves its cost at the moment it
arrives, computes exactly when the bucket will allow it, and sleeps that long once. No polling,
and callers are served in arrival order. The token limit reserves an estimate (prompt estimate
plus ``max_tokens``) and settles with the real usage afterwards, so over-estimates are refunded.
A call that never reached the provider (no connection could be opened: refused, no route, none
within the timeout) gives back both its request and its tokens, so retries against a server that
is down, or a pool's failover from a dead member, do not spend the budget of calls that are sent.
A call that reached it keeps what it reserved, whatever the answer: the provider counted it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.llm.errors import LLMConnectionError
from friendsim.llm.tokens import estimate_input_tokens

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class InFlightCount(Protocol):
    """Counts of requests holding a slot, kept by whatever holds the slots."""

    in_flight: int
    max_in_flight: int


@runtime_checkable
class CapsInFlight(Protocol):
    """A provider that can hold a concurrency limit itself: it queues the requests beyond
    ``limit`` and returns its counts, or returns ``None`` when it cannot (then the limit is held
    above it). The lean OpenAI-compatible path does (:meth:`friendsim.llm.http11.HTTP11Client.
    cap_in_flight`): its connections hand a freed slot to the next queued request inside the
    callback that read the answer, where a semaphore here would wake the next caller only at its
    turn on the event loop, behind every answer already read."""

    def cap_in_flight(self, limit: int) -> InFlightCount | None: ...


class ConcurrencyLimitedLLM:
    """At most ``limit`` calls to ``inner`` in flight; the rest wait in arrival order: on a
    semaphore here, or in ``inner`` where it holds the limit itself (:class:`CapsInFlight`;
    then ``in_flight`` and ``max_in_flight`` are its counts). A provider shared by stacks with
    different limits holds the lowest."""

    def __init__(self, inner: LLM, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"concurrency limit must be >= 1, got {limit}")
        self.inner = inner
        self.limit = limit
        held = inner.cap_in_flight(limit) if isinstance(inner, CapsInFlight) else None
        self._held_below = held
        self._counts: InFlightCount = held if held is not None else _Counts()
        self._sem = asyncio.Semaphore(limit)

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def in_flight(self) -> int:
        return self._counts.in_flight

    @property
    def max_in_flight(self) -> int:
        return self._counts.max_in_flight

    async def complete(self, request: LLMRequest) -> Completion:
        if self._held_below is not None:
            return await self.inner.complete(request)
        counts = self._counts
        async with self._sem:
            counts.in_flight += 1
            if counts.in_flight > counts.max_in_flight:
                counts.max_in_flight = counts.in_flight
            try:
                return await self.inner.complete(request)
            finally:
                counts.in_flight -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Counts:
    __slots__ = ("in_flight", "max_in_flight")

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0


class TokenBucket:
    """A reservation token bucket: ``rate`` units per second, bursts up to ``capacity`` units.

    :meth:`reserve` books ``cost`` units and returns how long the caller must wait before using
    them (0 when the bucket has room). :meth:`refund` settles the difference with real usage.
    """

    def __init__(self, rate: float, capacity: float, *, clock: Clock = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tat = clock()  # theoretical time at which the bucket is full again

    def reserve(self, cost: float) -> float:
        now = self._clock()
        tat = max(self._tat, now)
        new_tat = tat + cost / self.rate
        self._tat = new_tat
        return max(0.0, new_tat - self.capacity / self.rate - now)

    def refund(self, units: float) -> None:
        """Give back ``units`` booked but not used; a negative value books extra units used."""
        now = self._clock()
        if units > 0:
            self._tat = max(now, self._tat - units / self.rate)
        elif units < 0:
            self._tat = max(now, self._tat) - units / self.rate


class RateLimitedLLM:
    """Requests-per-minute and/or tokens-per-minute limits around ``inner``.

    ``burst_s`` sets how many seconds' worth of budget may be spent at once (at least one
    request); providers enforce per-minute limits over shorter windows too, so the default
    burst is one second's worth rather than a whole minute's.
    """

    def __init__(
        self,
        inner: LLM,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        burst_s: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rpm is None and tpm is None:
            raise ValueError("RateLimitedLLM needs rpm or tpm")
        self.inner = inner
        self._sleep = sleep
        self._requests = (
            TokenBucket(rpm / 60.0, max(1.0, rpm / 60.0 * burst_s), clock=clock)
            if rpm is not None
            else None
        )
        self._tokens = (
            TokenBucket(tpm / 60.0, max(1.0, tpm / 60.0 * burst_s), clock=clock)
            if tpm is not None
            else None
        )
        self.waited_s = 0.0
        self.delayed_calls = 0
        self.admitted = 0
        """Requests let through to ``inner`` (each charged to the budgets)."""
        self.unsent = 0
        """Of those, requests that never reached the provider (no connection could be opened:
        an unreachable :class:`~friendsim.llm.errors.LLMConnectionError`); their reservations
        were given back."""

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: LLMRequest) -> Completion:
        wait = 0.0
        if self._requests is not None:
            wait = self._requests.reserve(1.0)
        reserved = 0
        if self._tokens is not None:
            reserved = estimate_input_tokens(request) + request.max_tokens
            wait = max(wait, self._tokens.reserve(reserved))
        if wait > 0:
            self.delayed_calls += 1
            self.waited_s += wait
            try:
                await self._sleep(wait)
            except asyncio.CancelledError:  # never sent: give the budget back
                if self._requests is not None:
                    self._requests.refund(1.0)
                if self._tokens is not None:
                    self._tokens.refund(reserved)
                raise
        self.admitted += 1
        try:
            completion = await self.inner.complete(request)
        except LLMConnectionError as exc:
            if exc.unreachable:  # no connection opened: nothing reached the provider
                self.unsent += 1
                if self._requests is not None:
                    self._requests.refund(1.0)
                if self._tokens is not None:
                    self._tokens.refund(reserved)
            raise
        if self._tokens is not None:
            used = completion.usage.input_tokens + completion.usage.output_tokens
            self._tokens.refund(reserved - used)
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()
