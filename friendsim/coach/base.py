"""The coach extension point: what a coach sees (:class:`CoachContext`) and what it returns.

A coach turns one agent's reward gaps and social context, after a window, into 3-5 one-sentence
tips (:class:`~friendsim.vocabulary.Tip`). It never touches the platform: the
:class:`~friendsim.coach.service.CoachService` builds the context from events and records the
tips as ``GuidanceIssued`` events.

**Gap.** The paper orders components "by how far each is below its target weight". We define
the gap of component r as the weighted shortfall ``gap_r = λ_r · (1 − R_r)``: the amount of
total reward R = Σ λ_r·R_r that component r leaves on the table (raising R_r to 1 would add
exactly gap_r to R). It is 0 for components the agent does not care about (λ_r = 0) and for
saturated ones. Ties are broken by larger λ_r, then the fixed order SOC, INF, PRE, COORD, EMO.
(The alternative "target weight minus contribution share", λ_r − λ_r·R_r/R, is available as
``order_gaps(..., mode="share")``; it is scale-free, so an agent doing equally badly on every
component gets no direction from it, which is why it is not the default.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from friendsim._slots import setters
from friendsim.analysis.rewards_params import COMPONENTS
from friendsim.vocabulary import Failure, Tip

TOP_LIKED = "top-liked post"
"""The tip target meaning "the most liked recent post" (instead of a user id)."""

GapMode = Literal["shortfall", "share"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Gap:
    """One reward component of one agent: its weight λ, achieved score R and gap."""

    component: str
    weight: float
    score: float
    gap: float


_GAP_SETTERS = setters(Gap, "component", "weight", "score", "gap")


def order_gaps(
    components: Mapping[str, float], lambdas: Mapping[str, float], *, mode: GapMode = "shortfall"
) -> tuple[Gap, ...]:
    """Components ordered by gap, largest first (see the module docstring for the definition).

    Called for every agent at every window's end, so it sorts plain tuples and builds the
    :class:`Gap` values slot by slot (:mod:`friendsim._slots`): the same values, in the same
    order, as sorting ``Gap`` objects by ``(-gap, -weight, component's place)``."""
    if mode == "shortfall":
        rows = []
        for i, c in enumerate(COMPONENTS):
            w = lambdas.get(c, 0.0)
            r = components.get(c, 0.0)
            g = w * (1.0 - r)
            rows.append((-g, -w, i, c, w, r, g))
    elif mode == "share":
        weighted = [lambdas.get(c, 0.0) * components.get(c, 0.0) for c in COMPONENTS]
        total = sum(weighted)
        rows = []
        for i, c in enumerate(COMPONENTS):
            w = lambdas.get(c, 0.0)
            r = components.get(c, 0.0)
            g = w - (weighted[i] / total if total > 0 else w)
            rows.append((-g, -w, i, c, w, r, g))
    else:
        raise ValueError(f"unknown gap mode {mode!r}; use 'shortfall' or 'share'")
    rows.sort()
    set_component, set_weight, set_score, set_gap = _GAP_SETTERS
    out = []
    for _, _, _, c, w, r, g in rows:
        gap = object.__new__(Gap)
        set_component(gap, c)
        set_weight(gap, w)
        set_score(gap, r)
        set_gap(gap, g)
        out.append(gap)
    return tuple(out)


@dataclass(frozen=True, kw_only=True, slots=True)
class CoachContext:
    """Everything a coach may use for one agent after window ``window``.

    ``gaps`` is ordered by gap (largest first). ``recent_partners`` are the users the agent most
    recently exchanged DMs or comments with (most recent first); ``last_dm_senders`` who DMed it in
    the window just scored, ``unanswered_dm_senders`` those of them it has not DMed back since.
    ``topics_seen`` are topics it was shown or wrote about; ``last_topics`` its last 3 topics (most
    recent first); ``trending_topics`` the window's most posted topics; ``unseen_topics`` platform
    topics it has never been shown, each with the latest post's (id, author). ``top_liked_*``
    describe the most liked item with votes in the window that the agent did not write.
    """

    agent: str
    window: int
    lambdas: Mapping[str, float]
    gaps: tuple[Gap, ...]
    total: float = 0.0
    theme: str = ""
    agents: tuple[str, ...] = ()
    known_users: tuple[str, ...] = ()
    last_dm_senders: tuple[str, ...] = ()
    unanswered_dm_senders: tuple[str, ...] = ()
    recent_partners: tuple[str, ...] = ()
    topics_seen: tuple[str, ...] = ()
    last_topics: tuple[str, ...] = ()
    trending_topics: tuple[str, ...] = ()
    unseen_topics: tuple[tuple[str, int, str], ...] = ()
    top_liked_post_id: int | None = None
    top_liked_author: str | None = None
    top_liked_topic: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CoachAdvice:
    """Tips plus, when the coach had to fall back, the failure to record (``ActionFailed``)."""

    tips: tuple[Tip, ...]
    failure: Failure | None = None


@runtime_checkable
class Coach(Protocol):
    """Gives one agent 3-5 tips from its context.

    A plug-in coach's tips are checked before they are recorded: anything but :class:`Tip`
    objects the log can hold (their text valid Unicode: no lone surrogate, which UTF-8 cannot
    encode) is that coach's error, recorded as ``ActionFailed(stage="coach",
    reason="coach_error")``, and the rule coach's tips stand in."""

    name: str

    async def advise(self, ctx: CoachContext) -> tuple[Tip, ...]: ...


@runtime_checkable
class ReportingCoach(Coach, Protocol):
    """A coach that can fall back internally and report why (the service records it)."""

    async def advise_with_report(self, ctx: CoachContext) -> CoachAdvice: ...


class FakeCoach:
    """Returns fixed tips (or raises ``error``) and records the contexts it was given. For tests."""

    name = "fake"

    def __init__(self, tips: tuple[Tip, ...] = (), *, error: Exception | None = None) -> None:
        self.tips = tips
        self.error = error
        self.contexts: list[CoachContext] = []

    async def advise(self, ctx: CoachContext) -> tuple[Tip, ...]:
        self.contexts.append(ctx)
        if self.error is not None:
            raise self.error
        return self.tips
