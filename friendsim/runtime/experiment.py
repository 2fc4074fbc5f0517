"""Build a whole run from an :class:`ExperimentConfig` and execute it into a run directory.

The run directory holds ``events.db`` (the platform log), ``llm_cache.db`` (the LLM
record/replay cache, when an LLM is used and caching is on), ``personas.jsonl`` and
``manifest.json`` (see :mod:`.manifest`). A directory that already holds an ``events.db`` is
refused: a run never appends to another run's log.

Wiring, in order: personas (file or seeded generator) -> platform (agents registered sorted by id,
with their group attributes and dominant policy) -> one LLM stack per distinct provider spec
(shared ledger, one cache file) -> one policy per agent -> reward scorer and coach service (always
created: rewards feed back to the agents; the coach is ``None`` when coaching is off) -> engine ->
scheduler. Everything is closed in ``finally``, and the manifest is rewritten with the outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from friendsim.agents.baseline import make_baseline_policy
from friendsim.agents.generator import generate_personas
from friendsim.agents.llm_policy import LLMPolicyConfig, make_llm_policy
from friendsim.agents.persona import Persona
from friendsim.agents.persona_io import PersonaFileError, load_personas, save_personas
from friendsim.agents.policy import Policy
from friendsim.analysis.rewards import RewardScorer
from friendsim.analysis.rewards_params import RewardConfigError, RewardParams
from friendsim.llm.accounting import DEFAULT_PRICES, Ledger, PriceTable
from friendsim.llm.base import LLM
from friendsim.llm.stack import LLMStack, build_llm
from friendsim.platform.clock import VirtualClock
from friendsim.platform.feeds import make_ranker
from friendsim.platform.service import Platform
from friendsim.runtime.config import ConfigError, ExperimentConfig, resolve_auto_provider
from friendsim.runtime.continuous import ContinuousScheduler, acquaintances
from friendsim.runtime.engine import Engine, RunInterrupted, RunListener, WindowTally
from friendsim.runtime.manifest import (
    EVENTS_DB,
    LLM_CACHE_DB,
    PERSONAS,
    base_manifest,
    write_manifest,
)
from friendsim.runtime.rounds import RoundsScheduler

log = structlog.get_logger(__name__)

LLMFactory = Callable[[str], LLM]
"""Makes the provider for a resolved spec (tests inject scripted models); default: the registry."""


class RunDirError(ValueError):
    """The output directory cannot take a new run (it already holds one)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunResult:
    """A finished run: its directory, one tally per window, and the manifest written."""

    run_dir: Path
    windows: tuple[WindowTally, ...]
    manifest: Mapping[str, Any]


def agent_seed(seed: int, agent: str, purpose: str) -> int:
    """A stable 63-bit seed for ``agent``'s ``purpose`` (independent of Python's hash salt)."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{agent}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def build_personas(cfg: ExperimentConfig, *, base: Path, source: str | Path) -> list[Persona]:
    """The run's personas: ``count`` from the file (the first ``count``) or generated."""
    n = cfg.agents.count
    path = cfg.persona_path(base)
    if path is None:
        return generate_personas(n, seed=cfg.experiment.seed, theme=cfg.experiment.theme)
    if not path.is_file():
        raise ConfigError(source, "[agents].personas", f"persona file not found: {path}")
    try:
        personas = load_personas(path)
    except PersonaFileError as exc:
        raise ConfigError(source, "[agents].personas", str(exc)) from None
    if len(personas) < n:
        raise ConfigError(
            source,
            "[agents].count",
            f"asks for {n} agents but {path} holds only {len(personas)} personas",
        )
    return personas[:n]


def reward_params(cfg: ExperimentConfig, *, source: str | Path = "<config>") -> RewardParams:
    """``RewardParams`` from ``[rewards]`` with ``n_actions`` from ``[experiment]``."""
    try:
        return RewardParams(**cfg.rewards.model_dump(), n_actions=cfg.experiment.n_actions)
    except RewardConfigError as exc:
        raise ConfigError(source, "[rewards]", str(exc)) from None


def provider_specs(
    cfg: ExperimentConfig, personas: Sequence[Persona], env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Each agent's resolved provider spec (``auto`` replaced by the environment's choice)."""
    auto = resolve_auto_provider(env)
    out = {}
    for p in personas:
        spec = cfg.provider_for(p.id, p.dominant)
        out[p.id] = auto if spec == "auto" else spec
    return out


def make_ledger(cfg: ExperimentConfig) -> Ledger:
    """A ledger priced by ``[llm.prices]`` (USD per million tokens) over the built-in prices."""
    return Ledger(PriceTable({**DEFAULT_PRICES, **cfg.llm.prices}))


def _coach(cfg: ExperimentConfig, llm: LLM | None) -> Any:
    if not cfg.coach.enabled:
        return None
    if cfg.coach.kind == "llm":
        from friendsim.coach.llm import LLMCoach

        assert llm is not None
        return LLMCoach(llm)
    from friendsim.coach.rule import RuleCoach

    return RuleCoach()


async def run_experiment(
    cfg: ExperimentConfig,
    *,
    out_dir: str | Path,
    config_path: str | Path | None = None,
    listener: RunListener | None = None,
    llm_factory: LLMFactory | None = None,
    env: Mapping[str, str] | None = None,
    ledger: Ledger | None = None,
    stop: asyncio.Event | None = None,
) -> RunResult:
    """Run the experiment ``cfg`` into ``out_dir``; returns the result (see module docstring).

    ``ledger`` (optional) receives token usage and cost as the run goes (the CLI's progress bar
    reads it); by default a fresh one priced by ``[llm.prices]`` over the built-in list prices.
    ``stop`` (optional): when set, the run stops at the next safe point (between phases or
    slices), keeps everything committed, writes ``status="interrupted"`` and raises
    :class:`~friendsim.runtime.engine.RunInterrupted`.
    """
    from friendsim.coach.service import CoachService

    source = str(config_path) if config_path is not None else "<config>"
    base = Path(config_path).parent if config_path is not None else Path.cwd()
    run_dir = Path(out_dir)
    ex = cfg.experiment
    personas, manifest = await asyncio.to_thread(
        prepare_run, cfg, run_dir=run_dir, base=base, source=source, env=env
    )
    specs: dict[str, str] = manifest["models"] if cfg.agents.policy == "llm" else {}
    coach_spec: str | None = manifest["coach_model"]
    params = reward_params(cfg, source=source)
    ledger = ledger if ledger is not None else make_ledger(cfg)
    stacks: dict[str, LLMStack] = {}
    platform = await Platform.open(run_dir / EVENTS_DB, clock=VirtualClock())
    service = None
    windows: list[WindowTally] = []
    scheduler: RoundsScheduler | ContinuousScheduler | None = None
    status = "failed"
    wall0 = time.perf_counter()
    try:
        manifest["start_seq"] = platform.last_seq + 1
        for p in sorted(personas, key=lambda p: p.id):
            attrs = {"dominant": p.dominant, **p.attributes}
            await platform.register_agent(p.id, name=p.name, attributes=attrs)
        await platform.flush()

        cache_on = cfg.llm.cache != "off"
        for spec in sorted({*specs.values(), *([coach_spec] if coach_spec else [])}):
            stacks[spec] = await build_llm(
                llm_factory(spec) if llm_factory is not None else spec,
                concurrency=cfg.llm.concurrency,
                rpm=cfg.llm.rpm,
                tpm=cfg.llm.tpm,
                retries=cfg.llm.retries,
                retry_seed=ex.seed,
                cache_path=run_dir / LLM_CACHE_DB if cache_on else None,
                cache_mode=cfg.llm.cache,
                ledger=ledger,
            )
        if stacks and cache_on:
            manifest["files"]["llm_cache"] = LLM_CACHE_DB

        policies = _policies(cfg, personas, specs, stacks)
        scorer = RewardScorer(params=params, lambdas={p.id: p.lambdas for p in personas})
        coach = _coach(cfg, stacks[coach_spec] if coach_spec else None)
        service = CoachService(
            platform,
            scorer=scorer,
            coach=coach,
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
            ranker=make_ranker(cfg.feed.ranker),
            feed_limit=cfg.feed.limit,
            coaching=cfg.coach.enabled,
            listener=listener,
            stop=stop,
            acquaintances=acquaintances(agent_ids, k=10, seed=ex.seed)
            if ex.mode == "continuous"
            else None,
        )
        if ex.mode == "rounds":
            scheduler = RoundsScheduler(
                engine,
                rounds=ex.rounds,
                round_length=ex.window_length,
                vote_limit=ex.vote_limit,
                seed=ex.seed,
            )
        else:
            scheduler = ContinuousScheduler(
                engine,
                duration=ex.total_duration,
                window_length=ex.window_length,
                tick=ex.tick,
                wake_rate=ex.wake_rate,
                activity={p.id: p.activity for p in personas},
                activity_sigma=ex.activity_sigma,
                seed=ex.seed,
            )
        windows = await scheduler.run()
        status = "completed"
    except (RunInterrupted, asyncio.CancelledError, KeyboardInterrupt):
        status = "interrupted"
        raise
    finally:
        if scheduler is not None and not windows:
            windows = list(scheduler.reports)
        await _shutdown(service, stacks, platform)
        manifest.update(
            status=status,
            end_seq=platform.committed_seq,
            windows=len(windows),
            totals=_totals(windows),
            llm_usage=ledger.to_json(),
            wall_seconds=round(time.perf_counter() - wall0, 3),
        )
        await asyncio.to_thread(write_manifest, run_dir, manifest)
        log.info("run_finished", run_dir=str(run_dir), status=status, windows=len(windows))
    return RunResult(run_dir=run_dir, windows=tuple(windows), manifest=manifest)


async def _shutdown(service: Any, stacks: Mapping[str, LLMStack], platform: Platform) -> None:
    """Stop the coach, close the LLM stacks, then close (flush) the platform — each step even
    when an earlier one fails, so the database is always closed and its thread ends."""
    try:
        if service is not None:
            await service.stop()
    except Exception as exc:
        log.error("coach_service_stop_failed", error=repr(exc))
    for stack in stacks.values():
        try:
            await stack.aclose()
        except Exception as exc:
            log.error("llm_close_failed", model=stack.model, error=repr(exc))
    try:
        await platform.close()
    except Exception as exc:
        log.error("platform_close_failed", error=repr(exc))


def prepare_run(
    cfg: ExperimentConfig,
    *,
    run_dir: Path,
    base: Path,
    source: str | Path,
    env: Mapping[str, str] | None = None,
) -> tuple[list[Persona], dict[str, Any]]:
    """Blocking set-up: check the run dir, build personas, write ``personas.jsonl`` and the
    initial manifest (``status="running"``). Returns the personas and the manifest."""
    if (run_dir / EVENTS_DB).exists():
        raise RunDirError(f"{run_dir} already holds a run ({EVENTS_DB}); choose another --out")
    ex = cfg.experiment
    personas = build_personas(cfg, base=base, source=source)
    params = reward_params(cfg, source=source)
    specs = provider_specs(cfg, personas, env) if cfg.agents.policy == "llm" else {}
    coach_spec = None
    if cfg.coach.enabled and cfg.coach.kind == "llm":
        coach_spec = cfg.coach.provider or cfg.llm.provider
        coach_spec = resolve_auto_provider(env) if coach_spec == "auto" else coach_spec
    run_dir.mkdir(parents=True, exist_ok=True)
    save_personas(personas, run_dir / PERSONAS)
    manifest: dict[str, Any] = base_manifest(
        name=ex.name,
        status="running",
        mode=ex.mode,
        config=cfg.model_dump(mode="json"),
        config_file=str(source),
        seeds={"seed": ex.seed},
        policy=cfg.agents.policy,
        models={p.id: specs.get(p.id, "baseline") for p in personas},
        coach_model=coach_spec,
        lambdas={p.id: dict(p.lambdas) for p in personas},
        dominant={p.id: p.dominant for p in personas},
        rewards=params.to_dict(),
        ties=cfg.ties.model_dump(mode="json"),
        files={"events": EVENTS_DB, "llm_cache": None, "personas": PERSONAS},
        start_seq=None,
        end_seq=None,
    )
    write_manifest(run_dir, manifest)
    return personas, manifest


def _policies(
    cfg: ExperimentConfig,
    personas: Sequence[Persona],
    specs: Mapping[str, str],
    stacks: Mapping[str, LLMStack],
) -> dict[str, Policy]:
    ex = cfg.experiment
    if cfg.agents.policy == "baseline":
        stances = {p.id: p.stance_score for p in personas}
        return {
            p.id: make_baseline_policy(
                p, seed=agent_seed(ex.seed, p.id, "baseline"), stances=stances, theme=ex.theme
            )
            for p in personas
        }
    knobs: dict[str, Any] = {
        "content_max_tokens": cfg.llm.max_tokens,
        "plan_max_tokens": cfg.llm.plan_max_tokens,
        "max_retries": cfg.llm.reprompts,
    }
    if cfg.llm.temperature is not None:
        knobs["plan_temperature"] = knobs["content_temperature"] = cfg.llm.temperature
    config = LLMPolicyConfig(**knobs)
    return {
        p.id: make_llm_policy(
            p,
            stacks[specs[p.id]],
            theme=ex.theme,
            n_actions=ex.n_actions,
            rng_seed=agent_seed(ex.seed, p.id, "llm"),
            config=config,
        )
        for p in personas
    }


def _totals(windows: Sequence[WindowTally]) -> dict[str, int]:
    return {
        "wakes": sum(w.wakes for w in windows),
        "actions": sum(w.actions for w in windows),
        "events": sum(w.events for w in windows),
        "nots": sum(w.nots for w in windows),
        "failures": sum(w.failures for w in windows),
        "votes": sum(w.votes for w in windows),
    }
