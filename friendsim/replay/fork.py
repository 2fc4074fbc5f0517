"""``friendsim run CONFIG --fork RUN_DIR --at W``: a new run that shares an old run's first W windows.

Windows ``1..W`` are re-executed under the *parent's* config with the parent's LLM cache (a guard
refuses any live call until ``WindowEnded(W)`` is logged), so the new log's prefix — every event
with ``seq <=`` the seq of the parent's ``WindowEnded(W)`` — is the parent's, byte for byte
(checked at the end; a difference is a :class:`~.errors.DivergenceError`). The new config takes
over at the boundary, each part at the first moment it can act without touching the prefix: the
coach and the reward scorer from the processing of ``WindowEnded(W)`` (so with coaching switched
on, guidance for window W is issued right after the prefix and agents are coached in window W+1);
the agents' view of guidance, the feed ranker and the feed size from window W+1. More or fewer
windows follow (``rounds``/``duration``). In-memory state carries over exactly as in an
uninterrupted run. Both reward settings are scored from the first event on
(:class:`SwitchingScorer`), so the new scorer's state at the switch is the one the log implies.
in-memory state (agent memory, coach context, RNGs) carries over exactly as in an uninterrupted
run. The new manifest's ``fork`` entry records the lineage: parent run dir, parent manifest hash,
fork window, prefix last seq and the prefix's sha256.

What may change at the fork (anything else is a :class:`~.errors.ReplayInputError` naming the
key): ``[coach]``, ``[rewards]`` (the coach's scorer is rebuilt and re-fed the prefix), ``[feed]``,
``[ties]`` (analysis only), ``[experiment].name/rounds/duration`` and the ``[llm]`` limits and
cache mode. The agents, seed, theme, time structure and models must stay: the prefix must be the
parent's. Personas are the parent's.

Wiring follows :func:`friendsim.runtime.experiment.run_experiment` (its building blocks are
reused); the only difference is the switch between ``run_round``/``run_window`` calls.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from friendsim.analysis.rewards import RewardScorer
from friendsim.llm.stack import LLMStack, build_llm
from friendsim.platform.clock import VirtualClock
from friendsim.platform.feeds import make_ranker
from friendsim.platform.service import Platform
from friendsim.runtime.config import ExperimentConfig, parse_config
from friendsim.runtime.continuous import ContinuousScheduler, acquaintances
from friendsim.runtime.engine import Engine, RunListener, WindowTally
from friendsim.runtime.experiment import (
    _coach,
    _policies,
    _totals,
    make_ledger,
    prepare_run,
    reward_params,
)
from friendsim.runtime.manifest import EVENTS_DB, LLM_CACHE_DB, write_manifest
from friendsim.runtime.rounds import RoundsScheduler

from .config import config_from_manifest
from .errors import DivergenceError, ReplayInputError
from .execute import LiveCallGuard, LLMFactory, guarded_factory, manifest_sha256, new_run_dir
from .logdiff import diff_log_files
from .rerun import _summary_and_hash, inspect_run
from .rundir import MANIFEST, connect, log_hash

SWITCHABLE = {
    "experiment": {"name", "rounds", "duration"},
    "llm": {"concurrency", "rpm", "tpm", "retries", "cache", "prices"},
    "coach": None,
    "rewards": None,
    "feed": None,
    "ties": None,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class ForkReport:
    run_dir: Path
    parent: Path
    fork_window: int
    prefix_last_seq: int
    prefix_sha256: str
    events: int
    status: str
    changed: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "parent": str(self.parent),
            "fork_window": self.fork_window,
            "prefix_last_seq": self.prefix_last_seq,
            "prefix_sha256": self.prefix_sha256,
            "events": self.events,
            "status": self.status,
            "changed": self.changed,
        }


def changes(parent: ExperimentConfig, child: ExperimentConfig) -> dict[str, Any]:
    """``{"section.key": [parent value, child value]}``; raises for a key a fork cannot change."""
    a, b = parent.model_dump(mode="json"), child.model_dump(mode="json")
    out: dict[str, Any] = {}
    for section in a:
        for key in a[section]:
            if section == "agents" and key == "personas":
                continue
            if a[section][key] == b[section][key]:
                continue
            allowed = SWITCHABLE.get(section, set())
            if allowed is not None and key not in allowed:
                raise ReplayInputError(
                    f"fork: [{section}].{key} differs from the parent run ({a[section][key]!r} -> "
                    f"{b[section][key]!r}); a fork may only change "
                    "[coach], [rewards], [feed], [ties], [experiment].name/rounds/duration and "
                    "[llm] limits/cache"
                )
            out[f"{section}.{key}"] = [a[section][key], b[section][key]]
    return out


def _n_windows(cfg: ExperimentConfig) -> int:
    ex = cfg.experiment
    if ex.mode == "rounds":
        return ex.rounds
    import math

    return max(1, math.ceil(ex.total_duration / ex.window_length - 1e-9))


async def fork(
    parent_dir: str | Path,
    cfg: ExperimentConfig,
    *,
    at_window: int,
    out_dir: str | Path,
    config_path: str | Path | None = None,
    llm_factory: LLMFactory | None = None,
    listener: RunListener | None = None,
) -> ForkReport:
    """Fork ``parent_dir`` after window ``at_window`` into ``out_dir`` under ``cfg``."""
    parent, out = Path(parent_dir), Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="friendsim-fork-") as tmp:
        manifest, parent_copy, summary, _ = await asyncio.to_thread(inspect_run, parent, Path(tmp))
        if at_window not in summary.window_ends:
            raise ReplayInputError(
                f"fork: window {at_window} never ended in {parent} (committed windows: "
                f"1..{summary.last_window}); choose --at between 1 and {summary.last_window}"
            )
        prefix_seq = summary.window_ends[at_window]
        prefix_hash = await asyncio.to_thread(_hash_upto, parent_copy, prefix_seq)
        pcfg = config_from_manifest(parent, manifest)
        child_data = cfg.model_dump(mode="json")
        child_data["agents"] = pcfg.model_dump(mode="json")["agents"]
        child = parse_config(child_data, source=config_path or "<fork config>")
        changed = changes(pcfg, child)
        if _n_windows(child) <= at_window:
            raise ReplayInputError(
                f"fork: the new config has {_n_windows(child)} windows; nothing runs after "
                f"window {at_window}"
            )
        parent_hash = await asyncio.to_thread(manifest_sha256, parent)
        await asyncio.to_thread(new_run_dir, parent, out)
        guard = LiveCallGuard(
            closed=True, reason=f"fork: windows 1..{at_window} must replay the parent's answers"
        )
        guard.until = lambda: True  # set to "platform.last_seq < prefix_seq" once it is open
        result = await _run(
            pcfg,
            child,
            out,
            at_window=at_window,
            guard=guard,
            prefix_seq=prefix_seq,
            llm_factory=guarded_factory(llm_factory, guard),
            listener=listener,
            lineage={
                "parent_run_dir": await asyncio.to_thread(os.path.abspath, parent),
                "parent_manifest_sha256": parent_hash,
                "fork_window": at_window,
                "prefix_last_seq": prefix_seq,
                "prefix_sha256": prefix_hash,
                "changed": changed,
            },
        )
        diff = await asyncio.to_thread(
            diff_log_files, parent_copy, out / EVENTS_DB, to_seq=prefix_seq
        )
        if diff is not None:
            raise DivergenceError(
                f"fork of {parent} at window {at_window}: the re-executed prefix differs at {diff}",
                diff,
            )
    new_summary, _ = await asyncio.to_thread(_summary_and_hash, out / EVENTS_DB)
    return ForkReport(
        run_dir=out,
        parent=parent,
        fork_window=at_window,
        prefix_last_seq=prefix_seq,
        prefix_sha256=prefix_hash,
        events=new_summary.count,
        status=str(result.get("status")),
        changed=changed,
    )


def _hash_upto(db: Path, seq: int) -> str:
    conn = connect(db)
    try:
        return log_hash(conn, to_seq=seq)
    finally:
        conn.close()


async def _run(
    pcfg: ExperimentConfig,
    cfg: ExperimentConfig,
    run_dir: Path,
    *,
    at_window: int,
    guard: LiveCallGuard,
    prefix_seq: int,
    llm_factory: LLMFactory,
    listener: RunListener | None,
    lineage: dict[str, Any],
) -> dict[str, Any]:
    from friendsim.coach.service import CoachService

    source = run_dir / MANIFEST
    ex = pcfg.experiment
    personas, manifest = await asyncio.to_thread(
        prepare_run, cfg, run_dir=run_dir, base=run_dir, source=source
    )
    manifest["fork"] = lineage
    specs: dict[str, str] = manifest["models"] if pcfg.agents.policy == "llm" else {}
    ledger = make_ledger(cfg)
    stacks: dict[str, LLMStack] = {}
    coach_specs = {
        c.coach.provider or c.llm.provider
        for c in (pcfg, cfg)
        if c.coach.enabled and c.coach.kind == "llm"
    }
    platform = await Platform.open(run_dir / EVENTS_DB, clock=VirtualClock())
    guard.until = lambda: platform.last_seq < prefix_seq
    service = None
    windows: list[WindowTally] = []
    status = "failed"
    wall0 = time.perf_counter()
    try:
        manifest["start_seq"] = platform.last_seq + 1
        for p in sorted(personas, key=lambda p: p.id):
            await platform.register_agent(
                p.id, name=p.name, attributes={"dominant": p.dominant, **p.attributes}
            )
        await platform.flush()
        mode = "replay" if cfg.llm.cache == "replay" else "read_through"
        for spec in sorted({*specs.values(), *coach_specs}):
            stacks[spec] = await build_llm(
                llm_factory(spec),
                concurrency=cfg.llm.concurrency,
                rpm=cfg.llm.rpm,
                tpm=cfg.llm.tpm,
                retries=cfg.llm.retries,
                retry_seed=ex.seed,
                cache_path=run_dir / LLM_CACHE_DB,
                cache_mode=mode,
                ledger=ledger,
            )
        if stacks:
            manifest["files"]["llm_cache"] = LLM_CACHE_DB
        policies = _policies(pcfg, personas, specs, stacks)
        lambdas = {p.id: p.lambdas for p in personas}
        scorer = SwitchingScorer(
            RewardScorer(params=reward_params(pcfg), lambdas=lambdas),
            RewardScorer(params=reward_params(cfg), lambdas=lambdas),
        )

        def coach_of(c: ExperimentConfig) -> Any:
            spec = c.coach.provider or c.llm.provider
            return _coach(c, stacks.get(spec))

        service = CoachService(
            platform,
            scorer=scorer,  # type: ignore[arg-type]
            coach=coach_of(pcfg),
            theme=ex.theme,
            concurrency=cfg.llm.concurrency,
        )
        await service.start()
        agent_ids = sorted(p.id for p in personas)
        engine = Engine(
            platform=platform,
            policies=policies,
            coach=service,
            theme=ex.theme,
            n_actions=ex.n_actions,
            ranker=make_ranker(pcfg.feed.ranker),
            feed_limit=pcfg.feed.limit,
            coaching=pcfg.coach.enabled,
            listener=listener,
            acquaintances=acquaintances(agent_ids, k=10, seed=ex.seed)
            if ex.mode == "continuous"
            else None,
        )
        total = _n_windows(cfg)
        engine.listener.run_started(windows=total, agents=len(agent_ids))
        rounds = cont = None
        if ex.mode == "rounds":
            rounds = RoundsScheduler(
                engine,
                rounds=total,
                round_length=ex.window_length,
                vote_limit=ex.vote_limit,
                seed=ex.seed,
            )
        else:
            cont = ContinuousScheduler(
                engine,
                duration=cfg.experiment.total_duration,
                window_length=ex.window_length,
                tick=ex.tick,
                wake_rate=ex.wake_rate,
                activity={p.id: p.activity for p in personas},
                activity_sigma=ex.activity_sigma,
                seed=ex.seed,
            )
        for w in range(1, total + 1):
            if w == at_window:
                service.coach = coach_of(cfg)
                scorer.switch()
            if w == at_window + 1:
                engine.coaching = cfg.coach.enabled
                engine.ranker = make_ranker(cfg.feed.ranker)
                engine.feed_limit = cfg.feed.limit
                guard.open()
            if rounds is not None:
                windows.append(await rounds.run_round(w))
            else:
                assert cont is not None
                windows.append(await cont.run_window(w))
        status = "completed"
    finally:
        if service is not None:
            await service.stop()
        for stack in stacks.values():
            await stack.aclose()
        await platform.flush()
        manifest["end_seq"] = platform.committed_seq
        await platform.close()
        manifest.update(
            status=status,
            windows=len(windows),
            totals=_totals(windows),
            llm_usage=ledger.to_json(),
            wall_seconds=round(time.perf_counter() - wall0, 3),
        )
        if status == "completed":
            manifest["log_sha256"] = await asyncio.to_thread(
                _hash_upto, run_dir / EVENTS_DB, 10**18
            )
        await asyncio.to_thread(write_manifest, run_dir, manifest)
    return manifest


class SwitchingScorer:
    """Feeds every event to two reward scorers and answers with the active one.

    The coach service talks to it like to a :class:`RewardScorer` (``feed``, ``lambdas_of``,
    ``params``). Before :meth:`switch` the parent's scores are returned, after it the child's;
    both have seen the whole log, so the child's state at the switch is what the log implies.
    """

    def __init__(self, before: RewardScorer, after: RewardScorer) -> None:
        self.before = before
        self.after = after
        self.active = before

    def switch(self) -> None:
        self.active = self.after

    @property
    def params(self) -> Any:
        return self.active.params

    def lambdas_of(self, agent: str) -> Any:
        return self.active.lambdas_of(agent)

    def feed(self, event: Any) -> list[Any]:
        a = self.before.feed(event)
        b = self.after.feed(event)
        return b if self.active is self.after else a
