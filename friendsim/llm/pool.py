"""A pool of equivalent endpoints (same model, several servers) balanced by outstanding requests.

Each call goes to the healthy member with the fewest requests in flight (ties: round robin).
A member that fails with a lost connection, a timeout or a 5xx is taken out for a cool-down that
doubles with consecutive failures (capped); a 429 takes it out for the server's Retry-After. When
every member is cooling down, the call fails at once with :class:`LLMConnectionError` whose
``retry_after`` is the time until the first member comes back, so the retry wrapper sleeps exactly
that long and then tries again (no polling). The first success after a cool-down restores it.
With ``failover`` on (default), a call whose member fails transiently moves at once to another
healthy member (each failure takes its member out, so a call tries each member at most once);
only when none is left does the error reach the retry wrapper. ``on_failover`` (when set) is
told of each such move with the error that caused it, so the stack's accounting counts the
request sent again (an attempt, and a retry by its cause) as it counts the retry wrapper's.
In a stack (:func:`~friendsim.llm.stack.build_llm`) the move is made by :class:`FailoverLLM`
above the rate limits and the concurrency cap, and the pool below them makes one attempt per
call (:class:`PoolAttempts`): the request sent again passes the limits again, as every request
sent to an endpoint must.

Per-agent affinity: a request that names its ``agent`` goes to that agent's home member, chosen
by weighted rendezvous hashing of the agent id over the healthy members (the same choice in
every process that holds the same pool, so many runs sharing a server fleet agree without
talking). The agent's persona prefix therefore stays in one server's prefix cache. When the
home member is cooling down, the same hashing picks the agent's next member (again the same for
all its requests), and the agent returns home once the member is healthy again. Requests
without an agent use least-outstanding routing (outstanding / weight). A member's
``max_concurrency`` caps its requests in flight; further requests routed to it wait there.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.llm.errors import (
    LLMConnectionError,
    LLMError,
    ProviderConfigError,
    TransientLLMError,
)

_log = structlog.get_logger(__name__)
Clock = Callable[[], float]
OnFailover = Callable[[LLMRequest, TransientLLMError], None]


@dataclass(kw_only=True, slots=True)
class MemberState:
    """Bookkeeping for one pool member (mutable, owned by the pool)."""

    llm: LLM
    name: str
    weight: float = 1.0
    max_concurrency: int | None = None
    slots: asyncio.Semaphore | None = None
    outstanding: int = 0
    calls: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    down_until: float = 0.0
    unreachable: bool = False
    """Its latest failure was a connection that could not be opened (and none succeeded since)."""


class PooledLLM:
    """An :class:`LLM` that spreads calls over ``members`` (all serving the same model)."""

    def __init__(
        self,
        members: Sequence[LLM],
        *,
        names: Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
        max_concurrency: Sequence[int | None] | None = None,
        cooldown_s: float = 2.0,
        max_cooldown_s: float = 60.0,
        failover: bool = True,
        affinity: bool = True,
        clock: Clock = time.monotonic,
        on_failover: OnFailover | None = None,
    ) -> None:
        if not members:
            raise ProviderConfigError("an endpoint pool needs at least one member")
        for what, seq in (
            ("names", names),
            ("weights", weights),
            ("max_concurrency", max_concurrency),
        ):
            if seq is not None and len(seq) != len(members):
                raise ProviderConfigError(f"pool {what} must match members one to one")
        if weights is not None and not all(math.isfinite(w) and w > 0 for w in weights):
            raise ProviderConfigError(f"pool weights must be positive numbers, got {list(weights)}")
        if max_concurrency is not None and not all(c is None or c >= 1 for c in max_concurrency):
            raise ProviderConfigError("pool max_concurrency must be >= 1 (or None: no cap)")
        self.members = [
            MemberState(
                llm=m,
                name=names[i] if names else f"member{i}",
                weight=float(weights[i]) if weights else 1.0,
                max_concurrency=max_concurrency[i] if max_concurrency else None,
            )
            for i, m in enumerate(members)
        ]
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.failover = failover
        self.affinity = affinity
        self.failovers = 0
        self.rehomed = 0
        self.on_failover = on_failover
        self._homes: dict[str, str] = {}
        self._clock = clock
        self._next = 0

    @property
    def model(self) -> str:
        return self.members[0].llm.model

    def _pick(self, agent: str | None = None) -> MemberState:
        now = self._clock()
        n = len(self.members)
        healthy = [
            self.members[(self._next + k) % n]
            for k in range(n)
            if self.members[(self._next + k) % n].down_until <= now
        ]
        if not healthy:
            wait = min(m.down_until for m in self.members) - now
            raise LLMConnectionError(
                f"all {n} endpoints of {self.model!r} are cooling down after failures",
                retry_after=max(wait, 0.001),
                unreachable=all(m.unreachable for m in self.members),
            )
        if self.affinity and agent is not None:
            home = max(healthy, key=lambda m: _rendezvous(agent, m))
            if self._homes.get(agent, home.name) != home.name:
                self.rehomed += 1
                _log.info("llm_agent_rehomed", agent=agent, endpoint=home.name)
            self._homes[agent] = home.name
            return home
        free = [
            m for m in healthy if m.max_concurrency is None or m.outstanding < m.max_concurrency
        ]
        best = min(free or healthy, key=lambda m: m.outstanding / m.weight)
        self._next = (self.members.index(best) + 1) % n
        return best

    def home_of(self, agent: str) -> str | None:
        """The member that served ``agent``'s latest request (``None`` before its first)."""
        return self._homes.get(agent)

    async def complete(self, request: LLMRequest) -> Completion:
        """Answer ``request`` from a member, failing over to the others (module docstring)."""
        while True:
            try:
                return await self.attempt(request)
            except TransientLLMError as exc:
                if not self.fails_over(request, exc):
                    raise

    async def attempt(self, request: LLMRequest) -> Completion:
        """Send ``request`` to one member, with no failover: a transient failure takes the
        member out (cool-down) and is raised with ``endpoint`` naming it."""
        member = self._pick(request.agent)
        try:
            completion = await self._call(member, request)
        except LLMError as exc:
            if exc.endpoint is None:
                exc.endpoint = member.name
            if isinstance(exc, TransientLLMError):
                self._mark_down(member, exc)
            raise
        if member.consecutive_failures:
            _log.info("llm_endpoint_restored", endpoint=member.name)
        member.consecutive_failures = 0
        member.unreachable = False
        return completion

    def fails_over(self, request: LLMRequest, exc: TransientLLMError) -> bool:
        """Whether a call whose :meth:`attempt` raised ``exc`` moves to another member now:
        ``failover`` is on, a member failed (not the pick: every member cooling down) and one
        is healthy. When it does, the move is counted and told to ``on_failover``."""
        if not self.failover or exc.endpoint is None or not self.healthy():
            return False
        self.failovers += 1
        if self.on_failover is not None:
            self.on_failover(request, exc)
        return True

    @staticmethod
    async def _call(member: MemberState, request: LLMRequest) -> Completion:
        member.outstanding += 1
        try:
            if member.max_concurrency is None:
                member.calls += 1
                return await member.llm.complete(request)
            if member.slots is None:
                member.slots = asyncio.Semaphore(member.max_concurrency)
            async with member.slots:
                member.calls += 1
                return await member.llm.complete(request)
        finally:
            member.outstanding -= 1

    def _mark_down(self, member: MemberState, exc: TransientLLMError) -> None:
        member.failures += 1
        member.consecutive_failures += 1
        member.unreachable = isinstance(exc, LLMConnectionError) and exc.unreachable
        if exc.retry_after is not None and exc.retry_after > 0:
            pause = min(exc.retry_after, self.max_cooldown_s)
        else:
            pause = min(
                self.max_cooldown_s, self.cooldown_s * 2 ** (member.consecutive_failures - 1)
            )
        member.down_until = max(member.down_until, self._clock() + pause)
        _log.warning(
            "llm_endpoint_down",
            endpoint=member.name,
            error=type(exc).__name__,
            status=exc.status,
            cooldown_s=round(pause, 3),
        )

    def healthy(self) -> list[str]:
        """Names of members not cooling down now."""
        now = self._clock()
        return [m.name for m in self.members if m.down_until <= now]

    async def aclose(self) -> None:
        for m in self.members:
            await m.llm.aclose()


def _rendezvous(agent: str, member: MemberState) -> float:
    """Weighted rendezvous (highest random weight) score of ``member`` for ``agent``."""
    digest = hashlib.sha256(f"{agent}\x00{member.name}".encode()).digest()
    u = (int.from_bytes(digest[:8], "big") + 1) / (2**64 + 1)  # in (0, 1)
    return -member.weight / math.log(u)


class PoolAttempts:
    """``pool`` as an LLM that makes one attempt per call (:meth:`PooledLLM.attempt`): the
    bottom of a stack whose :class:`FailoverLLM` sits above the limits."""

    def __init__(self, pool: PooledLLM) -> None:
        self.pool = pool

    @property
    def model(self) -> str:
        return self.pool.model

    async def complete(self, request: LLMRequest) -> Completion:
        return await self.pool.attempt(request)

    async def aclose(self) -> None:
        await self.pool.aclose()


class FailoverLLM:
    """Calls ``inner`` (the limits above :class:`PoolAttempts`) again while ``pool`` fails the
    call over to another member (:meth:`PooledLLM.fails_over`), so each request sent to an
    endpoint has passed the rate limits and the concurrency cap."""

    def __init__(self, inner: LLM, pool: PooledLLM) -> None:
        self.inner = inner
        self.pool = pool

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: LLMRequest) -> Completion:
        while True:
            try:
                return await self.inner.complete(request)
            except TransientLLMError as exc:
                if not self.pool.fails_over(request, exc):
                    raise

    async def aclose(self) -> None:
        await self.inner.aclose()
