"""CoachService: scores every window from the event stream and (optionally) coaches every agent.

The service talks to the rest of the system only through events. It subscribes to
``platform.bus`` from ``from_seq`` (catch-up from the log, then live) and feeds every event to a
:class:`~friendsim.analysis.rewards.RewardScorer` and a
:class:`~friendsim.coach.context.ContextTracker`. At each ``WindowEnded(w)`` it keeps the scores
(for agents' reward feedback) and, when a coach is set, asks it for tips for every registered agent
(in parallel, at most ``concurrency`` at a time), records one ``GuidanceIssued`` per agent — in
agent registration order, so the log is deterministic — via ``platform.record`` and flushes.
:meth:`window_done` lets the runtime await that point (no polling). Coaching off = ``coach=None``:
then no ``GuidanceIssued`` is ever recorded, but scores are still computed.

Two tasks: the *reader* drains the subscription (the bus applies backpressure, so it must never
wait on the platform) and hands finished windows to the *writer*, which calls the coach and
records guidance. A coach that raises or falls back does not stop the service: the failure is
logged and recorded as ``ActionFailed(stage="coach", actor=None, action={"agent": ..., "coach":
...})`` (actor ``None``: the platform only admits registered agents or the runtime as actors of
failures) and the agent gets the RuleCoach tips.

Regimes: a run whose coaching or reward settings change at a window (a fork) is described by
:class:`CoachRegime` values, never by swapping the service's parts while it runs. The regime in
force at window ``w + 1`` scores ``WindowEnded(w)`` and writes the guidance agents read in window
``w + 1``; every regime's scorer sees every event, so a later regime's state at its start is the
one the log implies. :meth:`coaching` answers whether agents see tips in a window.

Resuming: events up to the platform's ``committed_seq`` at :meth:`start` are history. Guidance
is never re-issued for a historical window; only if the last historical window has no
``GuidanceIssued`` in the log (the run stopped between ``WindowEnded`` and its guidance) is it
coached once history has been read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import structlog

from friendsim.analysis.feedback import FeedbackTracker
from friendsim.analysis.rewards import AgentScores, RewardScorer
from friendsim.coach.base import Coach as CoachProtocol
from friendsim.coach.base import CoachAdvice, CoachContext, GapMode, ReportingCoach
from friendsim.coach.context import ContextTracker
from friendsim.coach.rule import rule_tips
from friendsim.llm.errors import STOPS_THE_RUN
from friendsim.platform.events import (
    COACH_ACTOR,
    ActionFailed,
    Event,
    GuidanceIssued,
    WindowEnded,
    unicode_problem,
)
from friendsim.vocabulary import Failure, RewardFeedback, Tip

log = structlog.get_logger(__name__)

LOST_REASONS = frozenset({"llm_error", "coach_error"})
"""Fallback reasons that mean guidance was lost (the provider failed, the coach raised), not
given badly (``invalid_output``: the model's behaviour)."""


class CoachServiceError(RuntimeError):
    """The service stopped (or failed) before it processed the awaited window."""


class _PlatformLike(Protocol):  # the part of friendsim.platform.Platform the service uses
    bus: Any
    clock: Any
    committed_seq: int

    async def record(self, event: Event) -> Event: ...

    async def flush(self) -> int: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class CoachRegime:
    """The reward scorer and coach (``None``: coaching off) that serve window ``start`` on."""

    start: int
    scorer: RewardScorer
    coach: CoachProtocol | None


class CoachService:
    """See the module docstring. Give either ``scorer`` and ``coach`` (one regime for the whole
    run) or ``regimes``; ``concurrency`` bounds the coach calls in flight."""

    def __init__(
        self,
        platform: _PlatformLike,
        *,
        concurrency: int,
        scorer: RewardScorer | None = None,
        coach: CoachProtocol | None = None,
        regimes: Sequence[CoachRegime] = (),
        from_seq: int = 1,
        theme: str = "",
        gap_mode: GapMode = "shortfall",
        name: str = "coach-service",
        maxsize: int = 4096,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"CoachService concurrency must be >= 1, got {concurrency}")
        if regimes and scorer is not None:
            raise ValueError("CoachService takes either scorer/coach or regimes, not both")
        if not regimes:
            if scorer is None:
                raise ValueError("CoachService needs a scorer (or regimes)")
            regimes = (CoachRegime(start=1, scorer=scorer, coach=coach),)
        self.regimes = tuple(sorted(regimes, key=lambda r: r.start))
        if self.regimes[0].start != 1:
            raise ValueError("the first coach regime must start at window 1")
        self._scorers = tuple({id(r.scorer): r.scorer for r in self.regimes}.values())
        self.platform = platform
        self.from_seq = from_seq
        self.theme = theme
        self.gap_mode: GapMode = gap_mode
        self.name = name
        self._maxsize = maxsize
        self._sem = asyncio.Semaphore(concurrency)
        self._workers = concurrency
        self._advising = False
        """Whether the writer is asking the coach for a window's advice (nothing recorded yet)."""
        self.context = ContextTracker()
        self.feedback_tracker = FeedbackTracker()
        self._scores: dict[int, dict[str, AgentScores]] = {}
        self._guidance: dict[str, tuple[Tip, ...]] = {}
        self._coached: set[int] = set()
        self._done: dict[int, asyncio.Event] = {}
        self._finished: set[int] = set()
        """Windows processed whole (scored, and guided when a coach is in force)."""
        self._jobs: asyncio.Queue[tuple[int, list[CoachContext]] | None] = asyncio.Queue()
        self._pending_history: tuple[int, list[CoachContext]] | None = None
        self._history_end = 0
        self._error: BaseException | None = None
        self._stopped = False
        self._sub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.guidance_recorded = 0
        self.failures_recorded = 0
        self.lost_guidance = 0
        """Agents' guidance the coach's model did not give (a provider error outlasting its
        retries) or a coach that raised did not: the rule coach's tips stood in for it, an
        ``ActionFailed(stage="coach")`` says so, and the run cannot end ``completed``. A model's
        invalid answer is its behaviour and is not counted."""

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe and start processing (returns at once)."""
        if self._reader is not None:
            raise RuntimeError("CoachService already started")
        self._history_end = self.platform.committed_seq
        self._sub = self.platform.bus.subscribe(
            name=self.name, from_seq=self.from_seq, maxsize=self._maxsize
        )
        self._reader = asyncio.create_task(self._read(), name=f"{self.name}-reader")
        self._writer = asyncio.create_task(self._write(), name=f"{self.name}-writer")

    async def stop(self, *, abandon: bool = False) -> None:
        """Stop after the windows already handed to the writer are recorded; with ``abandon``
        (a run that stops before it completes), a window whose advice is still being asked is
        dropped instead: its model calls are cancelled and none of its guidance is recorded
        (a resume asks for it again), so a slow or hanging coach model cannot hold a stopped
        run. Guidance being recorded is always recorded whole."""
        if self._stopped:
            return
        self._stopped = True
        if self._sub is not None:
            await self._sub.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._writer is not None:
            self._jobs.put_nowait(None)
            if abandon and self._advising:
                self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        self._release_waiters(CoachServiceError(f"{self.name} stopped"))

    # --- queries ------------------------------------------------------------------------------

    async def window_done(self, window: int) -> Mapping[str, AgentScores]:
        """Wait until ``WindowEnded(window)`` is scored and its guidance recorded and flushed.

        Raises when the window was not processed whole: the error that stops the run as itself
        when it is one of :data:`~friendsim.llm.errors.STOPS_THE_RUN` (the coach's provider is
        down, say: the runtime stops the run with the status that says so), else a
        :class:`CoachServiceError`. A window whose guidance failed is never reported done."""
        if window not in self._finished:
            if self._error is None and not self._stopped:
                await self._event(window).wait()
            if window not in self._finished:
                raise self._failure(window)
        return self._scores[window]

    def _failure(self, window: int) -> BaseException:
        error = self._error
        if isinstance(error, STOPS_THE_RUN):
            return error
        if error is not None:
            failed = CoachServiceError(f"{self.name} failed before window {window}: {error!r}")
            failed.__cause__ = error
            return failed
        if self._stopped:
            return CoachServiceError(f"{self.name} is stopped; window {window} was not processed")
        return CoachServiceError(f"{self.name} ended before window {window}")

    def regime(self, window: int) -> CoachRegime:
        """The regime in force during ``window``."""
        found = self.regimes[0]
        for r in self.regimes:
            if r.start <= window:
                found = r
        return found

    def coaching(self, window: int) -> bool:
        """Whether agents see coach tips in ``window`` (a coach wrote them at its start)."""
        return self.regime(window).coach is not None

    def scores(self, window: int) -> Mapping[str, AgentScores]:
        return self._scores.get(window, {})

    def latest_guidance(self, agent: str) -> tuple[Tip, ...]:
        return self._guidance.get(agent, ())

    def last_scores(self, agent: str) -> AgentScores | None:
        return self.feedback_tracker.last(agent)

    def best_scores(self, agent: str) -> AgentScores | None:
        return self.feedback_tracker.best(agent)

    def feedback(self, agent: str) -> tuple[RewardFeedback | None, RewardFeedback | None]:
        """``(last window, best window)`` reward feedback for ``agent``."""
        return self.feedback_tracker.feedback(agent)

    # --- internals ----------------------------------------------------------------------------

    def _event(self, window: int) -> asyncio.Event:
        ev = self._done.get(window)
        if ev is None:
            ev = self._done[window] = asyncio.Event()
        return ev

    def _mark_done(self, window: int) -> None:
        self._finished.add(window)
        self._event(window).set()

    def _release_waiters(self, error: BaseException) -> None:
        if self._error is None and not isinstance(error, CoachServiceError):
            self._error = error
        for ev in self._done.values():
            ev.set()

    async def _read(self) -> None:
        try:
            async with self._sub:  # detaches on any exit, so a failure never blocks the publisher
                while batch := await self._sub.next_batch():
                    for event in batch:
                        self._on_event(event)
                        if event.seq == self._history_end:
                            self._finish_history()
            self._jobs.put_nowait(None)
        except Exception as exc:  # a bad log must not hang the runtime: fail the waiters
            log.error("coach_service_failed", service=self.name, error=repr(exc))
            self._release_waiters(exc)
            self._jobs.put_nowait(None)
            raise

    def _on_event(self, event: Event) -> None:
        self.context.feed(event)
        kind = type(event)
        if kind is not GuidanceIssued and kind is not WindowEnded:
            for scorer in self._scorers:
                scorer.feed(event)
            return
        match event:
            case GuidanceIssued(agent=agent, window=w, tips=tips):
                self._guidance[agent] = tips
                self._coached.add(w)
                return
            case WindowEnded(window=w):
                regime = self.regime(w + 1)
                scores: list[AgentScores] = []
                for scorer in self._scorers:
                    got = scorer.feed(event)
                    if scorer is regime.scorer:
                        scores = got
            case _:
                for scorer in self._scorers:
                    scorer.feed(event)
                return
        self._scores[w] = {s.agent: s for s in scores}
        self.feedback_tracker.update(scores)
        if regime.coach is None:
            self._mark_done(w)
            return
        contexts = [
            self.context.context(
                s, regime.scorer.lambdas_of(s.agent), theme=self.theme, gap_mode=self.gap_mode
            )
            for s in scores
        ]
        if event.seq <= self._history_end:
            if self._pending_history is not None:
                self._mark_done(self._pending_history[0])
            self._pending_history = (w, contexts)
        else:
            self._jobs.put_nowait((w, contexts))

    def _finish_history(self) -> None:
        pending, self._pending_history = self._pending_history, None
        if pending is None:
            return
        if pending[0] in self._coached:
            self._mark_done(pending[0])
        else:
            self._jobs.put_nowait(pending)

    async def _write(self) -> None:
        while True:
            job = await self._jobs.get()
            if job is None:
                self._release_waiters(CoachServiceError(f"{self.name}: event stream ended"))
                return
            window, contexts = job
            try:
                await self._coach_window(window, contexts)
            except Exception as exc:
                log.error("coach_window_failed", window=window, error=repr(exc))
                self._release_waiters(exc)
                return
            self._mark_done(window)

    async def _advise(self, coach: CoachProtocol, ctx: CoachContext) -> CoachAdvice:
        async with self._sem:
            try:
                if _reports(coach):
                    advice = await cast(ReportingCoach, coach).advise_with_report(ctx)
                    if not _trusted(coach):
                        _check_advice(coach, advice)
                    return advice
                tips = await coach.advise(ctx)
                if not _trusted(coach):
                    _check_tips(coach, tips)
                return CoachAdvice(tips=tuple(tips))
            except STOPS_THE_RUN:
                raise
            except Exception as exc:
                log.warning("coach_error", agent=ctx.agent, window=ctx.window, error=repr(exc))
                return CoachAdvice(
                    tips=rule_tips(ctx),
                    failure=Failure(
                        stage="coach", reason="coach_error", detail=f"{type(exc).__name__}: {exc}"
                    ),
                )

    async def _advise_all(
        self, coach: CoachProtocol, contexts: Sequence[CoachContext]
    ) -> list[CoachAdvice]:
        """The advice for every context, in order, by ``concurrency`` workers taking the
        contexts in order: the calls a task per agent would make, in the same order, without
        a task per agent (100,000 of them at once at every window end of a 100,000-agent run)."""
        out: list[CoachAdvice | None] = [None] * len(contexts)
        todo = iter(enumerate(contexts))

        async def work() -> None:
            for i, ctx in todo:
                out[i] = await self._advise(coach, ctx)

        workers = [asyncio.ensure_future(work()) for _ in range(min(self._workers, len(contexts)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:  # one stops the window: the others' calls are not needed
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        return cast(list[CoachAdvice], out)

    async def _coach_window(self, window: int, contexts: list[CoachContext]) -> None:
        coach = self.regime(window + 1).coach
        assert coach is not None
        self._advising = True
        try:
            advice = await self._advise_all(coach, contexts)
        finally:
            self._advising = False
        now = self.platform.clock.now()
        for ctx, adv in zip(contexts, advice, strict=True):
            name = coach.name
            if adv.failure is not None:
                name = f"{name}:fallback"
                f = adv.failure
                await self.platform.record(
                    ActionFailed(
                        t=now,
                        actor=None,
                        window=window,
                        stage=f.stage,
                        reason=f.reason,
                        detail=f.detail,
                        attempts=f.attempts,
                        action={"agent": ctx.agent, "coach": coach.name},
                    )
                )
                self.failures_recorded += 1
                if f.reason in LOST_REASONS:
                    self.lost_guidance += 1
            await self.platform.record(
                GuidanceIssued(
                    t=now,
                    actor=COACH_ACTOR,
                    agent=ctx.agent,
                    window=window,
                    tips=tuple(adv.tips),
                    coach=name,
                )
            )
            self._guidance[ctx.agent] = adv.tips
            self.guidance_recorded += 1
        self._coached.add(window)
        await self.platform.flush()


def _trusted(coach: CoachProtocol) -> bool:
    """Whether ``coach`` is one of friendsim's own, whose tips are built valid (a plug-in's are
    checked: :func:`_check_tips`)."""
    kind = type(coach)
    return f"{kind.__module__}.{kind.__qualname__}" in _BUILT_IN_COACHES


_BUILT_IN_COACHES = frozenset({"friendsim.coach.rule.RuleCoach", "friendsim.coach.llm.LLMCoach"})


def _check_advice(coach: CoachProtocol, advice: Any) -> None:
    """:func:`_check_tips` for a reporting coach's :class:`CoachAdvice`."""
    if not isinstance(advice, CoachAdvice):
        name = getattr(coach, "name", type(coach).__name__)
        raise TypeError(
            f"coach {name!r} must return a CoachAdvice from advise_with_report(), "
            f"got {type(advice).__name__}"
        )
    _check_tips(coach, advice.tips)


def _check_tips(coach: CoachProtocol, tips: Any) -> None:
    """Raise ``TypeError`` naming the coach unless ``tips`` is a sequence of :class:`Tip` that
    the log can store and read back (:meth:`Tip.from_dict`; text UTF-8 can encode, so no lone
    surrogate): a plug-in coach's wrong answer is that coach's error (the rule coach's tips
    stand in, and the loss is counted), never a ``GuidanceIssued`` that the platform refuses
    or that makes the run's log unreadable."""
    name = getattr(coach, "name", type(coach).__name__)
    if not isinstance(tips, tuple | list):
        raise TypeError(f"coach {name!r} must return Tip objects, got {type(tips).__name__}")
    for i, tip in enumerate(tips):
        if not isinstance(tip, Tip):
            raise TypeError(f"coach {name!r} must return Tip objects, got {type(tip).__name__}")
        try:
            Tip.from_dict(tip.to_dict())
        except ValueError as exc:
            raise TypeError(f"coach {name!r} returned a tip the log cannot hold: {exc}") from None
        problem = unicode_problem(tip, f"tips[{i}]")
        if problem is not None:
            raise TypeError(f"coach {name!r} returned a tip the log cannot hold: {problem}")


def _reports(coach: CoachProtocol) -> bool:
    """Whether ``coach`` is a :class:`ReportingCoach` (the protocol check, once per class: it
    costs tens of microseconds, and the service asks for every agent of every window)."""
    kind = type(coach)
    known = _REPORTING.get(kind)
    if known is None:
        known = _REPORTING[kind] = isinstance(coach, ReportingCoach)
    return known


_REPORTING: dict[type, bool] = {}
