"""The part both schedulers share: observe, decide concurrently, apply in a deterministic order.

One *wake* = a set of agents that act on the same committed snapshot (a round's planning phase,
or one slice of the continuous timeline). The engine flushes the platform, builds each agent's
observation in sorted agent order (each feed logged as ``FeedServed`` at its agent's turn, read
ahead of it: :meth:`Engine.feeds_ahead`), asks every policy concurrently, each as soon as its observation is built (the LLM
layer's concurrency wrapper bounds the calls in flight), and once all are built applies the
decisions sorted by agent id, actions in the policy's order: each agent's decision as soon as it
and every decision before it in that order have arrived, so applying overlaps the requests
still outstanding. A decision still being made reads only its observation and its own policy's
memory, which only applying its own decision changes, so with the same seed and the same model
answers the log is identical whatever order the answers arrive in.

A policy that raises is never allowed to end the run: an :class:`~friendsim.llm.errors.LLMError`
becomes ``ActionFailed(stage="llm")``, any other exception ``ActionFailed(stage="policy")``
(logged, and counted in :attr:`Engine.policy_errors`: the decision is lost to a bug, so the run
cannot end ``completed``). Some errors end it, on purpose: those of
:data:`~friendsim.llm.errors.STOPS_THE_RUN` (a replay-only cache miss: the replay cannot be
faithful; a provider configuration error; an open circuit breaker, turned into a stop by the
assembly) and a spent budget (``BudgetExceededError``, raised as :class:`RunInterrupted`). When one
of them ends a wake, or a stop is requested while a wake waits for its model answers, the wake's
calls still in flight are cancelled and nothing more of the wake is applied: the log ends with an
ordered prefix of what the whole wake would have applied, as after a kill, and a resume re-derives
that prefix from the recorded answers and asks the rest again. A decision lost to the LLM layer
(which a resume asks again and may get answered) is never part of such a prefix: it and the
decisions after it are applied only once the whole wake has arrived. After each window the failure
budget (``max_failure_share`` of the window's model-backed decisions lost to provider errors) is
checked (:func:`~friendsim.runtime.status.check_failure_budget`), except for a window a resume
re-derives that the recorded run judged already (``judged_until_seq``): judging it again would stop
the resume of a run stopped by the budget exactly where that run stopped. A window that spends the
budget while a provider is unreachable (``outage``: its latest calls failed after retries) stops
the run as that provider's outage (interrupted, ``provider_down``), not as the budget.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from friendsim.llm.errors import (
    STOPS_THE_RUN,
    BudgetExceededError,
    LLMError,
    ProviderStoppedError,
)
from friendsim.llm.redact import redact_text
from friendsim.platform.events import DirectMessageSent, VoteCast, VoteChanged
from friendsim.platform.feeds.base import FeedRanker, same_for_every_reader
from friendsim.platform.views import PostView
from friendsim.runtime.ahead import FeedsAhead
from friendsim.runtime.apply import Outcome, apply_ballot, apply_decision, received_vote
from friendsim.runtime.observe import AgentContext, CoachView, ScoresLike, feed_item, inbox_message
from friendsim.runtime.on_demand import OnDemand
from friendsim.runtime.status import RunFailed, RunInterrupted, check_failure_budget, provider_stop
from friendsim.vocabulary import (
    ActionType,
    Ballot,
    Decision,
    Failure,
    FeedItem,
    InboxMessage,
    Observation,
    Policy,
    feed_capacity,
)

if TYPE_CHECKING:
    from friendsim.platform.service import Platform
    from friendsim.runtime.control import PauseGate
    from friendsim.runtime.wakes import ExpectedWakes

_TAIL = 8
"""Answers still awaited when :meth:`Engine._gather_applying` starts committing what it applied
without waiting for the phase's end: the commit and the coach's reading of it then overlap the
last answers instead of lying between two phases."""

_OBSERVE_BATCH = 8
"""Observations built (:meth:`Engine.observe_and_decide`), or policies' coroutines started
(:meth:`Engine._gather_applying`), between two yields to the event loop: work that does not
wait would otherwise hold back the requests of the ones before it."""
_FEEDS_AHEAD = 16
"""Feed reads queued ahead of the agent being observed (:meth:`Engine.feeds_ahead`)."""

log = structlog.get_logger(__name__)

MAX_RECEIVED_VOTES = 200

T = TypeVar("T")


@dataclass(slots=True)
class WindowTally:
    """Counts of one window, filled as wakes are applied (the window's report)."""

    window: int
    wakes: int = 0
    actions: int = 0
    events: int = 0
    nots: int = 0
    failures: int = 0
    votes: int = 0
    llm_asked: int = 0
    llm_failures: int = 0
    policy_errors: int = 0
    """Decisions and ballots lost to a policy that raised (a bug in its code, not the model's
    answer): recorded as ``action_failed`` (``stage="policy"``/``"vote"``); a run with any ends
    ``degraded``. Not counted against the provider failure budget."""
    end_seq: int = 0
    """The seq of the window's ``WindowEnded`` (0 until it is recorded)."""
    prompt_tokens: list[int] = field(default_factory=list)
    scores: Mapping[str, ScoresLike] = field(default_factory=dict, repr=False)

    def add(self, outcome: Outcome) -> None:
        self.actions += len(outcome.applied)
        self.events += outcome.events
        self.nots += outcome.nots
        self.failures += outcome.failures
        self.votes += outcome.votes


class RunListener:
    """Progress hooks (no-ops here); the CLI's rich progress bar overrides them."""

    def run_started(self, *, windows: int, agents: int) -> None:
        """Called once before the first window."""

    def wakes_expected(self, *, window: ExpectedWakes, run: ExpectedWakes) -> None:
        """Called once in continuous mode, before :meth:`run_started`: the wakes the drawn rates
        ask for against the slices agents are expected to act in, in one full window and over
        the whole run (:func:`~friendsim.runtime.wakes.expected_wakes`). Optional: a
        listener without it (any object with the three other methods will do) is not told."""

    def wake_applied(self, tally: WindowTally) -> None:
        """Called after each wake (or vote phase) was applied; ``tally`` is the running window."""

    def window_ended(self, tally: WindowTally) -> None:
        """Called after a window closed and was scored."""


class WindowHooks:
    """Points where the run's instruments (interventions, moderation, surveys) act; no-ops
    here. The schedulers await them at fixed points of every window, so whatever they record
    lands at the same place of the log in every run with the same seed and answers:
    ``window_started`` right after ``WindowStarted``, ``before_wake`` before each continuous
    slice is observed, ``applied`` after each wake's decisions were applied and flushed,
    ``window_ending`` before ``WindowEnded``."""

    async def window_started(self, window: int) -> None:
        """Called after ``WindowStarted(window)`` was recorded and flushed."""

    async def before_wake(self, window: int, t: float) -> None:
        """Called before the agents of a continuous slice at ``t`` are observed."""

    async def applied(self, window: int) -> None:
        """Called after a wake's (or the vote phase's) decisions were applied."""

    async def window_ending(self, window: int) -> None:
        """Called before ``WindowEnded(window)`` is recorded."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedRules:
    """How feeds are served during a window: the ranker and the number of items."""

    ranker: FeedRanker
    limit: int


class Engine:
    """Shared machinery: platform, policies, per-agent contexts, coach view, feed rules.

    ``feeds`` maps a window number to the :class:`FeedRules` in force during it (a run whose
    config changes at a window, such as a fork, is described by this function, not by patching
    the engine); the schedulers call :meth:`begin_window` at the start of every window. Whether
    agents see coach tips in a window is the coach's answer (``coach.coaching(window)``), so
    coaching has one source of truth.
    """

    def __init__(
        self,
        *,
        platform: Platform,
        policies: Mapping[str, Policy],
        coach: CoachView,
        theme: str,
        n_actions: int,
        feeds: Callable[[int], FeedRules],
        listener: RunListener | None = None,
        acquaintances: Mapping[str, Sequence[str]] | None = None,
        meet: Callable[[str, Sequence[str]], Sequence[str]] | None = None,
        max_known: int = 50,
        stop: asyncio.Event | None = None,
        gate: PauseGate | None = None,
        max_failure_share: float | None = None,
        judged_until_seq: int | None = None,
        hooks: WindowHooks | None = None,
        outage: Callable[[str], ProviderStoppedError | None] | None = None,
    ) -> None:
        self.platform = platform
        self.policies: MutableMapping[str, Policy] = (
            policies if isinstance(policies, OnDemand) else dict(policies)
        )
        self.agents: tuple[str, ...] = tuple(sorted(self.policies))
        self.coach = coach
        self.theme = theme
        self.n_actions = n_actions
        self._feeds_for = feeds
        self.feeds = feeds(1)
        self.listener = listener or RunListener()
        known: Mapping[str, Sequence[str]] = acquaintances or {}
        self._max_known = max_known
        self._meet = meet
        self.contexts: MutableMapping[str, AgentContext] = OnDemand(
            self.agents,
            lambda a: AgentContext(a, max_known=max_known, acquaintances=known.get(a, ())),
        )
        """Each agent's context, made when the agent is first observed (see :mod:`.on_demand`)."""
        self._received: dict[str, deque[VoteCast | VoteChanged]] = {}
        self._items: dict[int, tuple[object, FeedItem]] = {}
        """Feed items made this window, by the id of the post view they were made from: the
        platform serves the same views to every reader of a shared ranking."""
        self.stop = stop
        self.gate = gate
        self.max_failure_share = max_failure_share
        self.judged_until_seq = judged_until_seq
        """Windows ending at or before this seq were judged by the run that recorded them
        (see :meth:`window_ended`)."""
        self.outage = outage
        """Given what a window lost, the error of a provider found unreachable (its breaker
        opened), or ``None`` when every provider answers (see :meth:`window_ended`)."""
        self.lost_actions = 0
        self.policy_errors = 0
        self._lost: set[str] = set()
        self._crashed: set[str] = set()
        self.hooks = hooks or WindowHooks()
        self._feed_override: FeedRules | None = None
        self._broadcasts: dict[str, list[InboxMessage]] = {}
        self.joined_activity: dict[str, float] = {}
        """Relative activity of agents that joined during the run."""

    # --- what instruments change (each recorded as an event by the caller) ---------------------

    def active(self, window: int) -> tuple[str, ...]:
        """The agents that may act in ``window`` (suspended and removed agents left out)."""
        if not self.platform.suspensions_any:
            return self.agents
        suspended = self.platform.suspended
        return tuple(a for a in self.agents if not suspended(a, window))

    def override_feeds(self, rules: FeedRules) -> None:
        """Serve feeds by ``rules`` from now on, whatever the run plan's phases say."""
        self._feed_override = self.feeds = rules

    def add_agent(
        self,
        agent: str,
        policy: Policy,
        *,
        acquaintances: Sequence[str] = (),
        activity: float = 1.0,
    ) -> None:
        """A new agent (population growth; registered on the platform by the caller);
        ``activity`` is its relative wake rate (continuous mode)."""
        self.add_agents([(agent, policy, activity)], acquaintances=acquaintances)

    def add_agents(
        self,
        joining: Sequence[tuple[str, Policy, float]],
        *,
        acquaintances: Sequence[str] = (),
    ) -> None:
        """New agents ``(id, policy, activity)`` at once, as :meth:`add_agent` each: the
        population is sorted once, not once per agent (a million joining at one intervention
        took hours re-sorting). Each knows of ``acquaintances`` or, when none are given and the
        engine was made with ``meet``, of ``meet(agent, population)`` (the grown population,
        sorted), as the agents present from the start know of theirs."""
        for agent, _, _ in joining:
            if agent in self.policies:
                raise ValueError(f"agent {agent!r} already takes part")
        if len({agent for agent, _, _ in joining}) != len(joining):
            raise ValueError("an agent joins twice")
        for agent, policy, _ in joining:
            self.policies[agent] = policy
        self.agents = tuple(sorted(self.policies))
        meet = self._meet if not acquaintances else None
        for agent, _, activity in joining:
            self.joined_activity[agent] = activity
            self.contexts[agent] = AgentContext(
                agent,
                max_known=self._max_known,
                acquaintances=acquaintances if meet is None else meet(agent, self.agents),
            )

    def broadcast(self, message: InboxMessage) -> None:
        """Show ``message`` to every agent in its next observation's inbox."""
        for agent in self.agents:
            self._broadcasts.setdefault(agent, []).append(message)

    async def before_window(self, window: int) -> None:
        """Wait at the pause gate (if any), then check for a stop; called before each window."""
        if self.gate is not None:
            await self.gate.wait(window, self.stop)
        self.check_stop()

    def window_ended(self, tally: WindowTally) -> None:
        """A window closed (called by the schedulers once its ``WindowEnded`` is recorded, at
        ``tally.end_seq``): tell the listener, then enforce the failure budget
        (``max_failure_share`` of the window's model-backed decisions) -- unless a run this
        one re-derives judged the window already (``end_seq <= judged_until_seq``, set by a
        resume: :attr:`~friendsim.runtime.plan.RunPlan.judged_until_seq`). Such a window
        is history: it passed, or it spent the budget and that run stopped right there (the stop
        comes after ``WindowEnded``, so the window is complete, and a resume keeps it with its
        recorded failures replayed); judging it again would stop the resume at the same place.
        Every other window is checked, a re-derived one too (a run killed between a window's
        ``WindowEnded`` and its check never judged it)."""
        self.listener.window_ended(tally)
        if self.max_failure_share is not None and not self._judged(tally):
            try:
                check_failure_budget(
                    window=tally.window,
                    asked=tally.llm_asked,
                    failed=tally.llm_failures,
                    max_share=self.max_failure_share,
                )
            except RunFailed as spent:
                down = None
                if self.outage is not None:
                    down = self.outage(
                        f"window {tally.window} lost {tally.llm_failures} of "
                        f"{tally.llm_asked} model-backed decisions to it"
                    )
                if down is not None:
                    raise provider_stop(down) from None
                raise spent

    def _judged(self, tally: WindowTally) -> bool:
        """Whether ``tally``'s window was judged by the run whose log this one re-derives."""
        until = self.judged_until_seq
        return until is not None and 0 < tally.end_seq <= until

    async def _gather_applying(
        self,
        coros: Sequence[Awaitable[T]],
        apply: Callable[[int, T], Awaitable[None]],
        *,
        held: Callable[[int, T], bool],
    ) -> list[T]:
        """Await ``coros`` concurrently and ``apply(i, answer)`` each answer in index order as
        soon as it and every answer before it have arrived (an ordered prefix), so applying
        overlaps the requests still outstanding; returns the answers in order.

        The first answer for which ``held(i, answer)`` is true (one lost to the LLM layer, which
        a resume would ask again and might answer otherwise) and every answer after it are
        applied only once all have arrived. On the first error or a stop request, the rest is
        cancelled and the error (or :class:`RunInterrupted`) raised: what was applied stays,
        an ordered prefix of what the whole wake would have applied.

        Coroutines are started :data:`_OBSERVE_BATCH` at a time with a yield to the event loop
        between batches, so the first ones send their requests while the rest start (each
        start does some work of its own before its first request: a ballot's memory update).
        Once at most :data:`_TAIL` answers are awaited, what was applied is committed in the
        background as it is applied (``flush_soon``), so the commit, and the coach's reading of
        it, overlap the last answers. Commit points never change what the log holds.

        Each task reports its own completion once (a done callback), so following them costs
        time linear in their number: ``asyncio.wait`` on every pending task at each wake-up
        hooked and unhooked all of them every time, quadratic in a slice's agents (about 50 ms
        of event-loop time in a 1,000-agent slice, while its answers waited to be read)."""
        if not coros:
            return []
        tasks: list[asyncio.Future[T]] = []
        stopping = asyncio.ensure_future(self.stop.wait()) if self.stop is not None else None
        finished: list[asyncio.Future[Any]] = []
        woken = asyncio.Event()

        def on_done(task: asyncio.Future[Any]) -> None:
            finished.append(task)
            woken.set()

        index: dict[asyncio.Future[Any], int] = {}
        n, applied, eager = len(coros), 0, True
        try:
            for c in coros:
                task = asyncio.ensure_future(c)
                index[task] = len(tasks)
                tasks.append(task)
                task.add_done_callback(on_done)
                if len(tasks) % _OBSERVE_BATCH == 0 and not asyncio.isfuture(c):
                    await asyncio.sleep(0)
            if stopping is not None:
                stopping.add_done_callback(lambda _: woken.set())
            left = n
            while left:
                if not finished:
                    await woken.wait()
                woken.clear()
                done = sorted(finished, key=index.__getitem__)
                finished.clear()
                for t in done:
                    if (exc := t.exception()) is not None:
                        raise exc
                left -= len(done)
                if left and self.stop is not None and self.stop.is_set():
                    raise RunInterrupted("stop requested")
                while eager and applied < n and tasks[applied].done():
                    answer = tasks[applied].result()
                    if held(applied, answer):
                        eager = False
                        break
                    await apply(applied, answer)
                    applied += 1
                if applied and left <= _TAIL:
                    self.platform.flush_soon()
            answers = [t.result() for t in tasks]
            for i in range(applied, n):
                await apply(i, answers[i])
            return answers
        finally:
            for c in coros[len(tasks) :]:
                if asyncio.iscoroutine(c):
                    c.close()  # never started (stopped while starting the others)
            for t in tasks:
                t.cancel()
            if stopping is not None:
                stopping.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def begin_window(self, window: int) -> None:
        """Take the feed rules in force during ``window`` (called by the schedulers)."""
        self.feeds = self._feed_override or self._feeds_for(window)
        self._items = {}

    async def window_done(self, window: int) -> Mapping[str, ScoresLike]:
        """``coach.window_done(window)`` (the window's scores, once its guidance is recorded),
        or :class:`RunInterrupted` as soon as a stop is requested while the coach is still at
        work: a slow or hanging coach model must not hold a stopped run (the coach service,
        stopped with the run, drops that window's advice; a resume asks for it again)."""
        if self.stop is None:
            return await self.coach.window_done(window)
        done = asyncio.ensure_future(self.coach.window_done(window))
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait((done, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not done.done():
                done.cancel()
            await asyncio.gather(done, stopping, return_exceptions=True)
        if done.cancelled():
            raise RunInterrupted("stop requested")
        return done.result()

    def check_stop(self) -> None:
        """Raise :class:`RunInterrupted` if a stop was requested (called at safe points)."""
        if self.stop is not None and self.stop.is_set():
            raise RunInterrupted("stop requested")

    def _note(self, outcome: Outcome, tally: WindowTally) -> None:
        tally.add(outcome)
        boxes = self._received
        for vote in outcome.received:
            box = boxes.get(vote.author)
            if box is None:
                box = boxes[vote.author] = deque(maxlen=MAX_RECEIVED_VOTES)
            box.append(vote)

    def feeds_ahead(
        self,
        agents: Sequence[str],
        *,
        since_t: float | None = None,
        until_t: float | None = None,
    ) -> FeedsAhead[list[PostView], tuple[FeedItem, ...]]:
        """The feeds of ``agents`` (who wake together, observed in this order) as feed items,
        each read before its turn and logged (``FeedServed``) at its turn: what serving them one
        after the other (:meth:`Platform.serve_feed`) gives and logs, without a round trip to
        the database per agent on the way. An agent whose policy reads fewer items than the
        feed limit (:func:`~friendsim.vocabulary.feed_capacity`) is served that many."""
        ranker, limit = self.feeds.ranker, self.feeds.limit
        platform = self.platform

        async def log(agent: str, views: list[PostView]) -> tuple[FeedItem, ...]:
            await platform.log_feed(agent, ranker, views)
            return self._feed_items(views)

        def limit_of(agent: str) -> int:
            cap = feed_capacity(self.policies[agent])
            return limit if cap is None else min(limit, cap)

        return FeedsAhead(
            agents,
            read=lambda agent: platform.rank_feed(
                agent, ranker, limit=limit_of(agent), since_t=since_t, until_t=until_t
            ),
            log=log,
            depth=1 if same_for_every_reader(ranker) else _FEEDS_AHEAD,
        )

    def _feed_items(self, views: Sequence[PostView]) -> tuple[FeedItem, ...]:
        if not same_for_every_reader(self.feeds.ranker):
            return tuple(feed_item(v) for v in views)
        items = self._items
        out = []
        for v in views:
            known = items.get(id(v))
            if known is None or known[0] is not v:
                known = items[id(v)] = (v, feed_item(v))
            out.append(known[1])
        return tuple(out)

    def inbox_of(self, agent: str, dms: Sequence[DirectMessageSent]) -> tuple[InboxMessage, ...]:
        """``dms`` (the agent's, read for all the agents that wake together in one query:
        :meth:`Platform.dms_since`, :meth:`Platform.dms_between`) then any broadcast it has not
        been shown yet."""
        got = tuple(inbox_message(m) for m in dms)
        if self._broadcasts:
            got += tuple(self._broadcasts.pop(agent, ()))
        return got

    async def observe(
        self,
        agent: str,
        *,
        window: int,
        allowed: tuple[ActionType, ...],
        feed: tuple[FeedItem, ...],
        inbox: tuple[InboxMessage, ...],
    ) -> Observation:
        """Build one observation and note what the agent saw in its context."""
        ctx = self.contexts[agent]
        ctx.saw(feed, inbox)
        coach = self.coach
        return Observation(
            agent_id=agent,
            window=window,
            now=self.platform.clock.now(),
            theme=self.theme,
            n_actions=self.n_actions,
            allowed=allowed,
            feed=feed,
            inbox=inbox,
            known_users=ctx.known_users,
            topics=ctx.topics,
            followees=tuple(sorted(await self.platform.followees(agent))),
            guidance=tuple(coach.latest_guidance(agent)) if coach.coaching(window) else (),
            last_rewards=ctx.feedback(coach.last_scores(agent)),
            best_rewards=ctx.feedback(coach.best_scores(agent)),
            last_actions=ctx.last_actions,
            received_votes=tuple(received_vote(v) for v in self._received.pop(agent, ())),
        )

    async def _decide_one(self, agent: str, obs: Observation) -> Decision:
        try:
            return await self.policies[agent].decide(obs)
        except BudgetExceededError as exc:
            raise RunInterrupted(str(exc), reason="budget") from exc
        except STOPS_THE_RUN:
            raise
        except LLMError as exc:
            log.warning("policy_llm_error", agent=agent, window=obs.window, error=repr(exc))
            self._lost.add(agent)
            return Decision(failures=(_failure("llm", exc),))
        except Exception as exc:
            log.error("policy_error", agent=agent, window=obs.window, error=repr(exc))
            self._crashed.add(agent)
            return Decision(failures=(_failure("policy", exc),))

    async def _vote_one(self, agent: str, obs: Observation, items: tuple[FeedItem, ...]) -> Ballot:
        try:
            return await self.policies[agent].vote(obs, items)
        except BudgetExceededError as exc:
            raise RunInterrupted(str(exc), reason="budget") from exc
        except STOPS_THE_RUN:
            raise
        except LLMError as exc:
            log.warning("vote_llm_error", agent=agent, window=obs.window, error=repr(exc))
            self._lost.add(agent)
            return Ballot(failures=(_failure("vote", exc),))
        except Exception as exc:
            log.error("vote_error", agent=agent, window=obs.window, error=repr(exc))
            self._crashed.add(agent)
            return Ballot(failures=(_failure("vote", exc),))

    async def observe_and_decide(
        self,
        agents: Sequence[str],
        observe: Callable[[str], Awaitable[Observation]],
        tally: WindowTally,
        *,
        before_apply: Callable[[], None] | None = None,
    ) -> dict[str, Observation]:
        """Build each agent's observation in order (``observe(agent)``) and ask its policy for
        its decision as soon as it is built, so the model calls overlap the building of the
        next ones; once all are built, call ``before_apply`` (the scheduler moves the clock)
        and apply as :meth:`decide_and_apply` does. Nothing is applied before every
        observation is built, so all of them see the same snapshot, and a decision being made
        reads only its own observation and its own policy's memory, which building other
        observations does not touch: the log is the one of building all, then deciding."""
        self._lost = set()
        self._crashed = set()
        observations: dict[str, Observation] = {}
        asked: dict[str, asyncio.Future[Decision]] = {}
        try:
            for n, agent in enumerate(agents, start=1):
                obs = observations[agent] = await observe(agent)
                asked[agent] = asyncio.ensure_future(self._decide_one(agent, obs))
                if n % _OBSERVE_BATCH == 0:
                    await asyncio.sleep(0)  # let the decisions started so far send their requests
        except BaseException:
            for task in asked.values():
                task.cancel()
            await asyncio.gather(*asked.values(), return_exceptions=True)
            raise
        self.platform.flush_soon()  # the feeds served, committed while the decisions come
        if before_apply is not None:
            before_apply()
        await self._apply_decisions(observations, tally, asked)
        return observations

    async def decide_and_apply(
        self, observations: Mapping[str, Observation], tally: WindowTally
    ) -> None:
        """Decide concurrently for every observed agent; apply sorted by agent id, each
        decision as soon as the decisions of the agents before it are applied (see
        :meth:`_gather_applying`). Safe because a decision still being made reads only its
        observation (built before the wake) and its own policy's memory, which only applying
        its own decision changes."""
        self._lost = set()
        self._crashed = set()
        await self._apply_decisions(observations, tally, {})

    async def _apply_decisions(
        self,
        observations: Mapping[str, Observation],
        tally: WindowTally,
        asked: Mapping[str, Awaitable[Decision]],
    ) -> None:
        order = sorted(observations)
        window = tally.window

        async def apply(i: int, decision: Decision) -> None:
            agent = order[i]
            obs = observations[agent]
            outcome = await apply_decision(
                self.platform,
                agent,
                decision,
                window=window,
                allowed=obs.allowed,
                n_actions=self.n_actions,
                theme=self.theme,
            )
            self._note(outcome, tally)
            tally.wakes += 1
            if decision.prompt_tokens:
                tally.prompt_tokens.append(decision.prompt_tokens)
            self.contexts[agent].acted(window, outcome.applied)
            self.policies[agent].record_outcome(window, outcome.applied)

        decisions = await self._gather_applying(
            [asked[a] if a in asked else self._decide_one(a, observations[a]) for a in order],
            apply,
            held=lambda i, d: self._is_lost(order[i], d),
        )
        self._count_lost(tally, len(order), decisions)
        self.listener.wake_applied(tally)

    async def vote_and_apply(
        self,
        observations: Mapping[str, Observation],
        offered: Mapping[str, tuple[FeedItem, ...]],
        tally: WindowTally,
    ) -> None:
        """Ask every agent with offered items for its ballot concurrently; cast sorted by agent,
        each ballot as soon as the ballots of the agents before it are cast (see
        :meth:`_gather_applying`). Safe because a ballot still being asked for reads only its
        observation and offered items (built before the phase) and its own policy's memory,
        which casting other agents' ballots does not touch."""
        order = [a for a in sorted(offered) if offered[a]]
        self._lost = set()
        self._crashed = set()
        window = tally.window

        async def apply(i: int, ballot: Ballot) -> None:
            agent = order[i]
            ids = {item.post_id for item in offered[agent]}
            outcome = await apply_ballot(self.platform, agent, ballot, window=window, offered=ids)
            self._note(outcome, tally)

        ballots = await self._gather_applying(
            [self._vote_one(a, observations[a], offered[a]) for a in order],
            apply,
            held=lambda i, b: self._is_lost(order[i], b),
        )
        self._count_lost(tally, len(order), ballots)
        self.listener.wake_applied(tally)

    def _is_lost(self, agent: str, answer: Decision | Ballot) -> bool:
        """Whether (part of) ``agent``'s answer was lost to the LLM layer, not to the model."""
        return agent in self._lost or any(f.reason == "llm_error" for f in answer.failures)

    def _count_lost(
        self, tally: WindowTally, asked: int, answers: Sequence[Decision | Ballot]
    ) -> None:
        """Count the wake's decisions lost to the LLM layer (not to the model's output), and
        those lost to a policy that raised."""
        lost = len(self._lost) + sum(
            1 for a in answers if any(f.reason == "llm_error" for f in a.failures)
        )
        tally.llm_asked += asked
        tally.llm_failures += lost
        self.lost_actions += lost
        tally.policy_errors += len(self._crashed)
        self.policy_errors += len(self._crashed)


def _failure(stage: str, exc: BaseException) -> Failure:
    return Failure(stage=stage, reason=type(exc).__name__, detail=redact_text(str(exc))[:500])
