"""The part both schedulers share: observe, decide concurrently, apply in a deterministic order.

One *wake* = a set of agents that act on the same committed snapshot (a round's planning phase,
or one slice of the continuous timeline). The engine flushes the platform, builds each agent's
observation in sorted agent order (feeds are served through ``Platform.serve_feed`` so exposure
is logged), asks every policy concurrently (``asyncio.gather``; the LLM layer's concurrency
wrapper bounds the calls in flight), then applies the decisions sorted by agent id, actions in
the policy's order. With the same seed and the same model answers the log is therefore
identical whatever order the answers arrive in.

A policy that raises is never allowed to end the run: an :class:`~friendsim.llm.errors.LLMError`
becomes ``ActionFailed(stage="llm")``, any other exception ``ActionFailed(stage="policy")``
(logged). Two errors do end it, on purpose: a replay-only cache miss
(``CacheMissError``: the replay cannot be faithful) and a provider configuration error. A spent
budget (``BudgetExceededError``) interrupts it: :class:`RunInterrupted` is raised before anything
of the unfinished phase is applied, so a resume asks the same questions again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from friendsim.llm.errors import BudgetExceededError, CacheMissError, LLMError, ProviderConfigError
from friendsim.platform.feeds.base import FeedRanker
from friendsim.runtime.apply import Outcome, apply_ballot, apply_decision
from friendsim.runtime.observe import AgentContext, CoachView, ScoresLike, feed_item, inbox_message
from friendsim.vocabulary import (
    ActionType,
    Ballot,
    Decision,
    Failure,
    FeedItem,
    InboxMessage,
    Observation,
    Policy,
    ReceivedVote,
)

if TYPE_CHECKING:
    from friendsim.platform.service import Platform
    from friendsim.runtime.control import PauseGate

log = structlog.get_logger(__name__)

MAX_RECEIVED_VOTES = 200

_FATAL = (CacheMissError, ProviderConfigError)


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
    prompt_tokens: list[int] = field(default_factory=list)
    scores: Mapping[str, ScoresLike] = field(default_factory=dict, repr=False)

    def add(self, outcome: Outcome) -> None:
        self.actions += len(outcome.applied)
        self.events += outcome.events
        self.nots += outcome.nots
        self.failures += outcome.failures
        self.votes += outcome.votes


class RunInterrupted(Exception):
    """A stop was requested (SIGTERM/Ctrl-C in the CLI); raised by the schedulers at a safe point
    (between phases or slices), never inside a platform commit. ``reason`` says why
    (``"stop"`` or ``"budget"``)."""

    def __init__(self, message: str = "stop requested", *, reason: str = "stop") -> None:
        super().__init__(message)
        self.reason = reason


class RunListener:
    """Progress hooks (no-ops here); the CLI's rich progress bar overrides them."""

    def run_started(self, *, windows: int, agents: int) -> None:
        """Called once before the first window."""

    def wake_applied(self, tally: WindowTally) -> None:
        """Called after each wake (or vote phase) was applied; ``tally`` is the running window."""

    def window_ended(self, tally: WindowTally) -> None:
        """Called after a window closed and was scored."""


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
        max_known: int = 50,
        stop: asyncio.Event | None = None,
        gate: PauseGate | None = None,
    ) -> None:
        self.platform = platform
        self.policies = dict(policies)
        self.agents: tuple[str, ...] = tuple(sorted(self.policies))
        self.coach = coach
        self.theme = theme
        self.n_actions = n_actions
        self._feeds_for = feeds
        self.feeds = feeds(1)
        self.listener = listener or RunListener()
        acquaintances = acquaintances or {}
        self.contexts: dict[str, AgentContext] = {
            a: AgentContext(a, max_known=max_known, acquaintances=acquaintances.get(a, ()))
            for a in self.agents
        }
        self._received: dict[str, deque[ReceivedVote]] = {}
        self.stop = stop
        self.gate = gate

    async def before_window(self, window: int) -> None:
        """Wait at the pause gate (if any), then check for a stop; called before each window."""
        if self.gate is not None:
            await self.gate.wait(window, self.stop)
        self.check_stop()

    def begin_window(self, window: int) -> None:
        """Take the feed rules in force during ``window`` (called by the schedulers)."""
        self.feeds = self._feeds_for(window)

    def check_stop(self) -> None:
        """Raise :class:`RunInterrupted` if a stop was requested (called at safe points)."""
        if self.stop is not None and self.stop.is_set():
            raise RunInterrupted("stop requested")

    def _note(self, outcome: Outcome, tally: WindowTally) -> None:
        tally.add(outcome)
        for author, vote in outcome.received:
            box = self._received.get(author)
            if box is None:
                box = self._received[author] = deque(maxlen=MAX_RECEIVED_VOTES)
            box.append(vote)

    async def read_feed(
        self,
        agent: str,
        *,
        limit: int | None = None,
        since_t: float | None = None,
        until_t: float | None = None,
    ) -> tuple[FeedItem, ...]:
        """Serve ``agent`` its ranked feed (logged as ``FeedServed``) as feed items."""
        views = await self.platform.serve_feed(
            agent,
            self.feeds.ranker,
            limit=self.feeds.limit if limit is None else limit,
            since_t=since_t,
            until_t=until_t,
        )
        return tuple(feed_item(v) for v in views)

    async def read_inbox(
        self, agent: str, since_t: float, until_t: float
    ) -> tuple[InboxMessage, ...]:
        """DMs addressed to ``agent`` sent in ``[since_t, until_t)``."""
        return tuple(inbox_message(m) for m in await self.platform.dms_to(agent, since_t, until_t))

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
            received_votes=tuple(self._received.pop(agent, ())),
        )

    async def _decide_one(self, agent: str, obs: Observation) -> Decision:
        try:
            return await self.policies[agent].decide(obs)
        except BudgetExceededError as exc:
            raise RunInterrupted(str(exc), reason="budget") from exc
        except _FATAL:
            raise
        except LLMError as exc:
            log.warning("policy_llm_error", agent=agent, window=obs.window, error=repr(exc))
            return Decision(failures=(_failure("llm", exc),))
        except Exception as exc:
            log.error("policy_error", agent=agent, window=obs.window, error=repr(exc))
            return Decision(failures=(_failure("policy", exc),))

    async def _vote_one(self, agent: str, obs: Observation, items: tuple[FeedItem, ...]) -> Ballot:
        try:
            return await self.policies[agent].vote(obs, items)
        except BudgetExceededError as exc:
            raise RunInterrupted(str(exc), reason="budget") from exc
        except _FATAL:
            raise
        except LLMError as exc:
            log.warning("vote_llm_error", agent=agent, window=obs.window, error=repr(exc))
            return Ballot(failures=(_failure("vote", exc),))
        except Exception as exc:
            log.error("vote_error", agent=agent, window=obs.window, error=repr(exc))
            return Ballot(failures=(_failure("vote", exc),))

    async def decide_and_apply(
        self, observations: Mapping[str, Observation], tally: WindowTally
    ) -> None:
        """Decide concurrently for every observed agent, then apply sorted by agent id."""
        order = sorted(observations)
        decisions = await asyncio.gather(*(self._decide_one(a, observations[a]) for a in order))
        window = tally.window
        for agent, decision in zip(order, decisions, strict=True):
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
        self.listener.wake_applied(tally)

    async def vote_and_apply(
        self,
        observations: Mapping[str, Observation],
        offered: Mapping[str, tuple[FeedItem, ...]],
        tally: WindowTally,
    ) -> None:
        """Ask every agent with offered items for its ballot concurrently; cast sorted by agent."""
        order = [a for a in sorted(offered) if offered[a]]
        ballots = await asyncio.gather(
            *(self._vote_one(a, observations[a], offered[a]) for a in order)
        )
        for agent, ballot in zip(order, ballots, strict=True):
            ids = {item.post_id for item in offered[agent]}
            outcome = await apply_ballot(
                self.platform, agent, ballot, window=tally.window, offered=ids
            )
            self._note(outcome, tally)
        self.listener.wake_applied(tally)


def _failure(stage: str, exc: BaseException) -> Failure:
    return Failure(stage=stage, reason=type(exc).__name__, detail=str(exc)[:500])
