"""The run plan: what a run is to run, as data (:class:`RunPlan`, a sequence of :class:`Phase`).

Every way of running builds one (``friendsim run``, ``--resume``, ``--fork``, ``replay --rerun``,
every sweep replication) and hands it to :func:`~friendsim.runtime.assembly.run_plan`. The value
type lives apart from the assembly so that the modules the assembly calls on a plan (the
instruments' setup, the replays' phase helpers) import it from here, not from the assembly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from friendsim.runtime.config import ExperimentConfig


@dataclass(frozen=True, kw_only=True, slots=True)
class Phase:
    """``config`` is in force from window ``start`` on (see :class:`RunPlan`)."""

    start: int
    config: ExperimentConfig


@dataclass(frozen=True, kw_only=True, slots=True)
class RunPlan:
    """What to run, as data.

    ``phases``: the configs in force, the first from window 1. During window ``w`` the feed
    rules and whether agents see tips follow the phase in force at ``w``, and so does the
    moderation of the items posted in ``w``; the scores of window ``w`` and the guidance written
    after it follow the phase in force at ``w + 1``.
    ``recorded_until_seq``: while the log holds fewer events than this, a model request that
    misses the cache is refused (:class:`~friendsim.llm.errors.CacheMissError`): re-deriving a
    recorded prefix never calls a live model. A request that has no recorded answer but a
    recorded failure fails again there, as it failed the first time
    (:class:`~friendsim.runtime.recorded_prefix.RecordedFailures`),
    so the prefix's ``action_failed`` events are re-derived too. ``judged_until_seq``: the
    windows ending at or before this seq (``WindowEnded``'s) were judged against the failure
    budget by the run that recorded them and are not judged again
    (:meth:`~friendsim.runtime.engine.Engine.window_ended`): a run the budget stopped resumes
    past the window that stopped it. ``None``: every window is judged. ``lineage``: manifest
    keys (``fork``, ...).
    """

    phases: tuple[Phase, ...]
    recorded_until_seq: int | None = None
    judged_until_seq: int | None = None
    lineage: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.phases or self.phases[0].start != 1:
            raise ValueError("a run plan starts with a phase at window 1")
        starts = [p.start for p in self.phases]
        if starts != sorted(set(starts)):
            raise ValueError(f"run plan phases must start at increasing windows, got {starts}")

    @classmethod
    def of(cls, config: ExperimentConfig) -> RunPlan:
        """One config for the whole run."""
        return cls(phases=(Phase(start=1, config=config),))

    @property
    def first(self) -> ExperimentConfig:
        return self.phases[0].config

    @property
    def final(self) -> ExperimentConfig:
        return self.phases[-1].config

    def at(self, window: int) -> ExperimentConfig:
        """The config in force during ``window``."""
        found = self.phases[0].config
        for phase in self.phases:
            if phase.start <= window:
                found = phase.config
        return found
