"""Token and cost accounting per provider, model and label, with a configurable price table.

Prices are USD per million tokens. ``Usage.cached_input_tokens`` and ``Usage.cache_write_tokens``
are parts of ``Usage.input_tokens``; the uncached remainder is charged at the input price, the
cached part at ``cached_input`` and the cache writes at ``cache_write``. Answers served by the
record/replay cache (``Completion.cached``) are counted as cache hits and cost nothing; what
their recorded usage cost (at batch prices for an answer recorded from a batch) is kept apart as
``replayed_cost_usd`` (a resumed run's
budget counts it: those answers were paid for by the run that recorded them). Each entry also
keeps ``uncached_cost_usd``, the same usage priced as if no prompt token had been served from or
written to the provider's prompt cache, so the manifest shows what prompt caching saved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from friendsim.llm.base import LLM, Completion, LLMRequest, Usage
from friendsim.llm.errors import (
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    MalformedResponseError,
    ProviderConfigError,
    ProviderStoppedError,
    RateLimitedError,
    ServerError,
)


def failure_class(exc: LLMError) -> str:
    """The accounting name of a failed call: its error class; for a call the circuit breaker
    stopped, the provider error that opened it, or ``breaker_open`` for a call never sent."""
    if isinstance(exc, ProviderStoppedError):
        cause = exc.__cause__
        return type(cause).__name__ if isinstance(cause, LLMError) else "breaker_open"
    return type(exc).__name__


def retry_cause(exc: LLMError) -> str:
    """The accounting name of a retry's cause: 429, 5xx, timeout, connection, malformed."""
    if isinstance(exc, RateLimitedError):
        return "429"
    if isinstance(exc, ServerError):
        return "5xx"
    if isinstance(exc, LLMTimeoutError):
        return "timeout"
    if isinstance(exc, MalformedResponseError):
        return "malformed"
    if isinstance(exc, LLMConnectionError):
        return "connection"
    return type(exc).__name__


@dataclass(frozen=True, kw_only=True, slots=True)
class Price:
    """USD per million tokens. Unset cache prices default to the input price."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(self, usage: Usage) -> float:
        cached = usage.cached_input_tokens
        written = usage.cache_write_tokens
        plain = max(0, usage.input_tokens - cached - written)
        cached_price = self.input if self.cached_input is None else self.cached_input
        write_price = self.input if self.cache_write is None else self.cache_write
        return (
            plain * self.input
            + cached * cached_price
            + written * write_price
            + usage.output_tokens * self.output
        ) / 1_000_000

    def uncached_cost(self, usage: Usage) -> float:
        """What ``usage`` would cost with no prompt caching (all input at the input price)."""
        return (usage.input_tokens * self.input + usage.output_tokens * self.output) / 1_000_000


BATCH_DISCOUNT = 0.5
"""Batch answers (``Completion.batch``) cost this fraction of the live price: OpenAI's Batch API
and Anthropic's Message Batches both bill half."""

# Published list prices (USD / 1M tokens) when this table was written; pass your own to override.
DEFAULT_PRICES: dict[str, Price] = {
    "openai:gpt-4o-mini": Price(input=0.15, output=0.60, cached_input=0.075),
    "openai:gpt-4o": Price(input=2.50, output=10.00, cached_input=1.25),
    "anthropic:claude-haiku-4-5": Price(
        input=1.00, output=5.00, cached_input=0.10, cache_write=1.25
    ),
    "anthropic:claude-sonnet-4-5": Price(
        input=3.00, output=15.00, cached_input=0.30, cache_write=3.75
    ),
}


class PriceTable:
    """Looks up a :class:`Price` by ``provider:model``, then bare ``model``, then ``provider:*``.

    Unknown models cost 0 and are listed in :attr:`unpriced` so a report can flag them.
    """

    def __init__(self, prices: Mapping[str, Price | Mapping[str, float]] | None = None) -> None:
        self._prices: dict[str, Price] = {}
        for key, value in (DEFAULT_PRICES if prices is None else prices).items():
            self._prices[key] = (
                value if isinstance(value, Price) else _price_from_mapping(key, value)
            )
        self.unpriced: set[str] = set()

    def price_for(self, provider: str, model: str) -> Price | None:
        for key in (f"{provider}:{model}", model, f"{provider}:*"):
            found = self._prices.get(key)
            if found is not None:
                return found
        self.unpriced.add(f"{provider}:{model}")
        return None

    def cost(self, provider: str, model: str, usage: Usage) -> float:
        price = self.price_for(provider, model)
        return 0.0 if price is None else price.cost(usage)

    def uncached_cost(self, provider: str, model: str, usage: Usage) -> float:
        price = self.price_for(provider, model)
        return 0.0 if price is None else price.uncached_cost(usage)


def _price_from_mapping(key: str, value: Mapping[str, float]) -> Price:
    allowed = {"input", "output", "cached_input", "cache_write"}
    unknown = set(value) - allowed
    if unknown or "input" not in value or "output" not in value:
        raise ProviderConfigError(
            f"price entry {key!r} must have 'input' and 'output' (USD per 1M tokens) and only "
            f"{sorted(allowed)}; got {sorted(value)}"
        )
    try:
        return Price(**{k: float(v) for k, v in value.items()})
    except (TypeError, ValueError) as exc:
        raise ProviderConfigError(f"price entry {key!r}: {exc}") from exc


@dataclass(kw_only=True, slots=True)
class LedgerEntry:
    """Running totals for one (provider, model, label).

    ``attempts``: requests sent to the provider (first tries and retries); ``retries`` by cause
    (see :func:`retry_cause`); ``failures``: calls that failed in the end, by error class.
    """

    calls: int = 0
    cache_hits: int = 0
    batch_calls: int = 0
    errors: int = 0
    attempts: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    uncached_cost_usd: float = 0.0
    replayed_cost_usd: float = 0.0
    latency_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "batch_calls": self.batch_calls,
            "errors": self.errors,
            "attempts": self.attempts,
            "retries": dict(sorted(self.retries.items())),
            "failures": dict(sorted(self.failures.items())),
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cached_input_tokens": self.usage.cached_input_tokens,
            "cache_write_tokens": self.usage.cache_write_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "uncached_cost_usd": round(self.uncached_cost_usd, 8),
            "replayed_cost_usd": round(self.replayed_cost_usd, 8),
            "latency_s": round(self.latency_s, 6),
        }


class Ledger:
    """Usage and cost keyed by (provider, model, label); shareable by several AccountingLLMs."""

    def __init__(self, prices: PriceTable | None = None) -> None:
        self.prices = prices or PriceTable()
        self.entries: dict[tuple[str, str, str], LedgerEntry] = {}

    def _entry(self, provider: str, model: str, label: str) -> LedgerEntry:
        key = (provider, model, label)
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = LedgerEntry()
        return entry

    def record(self, completion: Completion, label: str) -> None:
        entry = self._entry(completion.provider, completion.model, label)
        entry.calls += 1
        factor = BATCH_DISCOUNT if completion.batch else 1.0
        if completion.cached:
            entry.cache_hits += 1
            entry.replayed_cost_usd += factor * self.prices.cost(
                completion.provider, completion.model, completion.usage
            )
            return
        entry.usage = entry.usage + completion.usage
        entry.cost_usd += factor * self.prices.cost(
            completion.provider, completion.model, completion.usage
        )
        entry.uncached_cost_usd += factor * self.prices.uncached_cost(
            completion.provider, completion.model, completion.usage
        )
        if completion.batch:
            entry.batch_calls += 1
        entry.latency_s += completion.latency_s

    def record_error(self, provider: str, model: str, label: str, error: str = "LLMError") -> None:
        entry = self._entry(provider, model, label)
        entry.errors += 1
        entry.failures[error] += 1

    def record_attempt(self, provider: str, model: str, label: str) -> None:
        self._entry(provider, model, label).attempts += 1

    def record_retry(self, provider: str, model: str, label: str, cause: str) -> None:
        self._entry(provider, model, label).retries[cause] += 1

    def total(self) -> LedgerEntry:
        out = LedgerEntry()
        for e in self.entries.values():
            out.calls += e.calls
            out.cache_hits += e.cache_hits
            out.batch_calls += e.batch_calls
            out.errors += e.errors
            out.attempts += e.attempts
            out.retries.update(e.retries)
            out.failures.update(e.failures)
            out.usage = out.usage + e.usage
            out.cost_usd += e.cost_usd
            out.uncached_cost_usd += e.uncached_cost_usd
            out.replayed_cost_usd += e.replayed_cost_usd
            out.latency_s += e.latency_s
        return out

    def to_json(self) -> dict[str, Any]:
        """Manifest-ready summary: totals, per-key rows and models with no price."""
        return {
            "total": self.total().to_json(),
            "by_key": [
                {"provider": p, "model": m, "label": lab, **e.to_json()}
                for (p, m, lab), e in sorted(self.entries.items())
            ],
            "unpriced_models": sorted(self.prices.unpriced),
        }


class AccountingLLM:
    """Records every completion (and failure) of ``inner`` into ``ledger``."""

    def __init__(self, inner: LLM, ledger: Ledger | None = None) -> None:
        self.inner = inner
        self.ledger = ledger or Ledger()
        provider, _, model = inner.model.partition(":")
        self._provider, self._model = (provider, model) if model else ("", provider)

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: LLMRequest) -> Completion:
        try:
            completion = await self.inner.complete(request)
        except LLMError as exc:
            self.ledger.record_error(self._provider, self._model, request.label, failure_class(exc))
            raise
        self.ledger.record(completion, request.label)
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()


def split_model(spec: str) -> tuple[str, str]:
    """``"openai:gpt-4o"`` -> ``("openai", "gpt-4o")``; a bare model has provider ``""``."""
    provider, _, model = spec.partition(":")
    return (provider, model) if model else ("", provider)


_KEY = ("provider", "model", "label")
_SUMMED = (
    "calls",
    "cache_hits",
    "batch_calls",
    "errors",
    "attempts",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cost_usd",
    "uncached_cost_usd",
    "replayed_cost_usd",
    "latency_s",
)


def _add_row(into: dict[str, Any], row: Mapping[str, Any]) -> None:
    for name in _SUMMED:
        into[name] = into.get(name, 0) + (row.get(name) or 0)
    for name in ("retries", "failures"):
        counts: Counter[str] = Counter(into.get(name) or {})
        counts.update(row.get(name) or {})
        into[name] = dict(sorted(counts.items()))


def sum_usage(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Add up ``Ledger.to_json()`` documents (the segments of a resumed run) row by row."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    unpriced: set[str] = set()
    for doc in docs:
        unpriced.update(doc.get("unpriced_models") or ())
        for row in doc.get("by_key") or ():
            key = (str(row.get("provider", "")), str(row.get("model", "")), str(row.get("label")))
            _add_row(rows.setdefault(key, {}), row)
    total: dict[str, Any] = {}
    for row in rows.values():
        _add_row(total, row)
    for entry in (total, *rows.values()):
        for name in ("cost_usd", "uncached_cost_usd", "replayed_cost_usd"):
            entry[name] = round(float(entry.get(name, 0.0)), 8)
        entry["latency_s"] = round(float(entry.get("latency_s", 0.0)), 6)
    if not rows:
        total = Ledger().total().to_json()
    return {
        "total": total,
        "by_key": [
            {**dict(zip(_KEY, key, strict=True)), **row} for key, row in sorted(rows.items())
        ],
        "unpriced_models": sorted(unpriced),
    }
