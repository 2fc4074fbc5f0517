"""The agent-policy extension point: :data:`POLICIES` maps a name to a policy factory.

A factory is called once per agent as ``factory(context=PolicyContext, **params)``, ``params``
validated by the entry's pydantic model from ``[agents] policy_params``. Built in: ``baseline``
(the seeded non-LLM null model) and ``llm`` (plans and texts through a language model). Other
packages register policies through the ``friendsim.policies`` entry-point group (see
:mod:`friendsim.registry`); a factory that needs a model sets the attribute ``uses_llm = True``
and then receives the agent's LLM stack in ``context.llm``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from friendsim.agents.persona import Persona
from friendsim.llm.base import LLM
from friendsim.registry import Registry
from friendsim.vocabulary import Policy


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyContext:
    """What the run supplies to a policy factory for one agent.

    ``seed`` is the agent's own seed for this policy; ``stances`` maps every agent id to its
    stance score (one mapping shared by the whole population, never copied); ``llm`` is the
    agent's model (``None`` for a policy that uses none); ``llm_options`` the ``[llm]`` knobs a
    model-backed policy honours (token limits, temperature, re-asks).
    """

    persona: Persona
    seed: int
    theme: str
    n_actions: int
    stances: Mapping[str, float]
    llm: LLM | None = None
    llm_options: Mapping[str, Any] = field(default_factory=dict)


class BaselineParams(BaseModel):
    """``[agents] policy_params`` of the baseline policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    abstention: float = Field(default=0.8, ge=0, le=1)
    """Base rate of casting no vote on an item (see :mod:`friendsim.agents.baseline`)."""


def _baseline(*, context: PolicyContext, abstention: float = 0.8) -> Policy:
    from friendsim.agents.baseline import make_baseline_policy

    return make_baseline_policy(
        context.persona, seed=context.seed, stances=context.stances, theme=context.theme,
        abstention=abstention,
    )  # fmt: skip


def _llm(*, context: PolicyContext) -> Policy:
    from friendsim.agents.llm_policy import LLMPolicyConfig, make_llm_policy

    if context.llm is None:
        raise ValueError(f"the llm policy of {context.persona.id} needs a model")
    return make_llm_policy(
        context.persona,
        context.llm,
        theme=context.theme,
        n_actions=context.n_actions,
        rng_seed=context.seed,
        config=LLMPolicyConfig(**dict(context.llm_options)),
    )


_llm.uses_llm = True  # type: ignore[attr-defined]

POLICIES: Registry[Policy] = Registry("agent policy", group="friendsim.policies", protocol=Policy)
"""The agent-policy extension point (entry-point group ``friendsim.policies``)."""
POLICIES.register("baseline", _baseline, summary="seeded non-LLM null model", params=BaselineParams)
POLICIES.register("llm", _llm, summary="plans and texts through a language model")


def uses_llm(factory_or_name: str | Callable[..., Any]) -> bool:
    """Whether the policy (by name or factory) needs a model."""
    factory = (
        POLICIES.get(factory_or_name).factory
        if isinstance(factory_or_name, str)
        else factory_or_name
    )
    return bool(getattr(factory, "uses_llm", False))
