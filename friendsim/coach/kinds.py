"""The coach extension point: :data:`COACHES` maps ``[coach] kind`` to a coach factory.

A factory is called as ``factory(llm=LLM | None, **params)`` with ``params`` from
``[coach] params``. Built in: ``rule`` (deterministic, no model) and ``llm`` (tips written by a
language model, validated, re-asked, with the rule coach as fallback). Other packages register
coaches through the ``friendsim.coaches`` entry-point group; a factory that needs a model sets
``uses_llm = True`` and receives the coach's LLM stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from friendsim.coach.base import Coach
from friendsim.llm.base import LLM
from friendsim.registry import Registry


def _rule(*, llm: LLM | None = None) -> Coach:
    from friendsim.coach.rule import RuleCoach

    return RuleCoach()


def _llm(*, llm: LLM | None = None) -> Coach:
    from friendsim.coach.llm import LLMCoach

    if llm is None:
        raise ValueError("the llm coach needs a model")
    return LLMCoach(llm)


_llm.uses_llm = True  # type: ignore[attr-defined]

COACHES: Registry[Coach] = Registry("coach", group="friendsim.coaches", protocol=Coach)
"""The coach extension point (entry-point group ``friendsim.coaches``)."""
COACHES.register("rule", _rule, summary="deterministic tips from reward gaps")
COACHES.register("llm", _llm, summary="tips written by a language model")


def uses_llm(factory_or_name: str | Callable[..., Any]) -> bool:
    """Whether the coach (by name or factory) needs a model."""
    factory = (
        COACHES.get(factory_or_name).factory
        if isinstance(factory_or_name, str)
        else factory_or_name
    )
    return bool(getattr(factory, "uses_llm", False))
