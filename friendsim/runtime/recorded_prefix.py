"""The two layers of an LLM stack re-deriving a recorded prefix of a log (a resume, a fork).

While the platform's log holds fewer events than the plan's ``recorded_until_seq``
(:class:`~friendsim.runtime.plan.RunPlan`), every model request must be answered from what the
first run recorded: :class:`RecordedOnly`, at the bottom of the stack, refuses a request that
misses the cache (:class:`~friendsim.llm.errors.CacheMissError`), so re-deriving never calls a
live model; :class:`RecordedFailures`, at the top, raises a recorded failure again, so the
prefix's ``action_failed`` events are re-derived too. Past the prefix both pass every request
through. The assembly (:mod:`friendsim.runtime.assembly`) puts them in place.
"""

from __future__ import annotations

from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.llm.cache import LLMCache
from friendsim.llm.errors import CacheMissError
from friendsim.platform.service import Platform


class RecordedOnly:
    """A provider that refuses requests while the log is still inside a recorded prefix."""

    def __init__(self, inner: LLM, platform: Platform, until_seq: int) -> None:
        self.inner = inner
        self.platform = platform
        self.until_seq = until_seq

    @property
    def model(self) -> str:
        return self.inner.model

    def check(self, request: LLMRequest) -> None:
        """Refuse ``request`` inside the recorded prefix (batch mode calls this before it
        submits a batch to the provider below)."""
        if self.platform.last_seq < self.until_seq:
            last = request.messages[-1].content if request.messages else request.system
            raise CacheMissError(
                request.cache_key(self.model),
                request.label,
                f"re-deriving the recorded log up to seq {self.until_seq} must use recorded "
                f"answers only: {last[:60]}",
            )

    async def complete(self, request: LLMRequest) -> Completion:
        self.check(request)
        return await self.inner.complete(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class RecordedFailures:
    """The top of a stack re-deriving a recorded prefix: while the log holds fewer than
    ``until_seq`` events, a request with no recorded answer in ``cache`` but a recorded failure
    (:class:`~friendsim.llm.cache.RecordedFailure`) raises that failure again, of the same class
    and with the same message, so the policy, coach or instrument that asked records the same
    ``action_failed``. It is raised above every layer of the stack: not sent, not retried, not
    counted by the circuit breaker (which must not open on failures the first run survived) nor
    by the ledger (the first run counted it; no call is made). Every other request goes on down
    the stack (:class:`RecordedOnly` at its bottom refuses the ones that miss the cache)."""

    def __init__(self, inner: LLM, cache: LLMCache, platform: Platform, until_seq: int) -> None:
        self.inner = inner
        self.cache = cache
        self.platform = platform
        self.until_seq = until_seq

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: LLMRequest) -> Completion:
        if self.platform.last_seq < self.until_seq:
            key = request.cache_key(self.model)
            failure = self.cache.failure(key)
            if failure is not None and not self.cache.has(key):
                raise failure.to_error()
        return await self.inner.complete(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
