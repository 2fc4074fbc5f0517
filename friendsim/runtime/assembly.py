"""One assembly: a run plan becomes the parts of a run, and the run is executed.

Every way of running goes through :func:`run_plan`: ``friendsim run``, ``--resume``,
``--fork``, ``replay --rerun`` and every sweep replication. What differs between them is data, a
:class:`RunPlan`: the config in force from window 1, optionally a later config in force from a
window on (a fork), the log prefix that must be re-derived from recorded model answers only (a
resume, a fork) and lineage facts for the manifest. Nothing is patched after it is built.

Wiring, in order: take the run lock and check the directory -> personas (file or seeded generator)
-> manifest (``status="running"``) -> platform (agents registered sorted by id, with their group
attributes and dominant policy) -> one LLM stack per distinct provider spec (shared ledger, one
cache file) -> one policy per agent -> a reward scorer and coach per phase, in one coach service
-> the instruments (a moderator per phase, in one moderation service) -> engine -> scheduler.
Everything is closed in ``finally``, and the manifest is rewritten with the outcome.

Config values and where they act: the first phase's config fixes the population, the seed, the
theme, the time structure and the policies (a fork may not change them); the last phase's config
fixes the number of windows, the ``[llm]`` limits and cache mode, the interventions and surveys,
and is the config the manifest records; coaching, rewards, the feed and moderation follow the
phase in force. ``[llm] concurrency`` is the most requests in flight per provider spec, agents
and an LLM coach of that spec together; the coach service runs at most that many coach calls at
once. Under ``[llm] cache = "replay"`` (a re-run) no request goes below the cache, so the hosted
providers are not built, only their names (:mod:`friendsim.llm.replay_only`): such a run needs
no key and no network. A resume or a fork builds them: it asks past its recorded prefix.

This module wires; the parts are made by their own modules: the personas
(:mod:`.personas_build`), the provider specs, ledger and LLM stacks (:mod:`.llm_stacks`), the
layers re-deriving a recorded prefix (:mod:`.recorded_prefix`), the policies
(:mod:`.policies_build`), the reward parameters and coaches (:mod:`.coach_parts`), the
instruments (:mod:`.instruments_setup`), the usage checkpoint (:mod:`.usage_checkpoint`) and the
close (:mod:`.closing`). What a run leaves in its directory when refused is
:mod:`friendsim.rundir.footprint`'s. The engine, the coach service and the scheduler are
constructed here and nowhere else; LLM stacks only by :func:`~.llm_stacks.open_llm_stack`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from friendsim._carry import to_the_end
from friendsim._heap import paced_collection
from friendsim.agents import policies as agent_policies
from friendsim.agents.persona import Persona
from friendsim.agents.persona_io import save_personas
from friendsim.analysis.rewards import RewardScorer
from friendsim.coach.service import CoachRegime, CoachService
from friendsim.llm.accounting import Ledger
from friendsim.llm.base import LLM
from friendsim.llm.batch import BatchJournal
from friendsim.llm.budget import Budget, BudgetedLLM
from friendsim.llm.endpoints import Endpoint
from friendsim.llm.errors import ProviderConfigError, ProviderStoppedError
from friendsim.llm.replay_only import replay_only_provider
from friendsim.llm.stack import LLMStack
from friendsim.platform.clock import VirtualClock
from friendsim.platform.feeds import make_ranker
from friendsim.platform.service import Platform
from friendsim.registry import RegistryError
from friendsim.rundir.errors import RunOccupiedError
from friendsim.rundir.footprint import (
    check_new_run_dir,
    discard_if_untouched,
    entries,
    remove_new_files,
    windows_began,
)
from friendsim.rundir.layout import EVENTS_DB, LLM_BATCHES_DB, LLM_CACHE_DB, PERSONAS, RunLayout
from friendsim.rundir.lock import RunLock
from friendsim.rundir.manifest import Manifest, RunFiles, new_manifest, write_manifest
from friendsim.runtime.closing import losses, shutdown, write_outcome
from friendsim.runtime.coach_parts import make_coach, reward_params
from friendsim.runtime.config import (
    ExperimentConfig,
    check_run_population,
    load_fleet,
    machine_memory,
    uses_fleet,
)
from friendsim.runtime.continuous import ACQUAINTANCES, ContinuousScheduler, acquaintances_of
from friendsim.runtime.control import RunControl
from friendsim.runtime.engine import Engine, FeedRules, RunListener, WindowTally
from friendsim.runtime.instruments import Instruments
from friendsim.runtime.instruments_setup import (
    check_growth,
    check_named_agents,
    inline_plan_items,
    moderation_spec,
    open_instruments,
)
from friendsim.runtime.llm_stacks import (
    coach_spec,
    make_ledger,
    open_llm_stack,
    outage_check,
    provider_specs,
)
from friendsim.runtime.on_demand import OnDemand
from friendsim.runtime.personas_build import build_personas, with_count
from friendsim.runtime.plan import RunPlan
from friendsim.runtime.policies_build import make_policies
from friendsim.runtime.recorded_prefix import RecordedFailures, RecordedOnly
from friendsim.runtime.rounds import RoundsScheduler
from friendsim.runtime.status import RunStopped, StopKind, finished_status, provider_stop
from friendsim.runtime.usage_checkpoint import USAGE_CHECKPOINT_S, UsageCheckpoint
from friendsim.vocabulary import Policy

log = structlog.get_logger(__name__)

LLMFactory = Callable[[str], LLM]
"""Makes the provider for a resolved spec (tests inject scripted models); default: the registry."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunResult:
    """A finished run: its directory, one tally per window, and the manifest written."""

    run_dir: Path
    windows: tuple[WindowTally, ...]
    manifest: Manifest


def prepare_run(
    plan: RunPlan,
    *,
    run_dir: Path,
    base: Path,
    source: str | Path,
    env: Mapping[str, str] | None = None,
) -> tuple[list[Persona], Manifest]:
    """Blocking set-up (the caller holds the run lock): check the run dir, check that the
    population fits this machine's memory (:func:`~.config.check_run_population`), build
    personas, write ``personas.jsonl`` and the initial manifest (``status="running"``)."""
    layout = RunLayout.of(run_dir)
    if layout.root.exists() and not layout.root.is_dir():
        raise RunOccupiedError(f"{run_dir} is a file, not a directory; choose another --out")
    if layout.events.exists():
        raise RunOccupiedError(f"{run_dir} already holds a run ({EVENTS_DB}); choose another --out")
    cfg, first = plan.final, plan.first
    ex = first.experiment
    check_run_population(cfg, source=source, memory=machine_memory())
    personas = build_personas(first, base=base, source=source)
    check_named_agents(
        plan,
        personas,
        more_personas=lambda n: build_personas(with_count(first, n), base=base, source=source),
        source=source,
    )
    if first.persona_path(base) is not None:
        check_growth(
            plan,
            personas,
            more_personas=lambda n: build_personas(with_count(first, n), base=base, source=source),
            source=source,
        )
    params = reward_params(cfg, source=source)
    specs = (
        provider_specs(first, personas, env) if agent_policies.uses_llm(first.agents.policy) else {}
    )
    layout.root.mkdir(parents=True, exist_ok=True)
    save_personas(personas, layout.personas)
    manifest = new_manifest(
        name=cfg.experiment.name,
        status="running",
        mode=ex.mode,
        config=cfg.model_dump(mode="json"),
        config_file=str(source),
        seeds={"seed": ex.seed},
        policy=first.agents.policy,
        models={p.id: specs.get(p.id, first.agents.policy) for p in personas},
        coach_model=coach_spec(cfg, env),
        moderation_model=moderation_spec(cfg, env),
        lambdas={p.id: dict(p.lambdas) for p in personas},
        dominant={p.id: p.dominant for p in personas},
        rewards=params.to_dict(),
        ties=cfg.ties.model_dump(mode="json"),
        files=RunFiles(events=EVENTS_DB, llm_cache=None, personas=PERSONAS),
        **dict(plan.lineage),
    )
    write_manifest(run_dir, manifest)
    return personas, manifest


async def run_plan(
    plan: RunPlan,
    *,
    out_dir: str | Path,
    config_path: str | Path | None = None,
    listener: RunListener | None = None,
    llm_factory: LLMFactory | None = None,
    env: Mapping[str, str] | None = None,
    ledger: Ledger | None = None,
    stop: asyncio.Event | None = None,
    budget: Budget | None = None,
    control: RunControl | None = None,
    new_run: bool = False,
) -> RunResult:
    """Run ``plan`` into ``out_dir`` (see the module docstring).

    ``new_run``: ``out_dir`` must not hold files a new run writes (:func:`run_experiment`),
    checked once its lock is held (a second run racing into it is refused as a second writer).

    The run lock of ``out_dir`` is held from before the directory is checked until the final
    manifest is written; a second writer fails at once (:class:`~friendsim.rundir.RunLockedError`).
    ``ledger`` (optional) receives token usage and cost as the run goes (the CLI's progress bar
    reads it); by default a fresh one priced by ``[llm.prices]`` over the built-in list prices.
    ``stop`` (optional): when set, the model calls in flight are cancelled, nothing of the
    unfinished wake is applied, everything committed is kept, the manifest says
    ``status="interrupted"`` and :class:`~friendsim.runtime.status.RunInterrupted` is raised.
    Every early stop raises a :class:`~friendsim.runtime.status.RunStopped` after the manifest
    records ``status``, ``stop_reason`` and ``stop_detail``; a run that ran every window ends
    ``completed``, or ``degraded`` when model-backed decisions were lost
    (:mod:`friendsim.runtime.status`).
    ``budget`` (optional, over ``ledger``): by default one of ``[llm].budget_usd`` when set; the
    run stops as interrupted (``stop_reason="budget"``) before its spending could exceed it.
    Agents' requests are budgeted; an LLM coach's are counted, never refused.
    ``control`` (optional, a live view's): its gate is awaited before each window (pause,
    resume, step; nothing is recorded while it holds) and its ``on_open`` with the open platform.
    """
    run_dir = Path(out_dir)
    created = not await asyncio.to_thread(run_dir.exists)
    lock = await asyncio.to_thread(RunLock(run_dir).acquire)
    occupied = refused = False
    before: frozenset[str] = frozenset()
    try:
        if new_run:
            await asyncio.to_thread(check_new_run_dir, run_dir)
        before = await asyncio.to_thread(entries, run_dir)
        with paced_collection():
            return await _run_locked(
                plan,
                run_dir=run_dir,
                config_path=config_path,
                listener=listener,
                llm_factory=llm_factory,
                env=env,
                ledger=ledger,
                stop=stop,
                budget=budget,
                control=control,
            )
    except RunOccupiedError:
        occupied = True  # another run's directory: leave it as it was, lock file included
        raise
    except (ProviderConfigError, RegistryError):
        if not await asyncio.to_thread(windows_began, run_dir):
            refused = True
            await asyncio.to_thread(remove_new_files, run_dir, before)
        raise
    finally:
        if created:  # while still locked, so no other writer can be in the directory
            discard_if_untouched(run_dir)
        lock.release(restore=occupied or refused)


async def _run_locked(
    plan: RunPlan,
    *,
    run_dir: Path,
    config_path: str | Path | None,
    listener: RunListener | None,
    llm_factory: LLMFactory | None,
    env: Mapping[str, str] | None,
    ledger: Ledger | None,
    stop: asyncio.Event | None,
    budget: Budget | None = None,
    control: RunControl | None = None,
) -> RunResult:
    source = str(config_path) if config_path is not None else "<config>"
    base = Path(config_path).parent if config_path is not None else Path.cwd()
    plan = inline_plan_items(plan, base=base, source=source)
    first, cfg = plan.first, plan.final
    ex = first.experiment
    personas, manifest = await asyncio.to_thread(
        prepare_run, plan, run_dir=run_dir, base=base, source=source, env=env
    )
    layout = RunLayout.of(run_dir)
    specs: dict[str, str] = (
        dict(manifest.models) if agent_policies.uses_llm(first.agents.policy) else {}
    )
    coach_specs = _coach_specs(plan, env)
    ledger = ledger if ledger is not None else make_ledger(cfg)
    if budget is None and cfg.llm.budget_usd is not None:
        budget = Budget(cfg.llm.budget_usd, ledger)
    stop_reason: StopKind | None = None
    stop_detail: str | None = None
    engine: Engine | None = None
    journal: BatchJournal | None = None
    stacks: dict[str, LLMStack] = {}
    platform = await Platform.open(layout.events, clock=VirtualClock())
    service: CoachService | None = None
    instruments: Instruments | None = None
    windows: list[WindowTally] = []
    scheduler: RoundsScheduler | ContinuousScheduler | None = None
    status = "failed"
    wall0 = time.perf_counter()
    checkpoint = UsageCheckpoint(run_dir, manifest, ledger, USAGE_CHECKPOINT_S, started=wall0)
    try:
        manifest.start_seq = platform.last_seq + 1
        checkpoint.start()
        await _register_agents(platform, personas)
        if control is not None and control.on_open is not None:
            await control.on_open(platform)

        cache_path = layout.llm_cache if cfg.llm.cache != "off" else None
        fleet = load_fleet(cfg, base=base, source=source)
        if cfg.llm.batch and ex.mode == "rounds" and (specs or coach_specs):
            journal = BatchJournal(layout.llm_batches)
        await _open_stacks(
            stacks,
            sorted({*specs.values(), *coach_specs}),
            plan,
            platform=platform,
            llm_factory=llm_factory,
            fleet=fleet,
            cache_path=cache_path,
            ledger=ledger,
            journal=journal,
        )
        _record_files(manifest, stacks=stacks, cache_path=cache_path, journal=journal)

        agent_llms: Mapping[str, LLM] = (
            stacks if budget is None else {k: BudgetedLLM(v, budget) for k, v in stacks.items()}
        )
        policies = make_policies(first, personas, specs, agent_llms)
        service = CoachService(
            platform,
            regimes=_regimes(plan, personas, stacks, source=source, env=env),
            theme=ex.theme,
            concurrency=cfg.llm.concurrency,
        )
        await service.start()
        feeds = _feeds(plan)
        instruments = await open_instruments(
            plan,
            platform=platform,
            personas=personas,
            stacks=stacks,
            env=env,
            make_policies=lambda ps: make_policies(
                first,
                ps,
                provider_specs(first, ps, env)
                if agent_policies.uses_llm(first.agents.policy)
                else {},
                agent_llms,
            ),
            build_personas=lambda n: build_personas(with_count(first, n), base=base, source=source),
        )
        engine = _engine(
            plan,
            platform=platform,
            policies=policies,
            service=service,
            feeds=feeds,
            personas=personas,
            specs=specs,
            stacks=stacks,
            instruments=instruments,
            listener=listener,
            stop=stop,
            control=control,
        )
        if instruments is not None:
            instruments.attach(engine)
        scheduler = _scheduler(engine, plan, personas)
        windows = await scheduler.run()
        status = finished_status(losses(engine, service, instruments))
    except RunStopped as exc:
        status, stop_reason, stop_detail = exc.status, exc.reason, exc.message
        raise
    except ProviderStoppedError as exc:
        stopped = provider_stop(exc)
        status, stop_reason, stop_detail = stopped.status, stopped.reason, stopped.message
        raise stopped from None
    except (asyncio.CancelledError, KeyboardInterrupt):
        status, stop_reason, stop_detail = "interrupted", "stop", "stopped at once"
        raise
    except Exception as exc:
        stop_reason, stop_detail = "error", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if scheduler is not None and not windows:
            windows = list(scheduler.reports)

        async def close() -> None:
            await checkpoint.close()
            if instruments is not None:
                await instruments.aclose()
            await shutdown(
                service, stacks, platform, abandon=status not in ("completed", "degraded")
            )
            if journal is not None:
                journal.close()
            await write_outcome(
                run_dir,
                manifest,
                status=status,
                platform=platform,
                windows=windows,
                engine=engine,
                service=service,
                instruments=instruments,
                ledger=ledger,
                started=wall0,
                stop_reason=stop_reason,
                stop_detail=stop_detail,
                budget=budget,
            )
            log.info("run_finished", run_dir=str(run_dir), status=status, windows=len(windows))

        await to_the_end(close())
    return RunResult(run_dir=run_dir, windows=tuple(windows), manifest=manifest)


def _coach_specs(plan: RunPlan, env: Mapping[str, str] | None) -> set[str]:
    """The resolved provider specs of every phase's LLM coach and LLM moderator."""
    return {
        s
        for p in plan.phases
        for s in (coach_spec(p.config, env), moderation_spec(p.config, env))
        if s is not None
    }


async def _register_agents(platform: Platform, personas: Sequence[Persona]) -> None:
    """Register the agents, sorted by id, with their group attributes and dominant policy."""
    for p in sorted(personas, key=lambda p: p.id):
        attrs = {"dominant": p.dominant, **p.attributes}
        await platform.register_agent(p.id, name=p.name, attributes=attrs)
    await platform.flush()


async def _open_stacks(
    stacks: dict[str, LLMStack],
    specs: Sequence[str],
    plan: RunPlan,
    *,
    platform: Platform,
    llm_factory: LLMFactory | None,
    fleet: tuple[Endpoint, ...],
    cache_path: Path | None,
    ledger: Ledger,
    journal: BatchJournal | None,
) -> None:
    """One LLM stack per provider spec of ``specs``, put into ``stacks`` as each opens (so the
    run's close closes those opened before one fails). The provider is ``llm_factory``'s, or
    the registry's: only its name under ``[llm] cache = "replay"``, the fleet's endpoints for a
    spec the fleet serves. Inside a recorded prefix the stack answers from the record only
    (:mod:`.recorded_prefix`)."""
    cfg = plan.final
    for spec in specs:
        provider: LLM | str = llm_factory(spec) if llm_factory is not None else spec
        if isinstance(provider, str) and cfg.llm.cache == "replay":
            provider = replay_only_provider(provider) or provider
        if isinstance(provider, str) and fleet and uses_fleet(provider):
            from friendsim.llm.registry import create_llm

            provider = create_llm(provider, endpoints=fleet, **cfg.llm.provider_options(provider))
        if plan.recorded_until_seq is not None:
            if isinstance(provider, str):
                from friendsim.llm.registry import create_llm

                provider = create_llm(provider, **cfg.llm.provider_options(provider))
            provider = RecordedOnly(provider, platform, plan.recorded_until_seq)
        stack = await open_llm_stack(
            provider, cfg, cache_path=cache_path, ledger=ledger, batch_journal=journal
        )
        if plan.recorded_until_seq is not None and stack.cache is not None:
            top = RecordedFailures(stack.llm, stack.cache.cache, platform, plan.recorded_until_seq)
            stack = replace(stack, llm=top)
        stacks[spec] = stack


def _record_files(
    manifest: Manifest,
    *,
    stacks: Mapping[str, LLMStack],
    cache_path: Path | None,
    journal: BatchJournal | None,
) -> None:
    """Name in the manifest the model cache and the batch journal, when the run keeps them."""
    if stacks and cache_path is not None:
        manifest.files = RunFiles(events=EVENTS_DB, llm_cache=LLM_CACHE_DB, personas=PERSONAS)
    if journal is not None:
        manifest.files = manifest.files.model_copy(update={"llm_batches": LLM_BATCHES_DB})


def _regimes(
    plan: RunPlan,
    personas: Sequence[Persona],
    stacks: Mapping[str, LLMStack],
    *,
    source: str | Path,
    env: Mapping[str, str] | None,
) -> list[CoachRegime]:
    """One coach regime per phase: its reward scorer and its coach."""
    lambdas = {p.id: p.lambdas for p in personas}
    return [
        CoachRegime(
            start=phase.start,
            scorer=RewardScorer(params=reward_params(phase.config, source=source), lambdas=lambdas),
            coach=make_coach(phase.config, stacks, coach_spec(phase.config, env)),
        )
        for phase in plan.phases
    ]


def _feeds(plan: RunPlan) -> Callable[[int], FeedRules]:
    """The feed rules in force at a window: the ranker and limit of the phase in force."""
    rankers = {
        phase.start: FeedRules(
            ranker=make_ranker(phase.config.feed.ranker, phase.config.feed.params),
            limit=phase.config.feed.limit,
        )
        for phase in plan.phases
    }

    def feeds(window: int) -> FeedRules:
        return rankers[max(s for s in rankers if s <= window)]

    return feeds


def _engine(
    plan: RunPlan,
    *,
    platform: Platform,
    policies: OnDemand[Policy],
    service: CoachService,
    feeds: Callable[[int], FeedRules],
    personas: Sequence[Persona],
    specs: Mapping[str, str],
    stacks: Mapping[str, LLMStack],
    instruments: Instruments | None,
    listener: RunListener | None,
    stop: asyncio.Event | None,
    control: RunControl | None,
) -> Engine:
    """The engine: the failure budget judged where agents ask models, the outage check over
    the agents' stacks, and (continuous mode) each agent's acquaintances."""
    cfg, ex = plan.final, plan.first.experiment
    agent_ids = sorted(p.id for p in personas)
    return Engine(
        platform=platform,
        policies=policies,
        coach=service,
        theme=ex.theme,
        n_actions=ex.n_actions,
        feeds=feeds,
        listener=listener,
        stop=stop,
        gate=control.gate if control is not None else None,
        max_failure_share=cfg.llm.max_failure_share if specs else None,
        judged_until_seq=plan.judged_until_seq,
        hooks=instruments,
        outage=outage_check([stacks[s] for s in sorted(set(specs.values()))]),
        acquaintances=OnDemand(
            agent_ids, lambda a: acquaintances_of(a, agent_ids, k=ACQUAINTANCES, seed=ex.seed)
        )
        if ex.mode == "continuous"
        else None,
        meet=(lambda a, population: acquaintances_of(a, population, k=ACQUAINTANCES, seed=ex.seed))
        if ex.mode == "continuous"
        else None,
    )


def _scheduler(
    engine: Engine, plan: RunPlan, personas: Sequence[Persona]
) -> RoundsScheduler | ContinuousScheduler:
    """The scheduler of the run's mode: the number of windows is the final phase's."""
    cfg, ex = plan.final, plan.first.experiment
    if ex.mode == "rounds":
        return RoundsScheduler(
            engine,
            rounds=cfg.experiment.rounds,
            round_length=ex.window_length,
            vote_limit=ex.vote_limit,
            seed=ex.seed,
        )
    return ContinuousScheduler(
        engine,
        duration=cfg.experiment.total_duration,
        window_length=ex.window_length,
        tick=ex.tick,
        wake_rate=ex.wake_rate,
        activity={p.id: p.activity for p in personas},
        activity_sigma=ex.activity_sigma,
        seed=ex.seed,
    )


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
    budget: Budget | None = None,
    control: RunControl | None = None,
) -> RunResult:
    """Run one config for the whole run: :func:`run_plan` with ``RunPlan.of(cfg)``, into a new
    directory, an empty one, or one holding none of the files a run writes: a folder holding
    its own ``personas.jsonl`` or ``manifest.json`` is refused (:class:`RunOccupiedError`),
    not written over."""
    return await run_plan(
        RunPlan.of(cfg),
        out_dir=out_dir,
        config_path=config_path,
        listener=listener,
        llm_factory=llm_factory,
        env=env,
        ledger=ledger,
        stop=stop,
        budget=budget,
        control=control,
        new_run=True,
    )
