"""Retries with exponential backoff and seeded jitter around any provider.

Why here and not in the SDKs: providers build their SDK clients with ``max_retries=0`` and this
wrapper retries instead, because (1) a retry must re-enter the endpoint pool, so a dead endpoint
is skipped, and the rate limiter, so each attempt is charged; (2) jitter comes from a seeded
``random.Random`` (the SDKs use the global one); (3) one policy covers every provider, including
the local model and the scripted fake; (4) counts are observable in :class:`RetryStats`.
The SDKs still do the HTTP work, the Retry-After parsing input (their typed errors carry the
response) and the error typing that :mod:`friendsim.llm.sdk_errors` maps onto ours.

Only :class:`~friendsim.llm.errors.TransientLLMError` is retried (429, 5xx, timeouts, lost
connections). A server's ``retry_after`` is honoured (capped by ``max_retry_after_s``).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.llm.errors import TransientLLMError

_log = structlog.get_logger(__name__)
Sleep = Callable[[float], Awaitable[None]]
OnAttempt = Callable[[LLMRequest, "TransientLLMError | None"], None]
"""Told of every attempt (``None``) and of every retry with the error that caused it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """``max_retries`` extra attempts after the first; delay before retry k (0-based) is
    ``min(max_delay_s, base_delay_s * multiplier**k)`` scaled by a jitter factor drawn
    uniformly from ``[1 - jitter, 1]``; a server's Retry-After, when given, is waited exactly
    (capped by ``max_retry_after_s``). The jitter draw happens either way, so the random stream
    does not depend on which servers sent Retry-After."""

    max_retries: int = 4
    base_delay_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 30.0
    jitter: float = 0.5
    max_retry_after_s: float = 120.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("retry delays must be >= 0")


@dataclass(kw_only=True, slots=True)
class RetryStats:
    """Observable retry counters (mutable, owned by one :class:`RetryingLLM`)."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    gave_up: int = 0
    slept_s: float = 0.0
    by_error: Counter[str] = field(default_factory=Counter)


class RetryingLLM:
    """Retries transient failures of ``inner`` per ``policy``; other errors pass through."""

    def __init__(
        self,
        inner: LLM,
        policy: RetryPolicy | None = None,
        *,
        seed: int = 0,
        sleep: Sleep = asyncio.sleep,
        on_attempt: OnAttempt | None = None,
    ) -> None:
        self.inner = inner
        self._on_attempt = on_attempt
        self.policy = policy or RetryPolicy()
        self.stats = RetryStats()
        self._rng = random.Random(seed)
        self._sleep = sleep

    @property
    def model(self) -> str:
        return self.inner.model

    def delay_for(self, retry_index: int, error: TransientLLMError) -> float:
        """Seconds to wait before retry ``retry_index`` (0-based) after ``error``."""
        p = self.policy
        jitter = 1.0 - p.jitter * self._rng.random()
        if error.retry_after is not None and error.retry_after > 0:
            return min(error.retry_after, p.max_retry_after_s)
        return min(p.max_delay_s, p.base_delay_s * p.multiplier**retry_index) * jitter

    async def complete(self, request: LLMRequest) -> Completion:
        self.stats.calls += 1
        retry_index = 0
        while True:
            self.stats.attempts += 1
            if self._on_attempt is not None:
                self._on_attempt(request, None)
            try:
                return await self.inner.complete(request)
            except TransientLLMError as exc:
                self.stats.by_error[type(exc).__name__] += 1
                if retry_index >= self.policy.max_retries:
                    self.stats.gave_up += 1
                    raise
                delay = self.delay_for(retry_index, exc)
                _log.info(
                    "llm_retry",
                    model=self.inner.model,
                    label=request.label,
                    error=type(exc).__name__,
                    status=exc.status,
                    retry=retry_index + 1,
                    delay_s=round(delay, 3),
                )
                self.stats.retries += 1
                if self._on_attempt is not None:
                    self._on_attempt(request, exc)
                self.stats.slept_s += delay
                retry_index += 1
                await self._sleep(delay)

    async def aclose(self) -> None:
        await self.inner.aclose()
