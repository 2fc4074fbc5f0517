"""The moderator registry: :data:`MODERATORS` maps ``[moderation] kind`` to a factory.

A factory is called as ``factory(llm=LLM | None, **params)`` with ``params`` from
``[moderation] params``; one that needs a model sets ``uses_llm = True``. Other packages add
moderators through the ``friendsim.moderators`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from friendsim.llm.base import LLM
from friendsim.registry import Registry

from .base import Moderator


class RuleParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    toxicity: float = Field(default=0.6, gt=0, le=1)
    sentiment: str = "vader"
    keywords: tuple[str, ...] = ()
    toxic_action: Literal["remove", "label", "downrank", "shadowban", "none"] = "remove"
    false_action: Literal["remove", "label", "downrank", "none"] = "label"
    label_text: str = Field(
        default="Independent fact-checkers rated this claim false.", min_length=1
    )
    strikes_to_suspend: int = Field(default=0, ge=0)
    suspend_windows: int = Field(default=2, ge=1)
    strikes_to_shadowban: int = Field(default=0, ge=0)


class LLMParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reprompts: int = Field(default=2, ge=0, le=10)
    max_tokens: int = Field(default=120, ge=16, le=4096)


def _rule(*, llm: LLM | None = None, **params: Any) -> Moderator:
    from .rule import RuleModerator

    return RuleModerator(**params)


def _llm(*, llm: LLM | None = None, **params: Any) -> Moderator:
    from .llm import LLMModerator

    if llm is None:
        raise ValueError("the llm moderator needs a model")
    return LLMModerator(llm, **params)


_llm.uses_llm = True  # type: ignore[attr-defined]

MODERATORS: Registry[Moderator] = Registry(
    "moderator", group="friendsim.moderators", protocol=Moderator
)
"""The moderator extension point (entry-point group ``friendsim.moderators``)."""
MODERATORS.register("rule", _rule, params=RuleParams, summary="toxicity, keywords, fact-checks")
MODERATORS.register("llm", _llm, params=LLMParams, summary="a language model's verdicts")


def uses_llm(name: str) -> bool:
    """Whether moderator ``name`` needs a model."""
    factory: Callable[..., Any] = MODERATORS.get(name).factory
    return bool(getattr(factory, "uses_llm", False))
