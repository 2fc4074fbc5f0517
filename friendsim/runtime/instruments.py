"""The run's research instruments at work: interventions, moderation sweeps and surveys.

:class:`Instruments` is the :class:`~friendsim.runtime.engine.WindowHooks` of a run that uses
any of them (a run without them gets the no-op hooks, so its log is unchanged):

* ``window_started(w)`` — after ``WindowStarted``: the interventions scheduled for window
  ``w`` (and, in rounds mode, those ``at`` a time inside round ``w``), in config order, each
  recorded as ``InterventionApplied`` followed by its effects; then a moderation sweep;
* ``before_wake(w, t)`` — continuous mode: the ``at`` interventions due by ``t``;
* ``applied(w)`` — after each wake's decisions: a moderation sweep (the moderator reviews the
  new items; its decisions take effect at once);
* ``window_ending(w)`` — the surveys of window ``w``: a seeded sample of the active agents is
  asked concurrently; answers recorded as ``SurveyAnswered`` sorted by agent, failures as
  ``ActionFailed(stage="survey")``, once every answer is in (a stop request or a spent budget
  meanwhile interrupts the run with nothing of the survey recorded).

It is also the :class:`~friendsim.runtime.interventions.RunOps` the interventions act through.
An effect the platform refuses (an injected item's post, a broadcast, a suspension: text UTF-8
cannot encode, say, from a plug-in intervention) or a persona change the persona model refuses
is recorded as ``ActionFailed(stage="intervention")`` with the platform error's code and message,
and the run goes on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from friendsim.agents.persona import Persona
from friendsim.agents.schema import OutputError
from friendsim.agents.survey import (
    Question,
    Respondent,
    SurveyReply,
    belief_question,
    ipip_questions,
    parse_answers,
    stance_question,
    trust_question,
)
from friendsim.llm.errors import STOPS_THE_RUN, BudgetExceededError, LLMError
from friendsim.llm.redact import redact_text
from friendsim.moderation.service import ModerationService
from friendsim.platform.errors import PlatformError
from friendsim.platform.events import (
    ActionFailed,
    AgentSuspended,
    BroadcastSent,
    FeedChanged,
    InterventionApplied,
    ItemInjected,
    PersonaChanged,
    SurveyAnswered,
    canonical_payload,
)
from friendsim.platform.feeds import make_ranker
from friendsim.platform.service import Platform
from friendsim.runtime.engine import Engine, FeedRules, WindowHooks
from friendsim.runtime.instruments_config import InterventionSpec, SurveySpec
from friendsim.runtime.interventions import INTERVENTIONS, Intervention
from friendsim.runtime.items import Item
from friendsim.runtime.status import RunInterrupted
from friendsim.vocabulary import Failure, InboxMessage, Policy, broadcast_id

log = structlog.get_logger(__name__)
_STOP_EVERY = 1000
"""Agents added by one intervention between two checks for a stop request."""
LOST_REASONS = frozenset({"llm_error", "policy_error"})
"""Survey failures that lose an answer (:attr:`Instruments.lost_answers`); an invalid answer
is the respondent's behaviour, not a loss."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Scheduled:
    """One configured intervention, built, with when it applies."""

    index: int
    spec: InterventionSpec
    intervention: Intervention


@dataclass(frozen=True, kw_only=True, slots=True)
class Injected:
    """An injected item as surveys ask about it."""

    post_id: int
    item: Item


class Instruments(WindowHooks):
    """See the module docstring. ``make_policy`` builds a newcomer's policy; ``more_personas(k)``
    returns the next ``k`` personas of the run's persona source (prefix-stable)."""

    def __init__(
        self,
        *,
        platform: Platform,
        interventions: Sequence[InterventionSpec] = (),
        moderation: ModerationService | None = None,
        surveys: Sequence[SurveySpec] = (),
        personas: Sequence[Persona] = (),
        theme: str,
        seed: int,
        mode: str,
        window_length: float,
        make_policy: Callable[[Persona], Policy] | None = None,
        more_personas: Callable[[int], Sequence[Persona]] | None = None,
    ) -> None:
        self.platform = platform
        self.engine: Engine | None = None
        self.moderation = moderation
        self.surveys = tuple(surveys)
        self.personas: dict[str, Persona] = {p.id: p for p in personas}
        self.theme = theme
        self.seed = seed
        self.mode = mode
        self.window_length = window_length
        self.make_policy = make_policy
        self.more_personas = more_personas
        self.lost_answers = 0
        """Survey answers lost to provider errors or a policy that raised (a loss: the run ends
        ``degraded``)."""
        self.scheduled = [
            Scheduled(index=i, spec=s, intervention=INTERVENTIONS.create(s.kind, s.params))
            for i, s in enumerate(interventions)
        ]
        self._done: set[int] = set()
        self._window = 0
        self.injected: list[Injected] = []

    def attach(self, engine: Engine) -> None:
        """The engine the instruments act on (built after them)."""
        self.engine = engine

    # --- hooks ------------------------------------------------------------------------------

    async def window_started(self, window: int) -> None:
        self._window = window
        t0 = (window - 1) * self.window_length
        due = [
            s
            for s in self.scheduled
            if s.index not in self._done
            and (
                s.spec.window == window
                or (
                    s.spec.at is not None
                    and self.mode == "rounds"
                    and s.spec.at < t0 + self.window_length
                )
            )
        ]
        await self._apply(due, window)
        await self._sweep(window)

    async def before_wake(self, window: int, t: float) -> None:
        due = [
            s
            for s in self.scheduled
            if s.index not in self._done and s.spec.at is not None and s.spec.at <= t
        ]
        if due:
            self.platform.clock.advance_to(t)
            await self._apply(due, window)
            await self._sweep(window)

    async def applied(self, window: int) -> None:
        await self._sweep(window)

    async def window_ending(self, window: int) -> None:
        for survey in self.surveys:
            if window in survey.windows:
                await self._survey(survey, window)

    async def aclose(self) -> None:
        if self.moderation is not None:
            await self.moderation.stop()

    # --- internals --------------------------------------------------------------------------

    async def _sweep(self, window: int) -> None:
        if self.moderation is not None:
            await self.platform.flush()
            await self.moderation.sweep()

    async def _apply(self, due: Sequence[Scheduled], window: int) -> None:
        for s in due:
            self._done.add(s.index)
            await self.platform.record(
                InterventionApplied(
                    t=self.platform.clock.now(),
                    window=window,
                    intervention=s.spec.kind,
                    name=s.spec.name or f"{s.spec.kind}-{s.index + 1}",
                    params=canonical_payload(s.spec.params),
                )
            )
            await s.intervention.apply(self, window)
        if due:
            await self.platform.flush()

    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("instruments are not attached to an engine")
        return self.engine

    async def _failed(self, reason: str, detail: str, action: Mapping[str, Any]) -> None:
        await self.platform.record(
            ActionFailed(
                t=self.platform.clock.now(),
                window=self._window,
                stage="intervention",
                reason=reason,
                detail=detail[:500],
                action=dict(action),
            )
        )

    # --- RunOps -----------------------------------------------------------------------------

    async def inject(self, items: Sequence[Item], *, by: str, agents: Sequence[str]) -> None:
        platform = self.platform
        if not agents and by not in await platform.agent_ids():
            await platform.register_agent(by, name=by, attributes={"role": "outside account"})
        for k, item in enumerate(items):
            author = agents[k % len(agents)] if agents else by
            try:
                post = await platform.create_post(author, text=item.text, topic=item.topic)
            except PlatformError as exc:
                await self._failed(exc.code, str(exc), {"item": item.id, "author": author})
                continue
            await platform.record(
                ItemInjected(
                    t=platform.clock.now(),
                    post_id=post.post_id,
                    item_id=item.id,
                    truth=item.truth,
                    source=item.source,
                )
            )
            self.injected.append(Injected(post_id=post.post_id, item=item))

    async def broadcast(self, text: str, *, sender: str) -> None:
        try:
            sent = await self.platform.record(
                BroadcastSent(
                    t=self.platform.clock.now(), window=self._window, sender=sender, text=text
                )
            )
        except PlatformError as exc:  # text the log cannot store: nobody is sent it
            await self._failed(exc.code, str(exc), {"sender": sender})
            return
        self._engine().broadcast(
            InboxMessage(dm_id=broadcast_id(sent.seq), sender=sender, text=text)
        )

    async def set_feed(self, ranker: str, params: Mapping[str, Any], limit: int | None) -> None:
        engine = self._engine()
        rules = FeedRules(
            ranker=make_ranker(ranker, params),
            limit=limit if limit is not None else engine.feeds.limit,
        )
        await self.platform.record(
            FeedChanged(
                t=self.platform.clock.now(),
                window=self._window,
                ranker=ranker,
                params=canonical_payload(params),
                limit=rules.limit,
            )
        )
        engine.override_feeds(rules)

    def _targets(self, agents: Sequence[str]) -> list[str]:
        return sorted(agents) if agents else list(self._engine().agents)

    async def amend(self, agents: Sequence[str], fields: Mapping[str, Any]) -> None:
        engine = self._engine()
        for agent in self._targets(agents):
            persona = self.personas.get(agent)
            if persona is None:
                await self._failed("unknown_agent", f"no agent {agent!r}", {"agent": agent})
                continue
            try:
                new = Persona.model_validate({**persona.model_dump(), **dict(fields)})
            except ValueError as exc:
                await self._failed("bad_persona", str(exc), {"agent": agent})
                continue
            await self.platform.record(
                PersonaChanged(
                    t=self.platform.clock.now(),
                    agent=agent,
                    window=self._window,
                    fields=canonical_payload(fields),
                )
            )
            self.personas[agent] = new
            policy = engine.policies.get(agent)
            amend = getattr(policy, "amend", None)
            if callable(amend):
                amend(new)

    async def suspend(self, agents: Sequence[str], windows: int | None, reason: str) -> None:
        for agent in sorted(agents):
            try:
                await self.platform.record(
                    AgentSuspended(
                        t=self.platform.clock.now(),
                        agent=agent,
                        from_window=self._window,
                        until_window=None if windows is None else self._window + windows - 1,
                        by="intervention",
                        reason=reason,
                    )
                )
            except PlatformError as exc:
                await self._failed(exc.code, str(exc), {"agent": agent})

    async def add_agents(self, count: int) -> None:
        if self.more_personas is None or self.make_policy is None:
            raise RuntimeError("this run cannot add agents (no persona source)")
        engine = self._engine()
        joining: list[tuple[str, Policy, float]] = []
        for i, p in enumerate(sorted(self.more_personas(count), key=lambda p: p.id)):
            if i % _STOP_EVERY == 0:
                engine.check_stop()  # a large intervention must not hold a stopped run
            await self.platform.register_agent(
                p.id, name=p.name, attributes={"dominant": p.dominant, **p.attributes}
            )
            await self.platform.record(
                PersonaChanged(
                    t=self.platform.clock.now(),
                    agent=p.id,
                    window=self._window,
                    fields=canonical_payload({"lambdas": dict(p.lambdas)}),
                )
            )
            self.personas[p.id] = p
            joining.append((p.id, self.make_policy(p), p.activity))
        engine.add_agents(joining)

    # --- surveys ----------------------------------------------------------------------------

    async def _survey(self, survey: SurveySpec, window: int) -> None:
        engine = self._engine()
        await self.platform.flush()
        active = list(engine.active(window))
        k = max(1, round(survey.sample * len(active)))
        if k < len(active):
            rng = random.Random(f"{self.seed}:survey:{survey.name}:{window}")
            active = sorted(rng.sample(active, k))
        seen = await self._exposed([i.post_id for i in self.injected])
        asks = {a: self._questions(survey, a, seen) for a in active}
        replies = await self._replies(
            [self._ask(engine.policies[a], survey, window, asks[a]) for a in active]
        )
        now = self.platform.clock.now()
        for agent, reply in zip(active, replies, strict=True):
            if reply.answers is not None:
                await self.platform.record(
                    SurveyAnswered(
                        t=now,
                        actor=agent,
                        survey=survey.name,
                        window=window,
                        answers=dict(sorted(reply.answers.items())),
                    )
                )
            else:
                f = reply.failure
                await self.platform.record(
                    ActionFailed(
                        t=now,
                        actor=agent,
                        window=window,
                        stage="survey",
                        reason=f.reason if f else "no_answer",
                        detail=f.detail if f else "",
                        attempts=f.attempts if f else 1,
                        action={"survey": survey.name, "window": window},
                    )
                )
                if f is not None and f.reason in LOST_REASONS:
                    self.lost_answers += 1
        await self.platform.flush()

    async def _replies(self, asks: Sequence[Awaitable[SurveyReply]]) -> list[SurveyReply]:
        """The replies to ``asks``, asked concurrently, in order. On the first error, or a stop
        request, the others are cancelled and it (or :class:`RunInterrupted`) is raised: nothing
        of the survey is recorded yet, so a resume asks it again."""
        stop = self._engine().stop
        tasks = [asyncio.ensure_future(a) for a in asks]
        gathered = asyncio.gather(*tasks)
        stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
        try:
            if stopping is not None:
                either: set[asyncio.Future[Any]] = {gathered, stopping}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if not gathered.done():
                    raise RunInterrupted("stop requested")
            return await gathered
        finally:
            for t in tasks:
                t.cancel()
            if stopping is not None:
                stopping.cancel()
            await asyncio.gather(gathered, *tasks, return_exceptions=True)

    async def _exposed(self, post_ids: Sequence[int]) -> set[tuple[str, int]]:
        if not post_ids:
            return set()
        marks = ",".join("?" * len(post_ids))
        rows = await self.platform.db.execute_fetchall(
            f"SELECT DISTINCT agent, post_id FROM exposures WHERE post_id IN ({marks})",
            tuple(post_ids),
        )
        return {(r[0], int(r[1])) for r in rows}

    def _questions(
        self, survey: SurveySpec, agent: str, seen: set[tuple[str, int]]
    ) -> tuple[Question, ...]:
        out: list[Question] = []
        for kind in survey.questions:
            if kind == "stance":
                out.append(stance_question(self.theme))
            elif kind == "trust":
                sources = sorted({i.item.source for i in self.injected if i.item.source})
                out.extend(trust_question(s) for s in sources)
            elif kind == "belief":
                for inj in self.injected:
                    was = (agent, inj.post_id) in seen
                    label = self.platform.label_of(inj.post_id) if was else None
                    out.append(belief_question(inj.item.id, inj.item.text, seen=was, label=label))
            elif kind == "ipip":
                out.extend(ipip_questions())
        return tuple(out)

    async def _ask(
        self, policy: Policy, survey: SurveySpec, window: int, questions: tuple[Question, ...]
    ) -> SurveyReply:
        """``policy``'s reply, held to the questions asked: an answer that is not one integer on
        its scale for each question (and nothing else) is that agent's failure, named, as a
        model's invalid answer is; an exception it raised, or a reply that is not a
        :class:`SurveyReply`, is a failure ``policy_error`` (a lost answer). A spent budget
        interrupts the run, as it does in a wake."""
        if not isinstance(policy, Respondent):
            return SurveyReply(
                failure=Failure(
                    stage="survey", reason="no_respondent", detail="policy has no answer()"
                )
            )
        try:
            reply = await policy.answer(survey=survey.name, window=window, questions=questions)
        except BudgetExceededError as exc:
            raise RunInterrupted(str(exc), reason="budget") from exc
        except STOPS_THE_RUN:
            raise
        except LLMError as exc:
            return _failed_reply("llm_error", f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            log.error("survey_policy_error", survey=survey.name, window=window, error=repr(exc))
            return _failed_reply("policy_error", f"the policy raised {type(exc).__name__}: {exc}")
        if not isinstance(reply, SurveyReply):
            return _failed_reply(
                "policy_error", f"the policy answered {type(reply).__name__}, not a SurveyReply"
            )
        if reply.answers is None:
            return reply
        try:
            return SurveyReply(answers=parse_answers({"answers": reply.answers}, questions))
        except OutputError as err:
            return _failed_reply(err.reason, err.detail)


def _failed_reply(reason: str, detail: str) -> SurveyReply:
    return SurveyReply(
        failure=Failure(stage="survey", reason=reason, detail=redact_text(detail)[:500])
    )


def instruments_used(cfg: Any) -> bool:
    """Whether a config uses any research instrument (else the run gets no-op hooks)."""
    return bool(cfg.interventions or cfg.surveys or cfg.moderation.enabled)
