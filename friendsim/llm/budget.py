"""A spending limit for a run: refuse the call that could take spending past ``limit_usd``.

:class:`Budget` is shared by every LLM stack of a run (like the :class:`Ledger` it reads).
Spending is the ledger's cost of live calls (every stack of the run, the coach's included) plus
what the answers replayed from the record/replay cache cost when they were recorded (the ledger's
``replayed_cost_usd``: a resumed run re-derives its prefix from the cache, and those answers were
paid for), plus ``spent_before_usd`` when given.

Before a call, :class:`BudgetedLLM` reserves the call's worst case: its estimated prompt at the
full input price (the cache-write price where that is dearer) plus ``max_tokens`` at the output
price, at the price the call will be billed at: a stack in batch mode (``LLMStack.batch``) sends
the call in a provider batch, billed at :data:`~friendsim.llm.accounting.BATCH_DISCOUNT` of the
list price as the ledger charges it, so it is reserved at that price; a call the batch leaves
unanswered falls back live, and before it is sent live its reservation is raised to the live
price (or the budget refuses it, as any call). If spending plus every reservation in
flight plus this one exceeds the limit, the call is refused with
:class:`~friendsim.llm.errors.BudgetExceededError` and the budget stays *tripped* (every later
call is refused too), so the run stops before it could exceed the limit, never after. The
reservation is released when the call ends; the ledger then holds the real cost. A refused call
waits until the calls in flight have finished before it raises: their answers are paid for, so
they must reach the record/replay cache (a resume then gets them free) instead of being cut off
when the run shuts down.

:class:`BudgetedLLM` wraps a whole stack (outside its accounting layer, so the ledger already
holds a call's cost when its reservation is released) and is given to the agents' policies only:
a refused call interrupts the run between phases, which the runtime can resume, whereas a refused
coach call would be recorded as a coach failure and change the log.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass

from friendsim.llm.accounting import BATCH_DISCOUNT, Ledger
from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.llm.batch import BatchingLLM
from friendsim.llm.errors import BudgetExceededError
from friendsim.llm.tokens import estimate_input_tokens


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetStatus:
    """Spending against the limit, for progress displays and the manifest."""

    limit_usd: float
    spent_usd: float
    reserved_usd: float
    tripped: bool

    def to_json(self) -> dict[str, object]:
        return {
            "limit_usd": self.limit_usd,
            "spent_usd": round(self.spent_usd, 8),
            "tripped": self.tripped,
        }


class Budget:
    """The run's limit and the reservations of calls in flight (see the module docstring)."""

    def __init__(self, limit_usd: float, ledger: Ledger, *, spent_before_usd: float = 0.0) -> None:
        if not limit_usd > 0:
            raise ValueError(f"budget limit must be > 0 USD, got {limit_usd!r}")
        self.limit_usd = float(limit_usd)
        self.ledger = ledger
        self.spent_before_usd = float(spent_before_usd)
        self.reserved_usd = 0.0
        self.in_flight = 0
        self.tripped = False
        self._idle: asyncio.Event | None = None

    def spent(self) -> float:
        """USD spent so far (live calls, replayed answers, and any earlier spending)."""
        total = self.ledger.total()
        return self.spent_before_usd + total.cost_usd + total.replayed_cost_usd

    def status(self) -> BudgetStatus:
        return BudgetStatus(
            limit_usd=self.limit_usd,
            spent_usd=self.spent(),
            reserved_usd=self.reserved_usd,
            tripped=self.tripped,
        )

    def worst_case(self, provider: str, model: str, request: LLMRequest) -> float:
        """The most ``request`` can cost: estimated prompt at the dearest input price (a prompt
        written to the provider's cache costs ``cache_write``, 1.25x the input price at
        Anthropic), ``max_tokens`` out."""
        price = self.ledger.prices.price_for(provider, model)
        if price is None:
            return 0.0
        per_input = max(price.input, price.cache_write or 0.0)
        return (
            estimate_input_tokens(request) * per_input + request.max_tokens * price.output
        ) / 1_000_000

    def reserve(self, cost: float, label: str) -> None:
        """Reserve ``cost`` for a new call or trip the budget and raise
        :class:`BudgetExceededError`."""
        self._check(cost, label)
        self.reserved_usd += cost
        self.in_flight += 1
        if self._idle is not None:
            self._idle.clear()

    def reserve_more(self, cost: float, label: str) -> None:
        """Add ``cost`` to the reservation of a call in flight (released with it), or trip the
        budget and raise :class:`BudgetExceededError`."""
        self._check(cost, label)
        self.reserved_usd += cost

    def _check(self, cost: float, label: str) -> None:
        spent = self.spent()
        if self.tripped or spent + self.reserved_usd + cost > self.limit_usd:
            self.tripped = True
            raise BudgetExceededError(
                f"budget of ${self.limit_usd:.4f} reached: ${spent:.4f} spent, "
                f"${self.reserved_usd:.4f} in flight, the next {label!r} call may cost up to "
                f"${cost:.4f}",
                limit_usd=self.limit_usd,
                spent_usd=spent,
            )

    def release(self, cost: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - cost)
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def drained(self) -> None:
        """Return once no reserved call is in flight."""
        if self.in_flight == 0:
            return
        if self._idle is None:
            self._idle = asyncio.Event()
        await self._idle.wait()


@dataclass(kw_only=True, slots=True)
class _Held:
    """What one call of a :class:`BudgetedLLM` has reserved (mutable: raised to the live price
    when its batch leaves it unanswered)."""

    cost: float
    batch: bool


_HELD: ContextVar[_Held | None] = ContextVar("friendsim_budget_held", default=None)


class BudgetedLLM:
    """Refuses calls the :class:`Budget` cannot cover; otherwise passes them to ``inner``.

    When ``inner`` is a stack in batch mode (its ``batch`` layer), calls are reserved at the
    batch price, and the batch layer's live fallback raises the reservation to the live price
    first (see the module docstring)."""

    def __init__(self, inner: LLM, budget: Budget) -> None:
        self.inner = inner
        self.budget = budget
        provider, _, model = inner.model.partition(":")
        self._provider, self._model = (provider, model) if model else ("", provider)
        batching = getattr(inner, "batch", None)
        self._batch = isinstance(batching, BatchingLLM)
        if isinstance(batching, BatchingLLM):
            batching.before_live = self._going_live

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def admission(self) -> asyncio.Semaphore | None:
        """The wrapped stack's admission gate: callers wait there before anything is reserved,
        so the reservations in flight are those of the calls the stack admits, not those of a
        whole phase's requests built at once."""
        gate = getattr(self.inner, "admission", None)
        return gate if isinstance(gate, asyncio.Semaphore) else None

    async def complete(self, request: LLMRequest) -> Completion:
        cost = self.budget.worst_case(self._provider, self._model, request)
        if self._batch:
            cost *= BATCH_DISCOUNT
        try:
            self.budget.reserve(cost, request.label)
        except BudgetExceededError:
            await self.budget.drained()
            raise
        held = _Held(cost=cost, batch=self._batch)
        token = _HELD.set(held)
        released = False
        try:
            return await self.inner.complete(request)
        except BudgetExceededError:  # refused on its way to a live fallback
            self.budget.release(held.cost)
            released = True
            await self.budget.drained()
            raise
        finally:
            _HELD.reset(token)
            if not released:
                self.budget.release(held.cost)

    def _going_live(self, request: LLMRequest) -> None:
        """The batch layer sends ``request`` live: raise its reservation to the live price."""
        held = _HELD.get()
        if held is None or not held.batch:
            return  # not one of this wrapper's calls (the coach's are never refused)
        live = self.budget.worst_case(self._provider, self._model, request)
        self.budget.reserve_more(max(0.0, live - held.cost), request.label)
        held.cost, held.batch = max(live, held.cost), False

    async def aclose(self) -> None:
        await self.inner.aclose()
