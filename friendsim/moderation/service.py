"""ModerationService: reviews every public item from the event stream and records decisions.

It subscribes to ``platform.bus`` (catch-up, then live) and queues every ``PostCreated`` as a
:class:`~.base.ModerationItem`, with the truth label of injected items (``ItemInjected``, and of
the item a repost quotes). The runtime awaits :meth:`sweep` at fixed points of every window
(after each wake's decisions are applied, after interventions): it waits until the service has
read everything committed, asks the moderator about the queued items (in log order; at once for
a ``concurrent`` moderator) and records one ``ModerationDecided`` per verdict in item order, then
flushes. Decisions therefore sit at the same place of the log in every run with the same seed
and answers, and take effect at once (the platform honours them from the next feed on). A
review that failed is recorded as ``ActionFailed(stage="moderation")`` and decides nothing; so
is a plug-in moderator's answer that is not a :class:`~.base.Review` of verdicts, or whose
verdicts hold text the log cannot store (a lone surrogate in a label or reason: reason
``moderator_error``, naming the moderator and the field).

Regimes: a run whose ``[moderation]`` changes at a window (a fork) is described by
:class:`ModerationRegime` values, never by swapping the service's moderator while it runs. An
item is reviewed by the regime in force in the window it was posted in (its
``ModerationItem.window``, the window its decisions belong to), whenever the sweep that reviews
it runs; an item whose regime has no moderator (moderation off) is never reviewed, not even by a
later regime. A regime's moderator reviews only the items of its own windows, so its state
(a rule moderator's strike counts) starts with nothing reviewed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import groupby
from typing import Any, Protocol

import structlog

from friendsim.llm.errors import STOPS_THE_RUN
from friendsim.platform.events import (
    ActionFailed,
    Event,
    ItemInjected,
    ModerationDecided,
    PostCreated,
    WindowStarted,
    unicode_problem,
)
from friendsim.vocabulary import Failure

from .base import ModerationItem, Moderator, Review, Verdict

log = structlog.get_logger(__name__)

LOST_REASONS = frozenset({"llm_error", "moderator_error"})
"""Failure reasons that mean a review was lost (the provider failed, the moderator raised or
answered no review), not given badly (``bad_output``: the model's behaviour)."""


class _PlatformLike(Protocol):
    bus: Any
    clock: Any
    committed_seq: int

    async def record(self, event: Event) -> Event: ...

    async def flush(self) -> int: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class ModerationRegime:
    """The moderator (``None``: moderation off) that reviews the items posted from window
    ``start`` on (up to the next regime's start)."""

    start: int
    moderator: Moderator | None


class ModerationService:
    """See the module docstring. Give either ``moderator`` (one for the whole run) or
    ``regimes``; ``concurrency`` bounds reviews in flight."""

    def __init__(
        self,
        platform: _PlatformLike,
        *,
        moderator: Moderator | None = None,
        regimes: Sequence[ModerationRegime] = (),
        concurrency: int = 8,
        name: str = "moderation",
        maxsize: int = 4096,
    ) -> None:
        if (moderator is None) == (not regimes):
            raise ValueError("ModerationService takes either a moderator or regimes")
        if not regimes:
            regimes = (ModerationRegime(start=1, moderator=moderator),)
        self.regimes = tuple(sorted(regimes, key=lambda r: r.start))
        if self.regimes[0].start != 1:
            raise ValueError("the first moderation regime must start at window 1")
        self.platform = platform
        self.name = name
        self._maxsize = maxsize
        self._sem = asyncio.Semaphore(max(1, concurrency))
        self.items = ItemQueue()
        self._read = 0
        self._moved = asyncio.Condition()
        self._sub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self.decisions = 0
        self.failures = 0
        self.lost_reviews = 0
        """Reviews lost (:data:`LOST_REASONS`): the moderator's provider failed past its
        retries, or the moderator itself raised or answered something that is not a review
        (a bug in a plug-in). Those items went unmoderated, and the run cannot end
        ``completed``. A model's invalid answer is its behaviour and is not counted."""

    async def start(self) -> None:
        """Subscribe from the first event and start reading (returns at once)."""
        self._sub = self.platform.bus.subscribe(name=self.name, from_seq=1, maxsize=self._maxsize)
        self._reader = asyncio.create_task(self._run(), name=f"{self.name}-reader")

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _run(self) -> None:
        try:
            async with self._sub:
                async for event in self._sub:
                    self._on_event(event)
                    async with self._moved:
                        self._read = event.seq
                        self._moved.notify_all()
        except Exception as exc:
            log.error("moderation_service_failed", error=repr(exc))
            self._error = exc
        finally:
            async with self._moved:
                self._moved.notify_all()

    def _on_event(self, event: Event) -> None:
        self.items.feed(event)

    def moderator_of(self, window: int) -> Moderator | None:
        """The moderator of the items posted in ``window`` (``None``: they are not reviewed)."""
        found = self.regimes[0].moderator
        for r in self.regimes:
            if r.start <= window:
                found = r.moderator
        return found

    async def sweep(self) -> int:
        """Review every item committed so far and record the decisions; returns how many.

        A decision belongs to the window its item was posted in; a suspension covers the
        ``windows`` windows after it."""
        target = self.platform.committed_seq
        async with self._moved:
            await self._moved.wait_for(
                lambda: (
                    self._read >= target
                    or self._error is not None
                    or self._reader is None
                    or self._reader.done()
                )
            )
        if self._error is not None:
            raise RuntimeError(f"{self.name} failed: {self._error!r}") from self._error
        asked = [
            (i, m) for i in self.items.take() if (m := self.moderator_of(i.window)) is not None
        ]
        if not asked:
            return 0
        reviews: list[Review | Any] = []
        for _, run in groupby(asked, key=lambda a: id(a[1])):  # one moderator's items in a row
            items = list(run)
            moderator = items[0][1]
            if moderator.concurrent:
                reviews += await asyncio.gather(*(self._review(moderator, i) for i, _ in items))
            else:
                reviews += [await self._ask(moderator, i) for i, _ in items]
        recorded = 0
        now = self.platform.clock.now()
        for (item, moderator), review in zip(asked, reviews, strict=True):
            if not isinstance(review, Review) or not all(
                isinstance(v, Verdict) for v in review.verdicts
            ):
                review = self._not_a_review(moderator, review)
            elif (problem := _unstorable(review)) is not None:
                review = self._unstorable_review(moderator, problem)
            if review.failure is not None:
                f = review.failure
                await self.platform.record(
                    ActionFailed(
                        t=now,
                        window=item.window,
                        stage=f.stage,
                        reason=f.reason,
                        detail=f.detail,
                        attempts=f.attempts,
                        action={"post_id": item.post_id, "moderator": moderator.name},
                    )
                )
                self.failures += 1
                if f.reason in LOST_REASONS:
                    self.lost_reviews += 1
            for v in review.verdicts:
                await self.platform.record(decision_event(item, v, moderator.name, t=now))
                recorded += 1
        self.decisions += recorded
        await self.platform.flush()
        return recorded

    def _not_a_review(self, moderator: Moderator, answer: Any) -> Review:
        r"""A plug-in moderator's answer that is not a :class:`Review` of :class:`Verdict`\ s:
        recorded as that moderator's failure on the item (which stays as it is), naming it."""
        return Review(
            failure=Failure(
                stage="moderation",
                reason="moderator_error",
                detail=f"moderator {moderator.name!r} answered "
                f"{type(answer).__name__}, not a Review of Verdicts",
            )
        )

    def _unstorable_review(self, moderator: Moderator, problem: str) -> Review:
        """A review whose verdicts hold text the log cannot store (a lone surrogate in a label
        or reason): that moderator's failure on the item, as an answer that is not a review is
        (the item stays as it is), never a decision the platform would refuse."""
        return Review(
            failure=Failure(
                stage="moderation",
                reason="moderator_error",
                detail=f"moderator {moderator.name!r} answered a verdict the log cannot hold: "
                f"{problem}",
            )
        )

    async def _review(self, moderator: Moderator, item: ModerationItem) -> Review | Any:
        async with self._sem:
            return await self._ask(moderator, item)

    async def _ask(self, moderator: Moderator, item: ModerationItem) -> Review | Any:
        """``moderator``'s answer on ``item``; an exception it raised (other than those that
        stop the run) is its failure on that item, named, and the other items go on."""
        try:
            return await moderator.review(item)
        except STOPS_THE_RUN:
            raise
        except Exception as exc:
            log.warning("moderator_error", post_id=item.post_id, error=repr(exc))
            detail = f"moderator {moderator.name!r} raised {type(exc).__name__}: {exc}"
            return Review(
                failure=Failure(stage="moderation", reason="moderator_error", detail=detail[:500])
            )


def _unstorable(review: Review) -> str | None:
    """What is wrong with the text of ``review``'s verdicts (``None``: nothing)."""
    for i, v in enumerate(review.verdicts):
        problem = unicode_problem({"label": v.label, "reason": v.reason}, f"verdicts[{i}]")
        if problem is not None:
            return problem
    return None


def decision_event(
    item: ModerationItem, v: Verdict, moderator: str, *, t: float
) -> ModerationDecided:
    """The ``ModerationDecided`` event of verdict ``v`` on ``item``."""
    suspend = v.action == "suspend"
    return ModerationDecided(
        t=t,
        window=item.window,
        moderator=moderator,
        action=v.action,
        post_id=item.post_id,
        author=item.author,
        label=v.label,
        from_window=item.window + 1 if suspend else None,
        until_window=item.window + v.windows if suspend else None,
        reason=v.reason,
        score=None if v.score is None else round(v.score, 6),
    )


class ItemQueue:
    """The items awaiting review, built from the event stream: every ``PostCreated`` in log
    order, with the truth label of ``ItemInjected`` (which follows its post) and of the item a
    repost quotes, and the window it was posted in. Shared by the live service and the
    offline re-drive, so both show a moderator the same items."""

    def __init__(self) -> None:
        self._queue: list[ModerationItem] = []
        self._truth: dict[int, tuple[str, str]] = {}
        self.window = 0

    def feed(self, event: Event) -> None:
        match event:
            case WindowStarted(window=w):
                self.window = w
            case PostCreated(post_id=pid, quote_of=quoted):
                if quoted is not None and quoted in self._truth:
                    self._truth[pid] = self._truth[quoted]
                truth, source = self._truth.get(pid, (None, ""))
                self._queue.append(
                    ModerationItem(
                        post_id=pid,
                        author=event.actor or "",
                        text=event.text,
                        topic=event.topic,
                        window=self.window,
                        parent_id=event.parent_id,
                        quote_of=quoted,
                        truth=truth,
                        source=source,
                    )
                )
            case ItemInjected(post_id=pid, truth=truth, source=source):
                self._truth[pid] = (truth, source)
                self._queue = [
                    replace(i, truth=truth, source=source) if i.post_id == pid else i
                    for i in self._queue
                ]
            case _:
                pass

    def __len__(self) -> int:
        return len(self._queue)

    def take(self) -> list[ModerationItem]:
        """The queued items, oldest first; the queue is emptied."""
        items, self._queue = self._queue, []
        return items
