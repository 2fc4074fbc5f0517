"""Price a list of requests four ways: live or batch, with or without provider prompt caching.

The requests come from a dry run (:mod:`friendsim.runtime.estimate`), each reduced to a
:class:`RequestCount`: who asked (``provider``, ``model``), the cacheable stable prefix (the
system text: persona, rules and reward definitions, identical in every request of one agent),
the prompt and answer sizes in tokens.

Prompt caching is simulated the way the providers bill it: the first request carrying a given
prefix writes it (Anthropic bills ``cache_write``; OpenAI writes for free, i.e. at the input
price), later ones read it at ``cached_input``. A prefix shorter than the model's minimum
cacheable length (:data:`MIN_CACHE_TOKENS`) is never cached, whatever the request asks for. The
cache's lifetime (5 minutes unless refreshed) is assumed never to run out between two requests
of one agent. Batch APIs bill half the live price (:data:`BATCH_DISCOUNT`), caching included;
batching applies only where the run has barriers (rounds mode), and only to the requests of a
provider that sends batches (:attr:`RequestCount.batchable`): the others are billed live in a
batch run too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from friendsim.llm.accounting import BATCH_DISCOUNT, Price, PriceTable
from friendsim.llm.base import Usage

MIN_CACHE_TOKENS: dict[str, int] = {
    "openai:*": 1024,
    "anthropic:claude-haiku-4-5": 4096,
    "anthropic:claude-opus-4-5": 4096,
    "anthropic:claude-opus-4-6": 4096,
    "anthropic:claude-haiku-3-5": 2048,
    "anthropic:*": 1024,
}
"""Shortest prefix (tokens) a provider caches, from its documentation when this was written.
Looked up as ``provider:model``, then ``provider:*``; anything else (local, scripted, stubs
named otherwise) caches from the first token."""


def min_cache_tokens(provider: str, model: str, table: Mapping[str, int] | None = None) -> int:
    """The minimum cacheable prefix of ``provider:model`` (0 when unknown)."""
    table = MIN_CACHE_TOKENS if table is None else table
    for key in (f"{provider}:{model}", f"{provider}:*"):
        if key in table:
            return table[key]
    return 0


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestCount:
    """One request of a dry run, in tokens. ``prefix_key`` identifies its stable prefix."""

    provider: str
    model: str
    label: str
    prefix_key: str
    prefix_tokens: int
    input_tokens: int
    output_tokens: int
    batchable: bool = True
    """Whether a batch run sends this request in a provider batch (else it is billed live)."""


@dataclass(kw_only=True, slots=True)
class ModelEstimate:
    """Totals for one provider and model, and its cost four ways (USD)."""

    provider: str
    model: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    by_label: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    cost_cached_usd: float = 0.0
    cost_batch_usd: float = 0.0
    cost_batch_cached_usd: float = 0.0
    priced: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "requests": self.requests,
            "by_label": dict(sorted(self.by_label.items())),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "cost_cached_usd": round(self.cost_cached_usd, 6),
            "cost_batch_usd": round(self.cost_batch_usd, 6),
            "cost_batch_cached_usd": round(self.cost_batch_cached_usd, 6),
            "priced": self.priced,
        }


def price_requests(
    requests: Iterable[RequestCount],
    prices: PriceTable,
    *,
    batchable: bool,
    min_cache: Mapping[str, int] | None = None,
) -> list[ModelEstimate]:
    """One :class:`ModelEstimate` per (provider, model), in sorted order.

    ``requests`` must be in the order they would be sent (the cache simulation depends on it).
    Without ``batchable`` the batch costs equal the live ones; with it, the batch costs price
    the requests that are not :attr:`RequestCount.batchable` live.
    """
    rows: dict[tuple[str, str], ModelEstimate] = {}
    written: set[tuple[str, str, str]] = set()
    plain: dict[tuple[str, str], Usage] = {}
    cached: dict[tuple[str, str], Usage] = {}
    live_plain: dict[tuple[str, str], Usage] = {}
    live_cached: dict[tuple[str, str], Usage] = {}
    for r in requests:
        key = (r.provider, r.model)
        row = rows.get(key)
        if row is None:
            row = rows[key] = ModelEstimate(provider=r.provider, model=r.model)
            plain[key] = cached[key] = live_plain[key] = live_cached[key] = Usage()
        row.requests += 1
        row.by_label[r.label] = row.by_label.get(r.label, 0) + 1
        row.input_tokens += r.input_tokens
        row.output_tokens += r.output_tokens
        used = Usage(input_tokens=r.input_tokens, output_tokens=r.output_tokens)
        plain[key] = plain[key] + used
        read = write = 0
        prefix = min(r.prefix_tokens, r.input_tokens)
        if prefix > 0 and prefix >= min_cache_tokens(r.provider, r.model, min_cache):
            slot = (r.provider, r.model, r.prefix_key)
            if slot in written:
                read = prefix
            else:
                written.add(slot)
                write = prefix
        used_cached = Usage(
            input_tokens=r.input_tokens,
            output_tokens=r.output_tokens,
            cached_input_tokens=read,
            cache_write_tokens=write,
        )
        cached[key] = cached[key] + used_cached
        if not r.batchable:
            live_plain[key] = live_plain[key] + used
            live_cached[key] = live_cached[key] + used_cached
    factor = BATCH_DISCOUNT if batchable else 1.0
    out = []
    for key in sorted(rows):
        row = rows[key]
        price: Price | None = prices.price_for(*key)
        row.cached_input_tokens = cached[key].cached_input_tokens
        row.cache_write_tokens = cached[key].cache_write_tokens
        if price is None:
            row.priced = False
        else:
            row.cost_usd = price.cost(plain[key])
            row.cost_cached_usd = price.cost(cached[key])
            live = price.cost(live_plain[key])
            live_with_cache = price.cost(live_cached[key])
            row.cost_batch_usd = (row.cost_usd - live) * factor + live
            row.cost_batch_cached_usd = (row.cost_cached_usd - live_with_cache) * factor + (
                live_with_cache
            )
        out.append(row)
    return out
