"""A pool of equivalent endpoints (same model, several servers) balanced by outstanding requests.

Each call goes to the healthy member with the fewest requests in flight (ties: round robin).
A member that fails with a lost connection, a timeout or a 5xx is taken out for a cool-down that
doubles with consecutive failures (capped); a 429 takes it out for the server's Retry-After. When
every member is cooling down, the call fails at once with :class:`LLMConnectionError` whose
``retry_after`` is the time until the first member comes back, so the retry wrapper sleeps exactly
that long and then tries again (no polling). The first success after a cool-down restores it.
With ``failover`` on (default), a call whose member fails transiently moves at once to another
healthy member (each failure takes its member out, so a call tries each member at most once);
only when none is left does the error reach the retry wrapper.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.llm.errors import LLMConnectionError, ProviderConfigError, TransientLLMError

_log = structlog.get_logger(__name__)
Clock = Callable[[], float]


@dataclass(kw_only=True, slots=True)
class MemberState:
    """Bookkeeping for one pool member (mutable, owned by the pool)."""

    llm: LLM
    name: str
    outstanding: int = 0
    calls: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    down_until: float = 0.0


class PooledLLM:
    """An :class:`LLM` that spreads calls over ``members`` (all serving the same model)."""

    def __init__(
        self,
        members: Sequence[LLM],
        *,
        names: Sequence[str] | None = None,
        cooldown_s: float = 2.0,
        max_cooldown_s: float = 60.0,
        failover: bool = True,
        clock: Clock = time.monotonic,
    ) -> None:
        if not members:
            raise ProviderConfigError("an endpoint pool needs at least one member")
        if names is not None and len(names) != len(members):
            raise ProviderConfigError("pool names must match members one to one")
        self.members = [
            MemberState(llm=m, name=names[i] if names else f"member{i}")
            for i, m in enumerate(members)
        ]
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.failover = failover
        self.failovers = 0
        self._clock = clock
        self._next = 0

    @property
    def model(self) -> str:
        return self.members[0].llm.model

    def _pick(self) -> MemberState:
        now = self._clock()
        best: MemberState | None = None
        n = len(self.members)
        for offset in range(n):
            m = self.members[(self._next + offset) % n]
            if m.down_until > now:
                continue
            if best is None or m.outstanding < best.outstanding:
                best = m
        if best is None:
            wait = min(m.down_until for m in self.members) - now
            raise LLMConnectionError(
                f"all {n} endpoints of {self.model!r} are cooling down after failures",
                retry_after=max(wait, 0.001),
            )
        self._next = (self.members.index(best) + 1) % n
        return best

    async def complete(self, request: LLMRequest) -> Completion:
        member = self._pick()
        while True:
            try:
                completion = await self._call(member, request)
            except TransientLLMError as exc:
                self._mark_down(member, exc)
                if not self.failover or not self.healthy():
                    raise
                self.failovers += 1
                member = self._pick()
                continue
            if member.consecutive_failures:
                _log.info("llm_endpoint_restored", endpoint=member.name)
            member.consecutive_failures = 0
            return completion

    @staticmethod
    async def _call(member: MemberState, request: LLMRequest) -> Completion:
        member.outstanding += 1
        member.calls += 1
        try:
            return await member.llm.complete(request)
        finally:
            member.outstanding -= 1

    def _mark_down(self, member: MemberState, exc: TransientLLMError) -> None:
        member.failures += 1
        member.consecutive_failures += 1
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
