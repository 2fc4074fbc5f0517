"""The coach: a separate service that turns reward gaps into per-agent guidance events.

See :mod:`.base` (protocol, context, gap definition), :mod:`.rule` (deterministic coach),
:mod:`.llm` (LLM coach with validation and fallback), :mod:`.context` (context from events) and
:mod:`.service` (the bus subscriber that scores windows and records ``GuidanceIssued``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from friendsim._lazy import lazy_exports

if TYPE_CHECKING:
    from .base import (
        TOP_LIKED,
        Coach,
        CoachAdvice,
        CoachContext,
        FakeCoach,
        Gap,
        ReportingCoach,
        order_gaps,
    )
    from .context import ContextTracker
    from .llm import LLMCoach, check_tips
    from .rule import RuleCoach, rule_tips
    from .service import CoachService, CoachServiceError

__getattr__ = lazy_exports(
    __name__,
    {
        "TOP_LIKED": "friendsim.coach.base",
        "Coach": "friendsim.coach.base",
        "CoachAdvice": "friendsim.coach.base",
        "CoachContext": "friendsim.coach.base",
        "FakeCoach": "friendsim.coach.base",
        "Gap": "friendsim.coach.base",
        "ReportingCoach": "friendsim.coach.base",
        "order_gaps": "friendsim.coach.base",
        "ContextTracker": "friendsim.coach.context",
        "LLMCoach": "friendsim.coach.llm",
        "check_tips": "friendsim.coach.llm",
        "RuleCoach": "friendsim.coach.rule",
        "rule_tips": "friendsim.coach.rule",
        "CoachService": "friendsim.coach.service",
        "CoachServiceError": "friendsim.coach.service",
    },
)

__all__ = [
    "TOP_LIKED",
    "Coach",
    "CoachAdvice",
    "CoachContext",
    "CoachService",
    "CoachServiceError",
    "ContextTracker",
    "FakeCoach",
    "Gap",
    "LLMCoach",
    "ReportingCoach",
    "RuleCoach",
    "check_tips",
    "order_gaps",
    "rule_tips",
]
