"""One policy per agent, from the policy registry, made when the agent first acts.

:func:`make_policies` is what the assembly (:mod:`friendsim.runtime.assembly`) hands the engine,
and what an intervention adding agents calls for the newcomers. Each agent's seed is derived
from the run seed, its id and the policy's name (:func:`agent_seed`, the same in every process);
an LLM policy gets its agent's model (by provider spec) and the ``[llm]`` knobs, with the
prompt profile's for that spec on top.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from friendsim.agents.persona import Persona
from friendsim.agents.policies import POLICIES, PolicyContext
from friendsim.llm.base import LLM
from friendsim.runtime.config import ExperimentConfig
from friendsim.runtime.on_demand import OnDemand
from friendsim.vocabulary import Policy


def agent_seed(seed: int, agent: str, purpose: str) -> int:
    """A stable 63-bit seed for ``agent``'s ``purpose`` (independent of Python's hash salt)."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{agent}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _profile(cfg: ExperimentConfig, spec: str | None) -> dict[str, Any]:
    """The prompt-profile knobs of ``[llm] prompt_profile`` for an agent's provider spec."""
    from friendsim.agents.llm_policy import profile_knobs

    return profile_knobs(cfg.llm.prompt_profile, spec) if spec is not None else {}


def make_policies(
    cfg: ExperimentConfig,
    personas: Sequence[Persona],
    specs: Mapping[str, str],
    stacks: Mapping[str, LLM],
) -> OnDemand[Policy]:
    """One policy per agent from the policy registry; the agent's seed is derived from the run
    seed, the agent id and the policy's name. Each is made when its agent first acts
    (:class:`~friendsim.runtime.on_demand.OnDemand`), the first one at once, so that a policy
    the configuration cannot make stops the set-up."""
    ex = cfg.experiment
    name = cfg.agents.policy
    knobs: dict[str, Any] = {
        "content_max_tokens": cfg.llm.max_tokens,
        "plan_max_tokens": cfg.llm.plan_max_tokens,
        "max_retries": cfg.llm.reprompts,
    }
    if cfg.llm.temperature is not None:
        knobs["plan_temperature"] = knobs["content_temperature"] = cfg.llm.temperature
    stances = {p.id: p.stance_score for p in personas}
    by_id = {p.id: p for p in personas}

    def make(agent: str) -> Policy:
        p = by_id[agent]
        return POLICIES.create(
            name,
            cfg.agents.policy_params,
            context=PolicyContext(
                persona=p,
                seed=agent_seed(ex.seed, p.id, name),
                theme=ex.theme,
                n_actions=ex.n_actions,
                stances=stances,
                llm=stacks[specs[p.id]] if p.id in specs else None,
                llm_options={**knobs, **_profile(cfg, specs.get(p.id))},
            ),
        )

    policies = OnDemand(by_id, make)
    if personas:
        policies[personas[0].id]  # a policy that cannot be made fails the set-up, not a wake
    return policies
