"""Stack the wrappers around a provider in the one sensible order.

Outermost first::

    AccountingLLM        sees every answer, cache hits included (counted, not charged)
    CircuitBreakerLLM    stops the run on a fatal error or repeated failures after retries
    CachingLLM           a hit skips everything below: no rate budget, no slot, no retry
    SecretsMaskedLLM     the environment's secret values masked in answers (model output is
                         untrusted), so the cache and the log never hold them
    BatchingLLM          (batch mode) phases' requests go out as provider batches; live fallback
    RetryingLLM          each attempt re-enters the limits and the endpoint pool (without
                         retries, AttemptsCountedLLM only counts each request sent; a pool's
                         failovers are counted as attempts and retries too)
    FailoverLLM          (endpoint pool) a call whose member failed goes to another member
                         through the limits below again
    RateLimitedLLM       waits for RPM/TPM budget *before* taking a concurrency slot
    ConcurrencyLimitedLLM  holds a slot only while a request is actually in flight (or leaves
                         the limit to a provider that holds it itself: the lean HTTP client
                         hands a freed slot on where the answer is read)
    provider             (an endpoint pool when several URLs are given: one member per attempt)

Backoff sleeps happen above the limits, so a retrying call holds no slot while it waits.

Admission (:func:`admission`): callers that do work to build a request (an agent's prompt)
enter the stack's admission gate first and hold it until their answer is read. The gate admits
a quarter more callers than the concurrency cap, so a built request is always waiting when a
slot frees, but the work for a phase of thousands of requests is done as slots free, not all
before the first answer can be read (which would hold every answer of the first wave back by
that whole sweep). Batch mode has no gate: a batch wants the whole phase at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from friendsim.llm.accounting import (
    AccountingLLM,
    Ledger,
    Price,
    PriceTable,
    retry_cause,
    split_model,
)
from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.llm.batch import BatchingLLM, BatchJournal, PollPolicy, batch_backend_for
from friendsim.llm.breaker import CircuitBreakerLLM, identify
from friendsim.llm.cache import CacheMode, CachingLLM, LLMCache
from friendsim.llm.errors import ProviderConfigError, TransientLLMError
from friendsim.llm.limits import ConcurrencyLimitedLLM, RateLimitedLLM
from friendsim.llm.masking import SecretsMaskedLLM
from friendsim.llm.pool import FailoverLLM, PoolAttempts, PooledLLM
from friendsim.llm.registry import create_llm
from friendsim.llm.retry import OnAttempt, RetryingLLM, RetryPolicy


class AttemptsCountedLLM:
    """Where no retry layer is kept (``retries=0``): each request sent below is one attempt in
    the ledger, as the retry layer counts them, so the manifest's ``attempts`` are the requests
    sent whatever the retry setting."""

    def __init__(self, inner: LLM, on_attempt: OnAttempt) -> None:
        self.inner = inner
        self._on_attempt = on_attempt

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: LLMRequest) -> Completion:
        self._on_attempt(request, None)
        return await self.inner.complete(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(frozen=True, kw_only=True, slots=True)
class LLMStack:
    """The built stack: ``llm`` to call, plus handles on each layer for stats and tests."""

    llm: LLM
    provider: LLM
    ledger: Ledger
    retry: RetryingLLM | None
    breaker: CircuitBreakerLLM | None
    cache: CachingLLM | None
    rate: RateLimitedLLM | None
    concurrency: ConcurrencyLimitedLLM | None
    admission: asyncio.Semaphore | None = None
    """The admission gate (see module docstring); ``None``: no gate."""
    batch: BatchingLLM | None = None
    """The batch layer (batch mode with a provider that sends batches); ``None``: live."""

    @property
    def model(self) -> str:
        return self.llm.model

    async def complete(self, request: LLMRequest) -> Completion:
        return await self.llm.complete(request)

    async def aclose(self) -> None:
        await self.llm.aclose()


async def build_llm(
    spec: str | LLM,
    *,
    concurrency: int | None = 16,
    rpm: float | None = None,
    tpm: float | None = None,
    retries: int | RetryPolicy | None = 4,
    retry_seed: int = 0,
    cache_path: str | Path | None = None,
    cache_mode: CacheMode | str = CacheMode.OFF,
    prices: PriceTable | Mapping[str, Price | Mapping[str, float]] | None = None,
    ledger: Ledger | None = None,
    batch_journal: BatchJournal | None = None,
    batch_poll: PollPolicy | None = None,
    breaker_threshold: int | None = None,
    **provider_options: Any,
) -> LLMStack:
    """Create the provider for ``spec`` (or take a ready LLM) and wrap it.

    ``None``/``0`` switches a layer off (``retries=0`` keeps no retry layer;
    ``breaker_threshold=None`` keeps no circuit breaker). A cache needs
    ``cache_path`` and a mode other than ``off``. ``provider_options`` go to the factory.
    ``batch_journal`` turns on batch mode for providers with a batch API (others stay live).
    The returned :class:`LLMStack` is itself an LLM; ``aclose`` closes every layer.
    """
    mode = CacheMode.parse(cache_mode)
    if mode is not CacheMode.OFF and cache_path is None:
        raise ProviderConfigError(f"cache_mode={mode.value!r} needs a cache_path")
    provider = spec if not isinstance(spec, str) else create_llm(spec, **provider_options)
    llm: LLM = PoolAttempts(provider) if isinstance(provider, PooledLLM) else provider
    conc = None
    if concurrency:
        llm = conc = ConcurrencyLimitedLLM(llm, concurrency)
    rate = None
    if rpm or tpm:
        llm = rate = RateLimitedLLM(llm, rpm=rpm or None, tpm=tpm or None)
    if ledger is None:
        table = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        ledger = Ledger(table)
    book = ledger
    provider_name, model_name = split_model(provider.model)

    def on_attempt(request: LLMRequest, error: TransientLLMError | None) -> None:
        if error is None:
            book.record_attempt(provider_name, model_name, request.label)
        else:
            book.record_retry(provider_name, model_name, request.label, retry_cause(error))

    if isinstance(provider, PooledLLM):

        def on_failover(request: LLMRequest, error: TransientLLMError) -> None:
            on_attempt(request, error)
            on_attempt(request, None)

        provider.on_failover = on_failover
        llm = FailoverLLM(llm, provider)
    retry = None
    policy = RetryPolicy(max_retries=retries) if isinstance(retries, int) else retries
    if policy is not None and policy.max_retries > 0:
        llm = retry = RetryingLLM(llm, policy, seed=retry_seed, on_attempt=on_attempt)
    else:
        llm = AttemptsCountedLLM(llm, on_attempt)
    batching = None
    if batch_journal is not None:
        found = batch_backend_for(provider)
        if found is not None:
            backend, checks = found
            llm = batching = BatchingLLM(
                llm, backend, batch_journal, poll=batch_poll, checks=checks
            )
    llm = SecretsMaskedLLM(llm)  # below the cache: only masked answers are kept
    caching = None
    if mode is not CacheMode.OFF and cache_path is not None:
        store = await LLMCache.open(cache_path)
        llm = caching = CachingLLM(llm, store, mode)
    breaker = None
    if breaker_threshold is not None:
        llm = breaker = CircuitBreakerLLM(llm, identify(provider), threshold=breaker_threshold)
    llm = AccountingLLM(llm, ledger)
    return LLMStack(
        llm=llm,
        provider=provider,
        ledger=ledger,
        retry=retry,
        breaker=breaker,
        cache=caching,
        rate=rate,
        concurrency=conc,
        admission=(
            asyncio.Semaphore(concurrency + max(8, concurrency // 4))
            if concurrency and batch_journal is None
            else None
        ),
        batch=batching,
    )


def admission(llm: LLM) -> AbstractAsyncContextManager[Any]:
    """The gate to hold while building a request for ``llm`` and awaiting its answer (see
    module docstring): the admission gate of the stack (or of the stack a wrapper such as
    :class:`~friendsim.llm.budget.BudgetedLLM` exposes), or an open one. Never nest two holds (a
    holder waiting for a second hold can deadlock the gate)."""
    gate = getattr(llm, "admission", None)
    return gate if isinstance(gate, asyncio.Semaphore) else contextlib.nullcontext()
