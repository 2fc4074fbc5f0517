"""The coach: a separate service that turns reward gaps into per-agent guidance events.

See :mod:`.base` (protocol, context, gap definition), :mod:`.rule` (deterministic coach),
:mod:`.llm` (LLM coach with validation and fallback), :mod:`.context` (context from events) and
:mod:`.service` (the bus subscriber that scores windows and records ``GuidanceIssued``).
"""

from __future__ import annotations

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
