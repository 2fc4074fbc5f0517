"""The parts of a phase's coach regime: its reward parameters and its coach.

The assembly (:mod:`friendsim.runtime.assembly`) makes one regime per phase of a run's plan from
these, and records the final phase's reward parameters in the manifest (``rewards``), so a
re-scoring reads the same numbers the run's coach used. A bad ``[rewards]`` table is a
:class:`~.config.ConfigError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from friendsim.analysis.rewards_params import RewardConfigError, RewardParams
from friendsim.coach.base import Coach
from friendsim.coach.kinds import COACHES
from friendsim.llm.stack import LLMStack
from friendsim.runtime.config import ConfigError, ExperimentConfig


def reward_params(cfg: ExperimentConfig, *, source: str | Path = "<config>") -> RewardParams:
    """``RewardParams`` from ``[rewards]`` with ``n_actions`` from ``[experiment]``."""
    try:
        return RewardParams(**cfg.rewards.model_dump(), n_actions=cfg.experiment.n_actions)
    except RewardConfigError as exc:
        raise ConfigError(source, "[rewards]", str(exc)) from None


def make_coach(
    cfg: ExperimentConfig, stacks: Mapping[str, LLMStack], spec: str | None
) -> Coach | None:
    """``[coach]``'s coach (``None`` when it is off), over the LLM stack of ``spec`` (the
    coach's resolved provider spec, :func:`~.llm_stacks.coach_spec`) when it asks a model."""
    if not cfg.coach.enabled:
        return None
    return COACHES.create(cfg.coach.kind, cfg.coach.params, llm=stacks[spec] if spec else None)
