"""The simulation runtime: config files, the rounds and continuous schedulers, run directories.

``run_experiment(load_config(path), out_dir=...)`` is the whole pipeline; ``friendsim run`` is
its command line (:mod:`friendsim.commands.run`). Modules: :mod:`.config` (TOML + pydantic validation),
:mod:`.engine` (observe / decide concurrently / apply in order), :mod:`.rounds` (the paper's
protocol), :mod:`.continuous` (timeline mode), :mod:`.apply` (actions -> platform commands),
:mod:`.observe` (observations), :mod:`.plan` (``RunPlan``: what a run runs, as data),
:mod:`.assembly` (the one place a run is built: ``RunPlan`` -> parts -> run) with the parts it
wires: :mod:`.personas_build`, :mod:`.llm_stacks` (provider specs, the ledger, the one builder of
LLM stacks), :mod:`.recorded_prefix`, :mod:`.policies_build`, :mod:`.coach_parts`,
:mod:`.usage_checkpoint`, :mod:`.closing`; :mod:`.progress`, :mod:`.scripted_mind` (an instant
valid-answer fake model for tests/benches).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from friendsim._lazy import lazy_exports

if TYPE_CHECKING:
    from friendsim.runtime.assembly import RunResult, run_experiment, run_plan
    from friendsim.runtime.config import ConfigError, ExperimentConfig, load_config, parse_config
    from friendsim.runtime.continuous import ContinuousScheduler
    from friendsim.runtime.engine import Engine, RunListener, WindowTally
    from friendsim.runtime.plan import Phase, RunPlan
    from friendsim.runtime.rounds import RoundsScheduler

__getattr__ = lazy_exports(
    __name__,
    {
        "Phase": "friendsim.runtime.plan",
        "RunPlan": "friendsim.runtime.plan",
        "RunResult": "friendsim.runtime.assembly",
        "run_experiment": "friendsim.runtime.assembly",
        "run_plan": "friendsim.runtime.assembly",
        "ConfigError": "friendsim.runtime.config",
        "ExperimentConfig": "friendsim.runtime.config",
        "load_config": "friendsim.runtime.config",
        "parse_config": "friendsim.runtime.config",
        "ContinuousScheduler": "friendsim.runtime.continuous",
        "Engine": "friendsim.runtime.engine",
        "RunListener": "friendsim.runtime.engine",
        "WindowTally": "friendsim.runtime.engine",
        "RoundsScheduler": "friendsim.runtime.rounds",
    },
)

__all__ = [
    "ConfigError",
    "ContinuousScheduler",
    "Engine",
    "ExperimentConfig",
    "Phase",
    "RoundsScheduler",
    "RunListener",
    "RunPlan",
    "RunResult",
    "WindowTally",
    "load_config",
    "parse_config",
    "run_experiment",
    "run_plan",
]
