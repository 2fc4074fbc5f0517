"""One assembly: a run plan becomes the parts of a run, and the run is executed.

Every way of running goes through :func:`run_plan`: ``friendsim run``, ``--resume``,
``--fork``, ``replay --rerun`` and every sweep replication. What differs between them is data, a
:class:`RunPlan`: the config in force from window 1, optionally a later config in force from a
window on (a fork), the log prefix that must be re-derived from recorded model answers only (a
resume, a fork) and lineage facts for the manifest. Nothing is patched after it is built.

Wiring, in order: take the run lock and check the directory -> personas (file or seeded generator;
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
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import structlog

from friendsim._carry import carried
from friendsim._heap import paced_collection
from friendsim.agents import policies as agent_policies
from friendsim.agents.persona import Persona
from friendsim.agents.persona_io import PersonaFileError, load_personas, save_personas
from friendsim.agents.policies import POLICIES, PolicyContext
from friendsim.agents.sources import PERSONA_SOURCES
from friendsim.analysis.rewards import RewardScorer
from friendsim.analysis.rewards_params import RewardConfigError, RewardParams
from friendsim.coach import kinds as coach_kinds
from friendsim.coach.base import Coach
from friendsim.coach.kinds import COACHES
from friendsim.coach.service import CoachRegime, CoachService
from friendsim.llm.accounting import DEFAULT_PRICES, Ledger, PriceTable
from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.llm.batch import BATCHES_DB, BatchJournal, PollPolicy
from friendsim.llm.budget import Budget, BudgetedLLM
from friendsim.llm.cache import LLMCache
from friendsim.llm.errors import CacheMissError, ProviderConfigError, ProviderStoppedError
from friendsim.llm.redact import redact_text
from friendsim.llm.replay_only import replay_only_provider
from friendsim.llm.stack import LLMStack, build_llm
from friendsim.platform.clock import VirtualClock
from friendsim.platform.events import unicode_problem
from friendsim.platform.feeds import make_ranker
from friendsim.platform.service import Platform
from friendsim.registry import RegistryError
from friendsim.rundir.errors import RunOccupiedError
from friendsim.rundir.layout import EVENTS_DB, LLM_CACHE_DB, LOCK, MANIFEST, PERSONAS, RunLayout
from friendsim.rundir.lock import RunLock
from friendsim.rundir.log import connect, log_hash
from friendsim.rundir.manifest import Manifest, RunFiles, new_manifest, write_manifest
from friendsim.runtime.config import (
    ConfigError,
    ExperimentConfig,
    check_run_population,
    load_fleet,
    machine_memory,
    resolve_auto_provider,
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
from friendsim.runtime.on_demand import OnDemand
from friendsim.runtime.plan import RunPlan
from friendsim.runtime.rounds import RoundsScheduler
from friendsim.runtime.status import RunStopped, StopKind, finished_status, provider_stop
from friendsim.vocabulary import Policy

T = TypeVar("T")

log = structlog.get_logger(__name__)

LLMFactory = Callable[[str], LLM]
"""Makes the provider for a resolved spec (tests inject scripted models); default: the registry."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunResult:
    """A finished run: its directory, one tally per window, and the manifest written."""

    run_dir: Path
    windows: tuple[WindowTally, ...]
    manifest: Manifest


def agent_seed(seed: int, agent: str, purpose: str) -> int:
    """A stable 63-bit seed for ``agent``'s ``purpose`` (independent of Python's hash salt)."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{agent}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def build_personas(cfg: ExperimentConfig, *, base: Path, source: str | Path) -> list[Persona]:
    """The run's personas: the first ``count`` of the persona source or file.

    What a persona source plug-in hands out is checked here, before anything is written: too
    few, not :class:`Persona` objects, ids twice, or text UTF-8 cannot encode (a lone
    surrogate in a persona built without validation, ``model_construct``/``model_copy``) is
    a :class:`ConfigError` naming the source (and the persona's field)."""
    n = cfg.agents.count
    path = cfg.persona_path(base)
    if path is None:
        made = list(
            PERSONA_SOURCES.create(
                cfg.agents.personas,
                cfg.agents.persona_params,
                count=n,
                seed=cfg.experiment.seed,
                theme=cfg.experiment.theme,
            )
        )
        name = cfg.agents.personas
        if len(made) < n:
            raise ConfigError(
                source,
                "[agents].personas",
                f"persona source {name!r} made {len(made)} personas, {n} asked",
            )
        made = made[:n]
        if bad := next((p for p in made if not isinstance(p, Persona)), None):
            raise ConfigError(
                source,
                "[agents].personas",
                f"persona source {name!r} made a {type(bad).__name__}, not a Persona",
            )
        ids = [p.id for p in made]
        if len(set(ids)) != len(ids):
            twice = sorted(i for i, k in Counter(ids).items() if k > 1)[:5]
            raise ConfigError(
                source,
                "[agents].personas",
                f"persona source {name!r} made personas with the same id: {', '.join(twice)}",
            )
        for i, persona in enumerate(made):  # a persona built without validation can hold any
            problem = unicode_problem(persona.__dict__, f"personas[{i}]")
            if problem is not None:
                raise ConfigError(
                    source,
                    "[agents].personas",
                    f"persona source {name!r} made a persona the log cannot hold: {problem}",
                )
        return made
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


def _with_count(cfg: ExperimentConfig, n: int) -> ExperimentConfig:
    """``cfg`` with ``[agents].count = n`` (a grown population's personas)."""
    return cfg.model_copy(update={"agents": cfg.agents.model_copy(update={"count": n})})


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


def coach_spec(cfg: ExperimentConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The resolved provider spec of the LLM coach (``None`` without one)."""
    if not (cfg.coach.enabled and coach_kinds.uses_llm(cfg.coach.kind)):
        return None
    spec = cfg.coach.provider or cfg.llm.provider
    return resolve_auto_provider(env) if spec == "auto" else spec


def make_ledger(cfg: ExperimentConfig) -> Ledger:
    """A ledger priced by ``[llm.prices]`` (USD per million tokens) over the built-in prices."""
    return Ledger(PriceTable({**DEFAULT_PRICES, **cfg.llm.prices}))


async def open_llm_stack(
    spec: str | LLM,
    cfg: ExperimentConfig,
    *,
    cache_path: Path | None,
    ledger: Ledger,
    batch_journal: BatchJournal | None = None,
) -> LLMStack:
    """The LLM stack for ``spec`` with the limits, retries and cache mode of ``cfg``'s ``[llm]``
    (and batch mode when a ``batch_journal`` is given).

    The one place that builds LLM stacks: runs use it through :func:`run_plan`; jobs beside a
    run (text-based tie scoring, the persona planner) call it directly.
    """
    cache_on = cfg.llm.cache != "off" and cache_path is not None
    return await build_llm(
        spec,
        breaker_threshold=cfg.llm.breaker_failures,
        concurrency=cfg.llm.concurrency,
        rpm=cfg.llm.rpm,
        tpm=cfg.llm.tpm,
        retries=cfg.llm.retries,
        retry_seed=cfg.experiment.seed,
        cache_path=cache_path if cache_on else None,
        cache_mode=cfg.llm.cache if cache_on else "off",
        ledger=ledger,
        batch_journal=batch_journal,
        batch_poll=PollPolicy(first=cfg.llm.batch_poll_s, most=60 * cfg.llm.batch_poll_s),
        **(cfg.llm.provider_options(spec) if isinstance(spec, str) else {}),
    )


def _outage(stacks: Sequence[LLMStack]) -> Callable[[str], ProviderStoppedError | None]:
    """The engine's ``outage`` check over the agents' ``stacks``: every provider whose latest
    calls failed after retries is unreachable (its breaker opens); their errors as one."""

    def outage(lost: str) -> ProviderStoppedError | None:
        down = [e for st in stacks if st.breaker is not None and (e := st.breaker.outage(lost))]
        if len(down) <= 1:
            return down[0] if down else None
        return ProviderStoppedError("; ".join(map(str, down)), fatal=False, cause=down[0].cause)

    return outage


class _RecordedOnly:
    """A provider that refuses requests while the log is still inside a recorded prefix."""

    def __init__(self, inner: LLM, platform: Platform, until_seq: int) -> None:
        self.inner = inner
        self.platform = platform
        self.until_seq = until_seq

    @property
    def model(self) -> str:
        return self.inner.model

    def check(self, request: LLMRequest) -> None:
        """Refuse ``request`` inside the recorded prefix (batch mode calls this before it
        submits a batch to the provider below)."""
        if self.platform.last_seq < self.until_seq:
            last = request.messages[-1].content if request.messages else request.system
            raise CacheMissError(
                request.cache_key(self.model),
                request.label,
                f"re-deriving the recorded log up to seq {self.until_seq} must use recorded "
                f"answers only: {last[:60]}",
            )

    async def complete(self, request: LLMRequest) -> Completion:
        self.check(request)
        return await self.inner.complete(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _RecordedFailures:
    """The top of a stack re-deriving a recorded prefix: while the log holds fewer than
    ``until_seq`` events, a request with no recorded answer in ``cache`` but a recorded failure
    (:class:`~friendsim.llm.cache.RecordedFailure`) raises that failure again, of the same class
    and with the same message, so the policy, coach or instrument that asked records the same
    ``action_failed``. It is raised above every layer of the stack: not sent, not retried, not
    counted by the circuit breaker (which must not open on failures the first run survived) nor
    by the ledger (the first run counted it; no call is made). Every other request goes on down
    the stack (:class:`_RecordedOnly` at its bottom refuses the ones that miss the cache)."""

    def __init__(self, inner: LLM, cache: LLMCache, platform: Platform, until_seq: int) -> None:
        self.inner = inner
        self.cache = cache
        self.platform = platform
        self.until_seq = until_seq

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: LLMRequest) -> Completion:
        if self.platform.last_seq < self.until_seq:
            key = request.cache_key(self.model)
            failure = self.cache.failure(key)
            if failure is not None and not self.cache.has(key):
                raise failure.to_error()
        return await self.inner.complete(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _make_coach(
    cfg: ExperimentConfig, stacks: Mapping[str, LLMStack], spec: str | None
) -> Coach | None:
    if not cfg.coach.enabled:
        return None
    return COACHES.create(cfg.coach.kind, cfg.coach.params, llm=stacks[spec] if spec else None)


def _profile(cfg: ExperimentConfig, spec: str | None) -> dict[str, Any]:
    """The prompt-profile knobs of ``[llm] prompt_profile`` for an agent's provider spec."""
    from friendsim.agents.llm_policy import profile_knobs

    return profile_knobs(cfg.llm.prompt_profile, spec) if spec is not None else {}


def _policies(
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
        more_personas=lambda n: build_personas(_with_count(first, n), base=base, source=source),
        source=source,
    )
    if first.persona_path(base) is not None:
        check_growth(
            plan,
            personas,
            more_personas=lambda n: build_personas(_with_count(first, n), base=base, source=source),
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
            await asyncio.to_thread(_check_new_run_dir, run_dir)
        before = await asyncio.to_thread(_names, run_dir)
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
        if not await asyncio.to_thread(_windows_began, run_dir):
            refused = True
            await asyncio.to_thread(_remove_new_files, run_dir, before)
        raise
    finally:
        if created:  # while still locked, so no other writer can be in the directory
            _discard_if_untouched(run_dir)
        lock.release(restore=occupied or refused)


def _names(run_dir: Path) -> frozenset[str]:
    return frozenset(os.listdir(run_dir)) if run_dir.is_dir() else frozenset()


def _windows_began(run_dir: Path) -> bool:
    """Whether the log in ``run_dir`` holds a ``window_started`` (``True`` when it cannot be
    read: then nothing is removed)."""
    path = run_dir / EVENTS_DB
    if not path.is_file():
        return False
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT 1 FROM events WHERE kind = 'window_started' LIMIT 1"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return True
    return row is not None


def _remove_new_files(run_dir: Path, before: frozenset[str]) -> None:
    """A run refused before its first window (a provider without its key, a plug-in that is
    not installed: bad input, exit 2) leaves nothing behind: the files it wrote (the personas,
    the manifest, the log of its agents' registrations) go, so the same command works once the
    input is fixed; what was in the directory before stays (a resume's or a fork's copies of
    the personas and answers: their own refusal removes the folder they made)."""
    for name in sorted(_names(run_dir) - before):
        path = run_dir / name
        try:
            if path.is_file() or path.is_symlink():
                path.unlink()
        except OSError:
            pass


def _check_new_run_dir(run_dir: Path) -> None:
    """Refuse a directory that holds files a new run would write over (see :func:`run_experiment`;
    a file and a run's directory are named by :func:`prepare_run`). A ``llm_cache.db`` placed
    there is an input (a run replaying recorded answers), not a clash."""
    if not run_dir.is_dir() or (run_dir / EVENTS_DB).exists():
        return
    clash = sorted(n for n in (PERSONAS, MANIFEST) if (run_dir / n).exists())
    if clash:
        raise RunOccupiedError(
            f"{run_dir} holds {', '.join(clash)} but no run ({EVENTS_DB}); a new run would "
            "write over them; choose another --out"
        )


def _discard_if_untouched(run_dir: Path) -> None:
    """Remove a run directory this call created when nothing but its lock file was written
    (bad input found before the run began): bad input leaves nothing behind."""
    try:
        names = {p.name for p in run_dir.iterdir()}
        if names <= {LOCK}:
            (run_dir / LOCK).unlink(missing_ok=True)
            run_dir.rmdir()
    except OSError:
        pass


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
    coach_specs = {
        s
        for p in plan.phases
        for s in (coach_spec(p.config, env), moderation_spec(p.config, env))
        if s is not None
    }
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
    instruments = None
    windows: list[WindowTally] = []
    scheduler: RoundsScheduler | ContinuousScheduler | None = None
    status = "failed"
    wall0 = time.perf_counter()
    checkpoint = _UsageCheckpoint(run_dir, manifest, ledger, USAGE_CHECKPOINT_S, started=wall0)
    try:
        manifest.start_seq = platform.last_seq + 1
        checkpoint.start()
        for p in sorted(personas, key=lambda p: p.id):
            attrs = {"dominant": p.dominant, **p.attributes}
            await platform.register_agent(p.id, name=p.name, attributes=attrs)
        await platform.flush()
        if control is not None and control.on_open is not None:
            await control.on_open(platform)

        cache_path = layout.llm_cache if cfg.llm.cache != "off" else None
        fleet = load_fleet(cfg, base=base, source=source)
        if cfg.llm.batch and ex.mode == "rounds" and (specs or coach_specs):
            journal = BatchJournal(run_dir / BATCHES_DB)
        for spec in sorted({*specs.values(), *coach_specs}):
            provider: LLM | str = llm_factory(spec) if llm_factory is not None else spec
            if isinstance(provider, str) and cfg.llm.cache == "replay":
                provider = replay_only_provider(provider) or provider
            if isinstance(provider, str) and fleet and uses_fleet(provider):
                from friendsim.llm.registry import create_llm

                provider = create_llm(
                    provider, endpoints=fleet, **cfg.llm.provider_options(provider)
                )
            if plan.recorded_until_seq is not None:
                if isinstance(provider, str):
                    from friendsim.llm.registry import create_llm

                    provider = create_llm(provider, **cfg.llm.provider_options(provider))
                provider = _RecordedOnly(provider, platform, plan.recorded_until_seq)
            stack = await open_llm_stack(
                provider, cfg, cache_path=cache_path, ledger=ledger, batch_journal=journal
            )
            if plan.recorded_until_seq is not None and stack.cache is not None:
                top = _RecordedFailures(
                    stack.llm, stack.cache.cache, platform, plan.recorded_until_seq
                )
                stack = replace(stack, llm=top)
            stacks[spec] = stack
        if stacks and cache_path is not None:
            manifest.files = RunFiles(events=EVENTS_DB, llm_cache=LLM_CACHE_DB, personas=PERSONAS)
        if journal is not None:
            manifest.files = manifest.files.model_copy(update={"llm_batches": BATCHES_DB})

        agent_llms: Mapping[str, LLM] = (
            stacks if budget is None else {k: BudgetedLLM(v, budget) for k, v in stacks.items()}
        )
        policies = _policies(first, personas, specs, agent_llms)
        lambdas = {p.id: p.lambdas for p in personas}
        regimes = [
            CoachRegime(
                start=phase.start,
                scorer=RewardScorer(
                    params=reward_params(phase.config, source=source), lambdas=lambdas
                ),
                coach=_make_coach(phase.config, stacks, coach_spec(phase.config, env)),
            )
            for phase in plan.phases
        ]
        service = CoachService(
            platform, regimes=regimes, theme=ex.theme, concurrency=cfg.llm.concurrency
        )
        await service.start()

        rankers = {
            phase.start: FeedRules(
                ranker=make_ranker(phase.config.feed.ranker, phase.config.feed.params),
                limit=phase.config.feed.limit,
            )
            for phase in plan.phases
        }

        def feeds(window: int) -> FeedRules:
            return rankers[max(s for s in rankers if s <= window)]

        instruments = await open_instruments(
            plan,
            platform=platform,
            personas=personas,
            stacks=stacks,
            env=env,
            make_policies=lambda ps: _policies(
                first,
                ps,
                provider_specs(first, ps, env)
                if agent_policies.uses_llm(first.agents.policy)
                else {},
                agent_llms,
            ),
            build_personas=lambda n: build_personas(
                _with_count(first, n), base=base, source=source
            ),
        )
        agent_ids = sorted(p.id for p in personas)
        engine = Engine(
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
            outage=_outage([stacks[s] for s in sorted(set(specs.values()))]),
            acquaintances=OnDemand(
                agent_ids, lambda a: acquaintances_of(a, agent_ids, k=ACQUAINTANCES, seed=ex.seed)
            )
            if ex.mode == "continuous"
            else None,
            meet=(
                lambda a, population: acquaintances_of(a, population, k=ACQUAINTANCES, seed=ex.seed)
            )
            if ex.mode == "continuous"
            else None,
        )
        if instruments is not None:
            instruments.attach(engine)
        if ex.mode == "rounds":
            scheduler = RoundsScheduler(
                engine,
                rounds=cfg.experiment.rounds,
                round_length=ex.window_length,
                vote_limit=ex.vote_limit,
                seed=ex.seed,
            )
        else:
            scheduler = ContinuousScheduler(
                engine,
                duration=cfg.experiment.total_duration,
                window_length=ex.window_length,
                tick=ex.tick,
                wake_rate=ex.wake_rate,
                activity={p.id: p.activity for p in personas},
                activity_sigma=ex.activity_sigma,
                seed=ex.seed,
            )
        windows = await scheduler.run()
        status = finished_status(_losses(engine, service, instruments))
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
            await _shutdown(
                service, stacks, platform, abandon=status not in ("completed", "degraded")
            )
            if journal is not None:
                journal.close()
            manifest.status = status  # type: ignore[assignment]
            manifest.end_seq = platform.committed_seq
            manifest.windows = len(windows)
            manifest.totals = _totals(windows)
            if engine is not None:
                manifest.totals.update(_losses(engine, service, instruments))
            manifest.llm_usage = ledger.to_json()
            manifest.wall_seconds = round(time.perf_counter() - wall0, 3)
            manifest.stop_reason = stop_reason
            manifest.stop_detail = None if stop_detail is None else redact_text(stop_detail)[:1000]
            manifest.budget = None if budget is None else budget.status().to_json()
            if status in ("completed", "degraded"):
                manifest.log_sha256 = platform.log_sha256 or await asyncio.to_thread(
                    _log_sha256, layout.events
                )
            await asyncio.to_thread(write_manifest, run_dir, manifest)
            log.info("run_finished", run_dir=str(run_dir), status=status, windows=len(windows))

        await to_the_end(close())
    return RunResult(run_dir=run_dir, windows=tuple(windows), manifest=manifest)


async def to_the_end(closing: Awaitable[T]) -> T:
    """Await ``closing`` (the run's close: the database, the clients, the final manifest; a
    resume's swap into place) to its end even when this task is cancelled meanwhile (a second
    Ctrl-C or SIGTERM arriving while a stopped run closes): an interrupted close would leave the
    manifest saying ``running`` and the database's thread alive, holding the process open. The
    cancellation is then consumed: the run's own outcome (its status, or the exception being
    raised) is what the caller sees, since the close it asked to cut short has already ended."""
    task = asyncio.ensure_future(closing)
    cancelled = await carried(task)
    current = asyncio.current_task()
    if current is not None:
        for _ in range(cancelled):
            current.uncancel()
    return task.result()


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread(fn, *args, **kwargs)`` that a cancellation does not outrun: a second
    Ctrl-C or SIGTERM arriving while ``fn`` copies or removes files (a resume's or fork's
    set-up) cancels the await, not the thread, and the caller's clean-up would then remove a
    folder the thread goes on filling. The cancellation is honoured once ``fn`` has ended
    (its result or error dropped), so whatever handles it sees the files as ``fn`` left them."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    cancelled = await carried(work)
    if not cancelled:
        return work.result()
    work.exception()  # retrieved: the cancellation is what the caller sees
    current = asyncio.current_task()
    if current is not None:
        for _ in range(cancelled - 1):
            current.uncancel()
    raise asyncio.CancelledError


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


USAGE_CHECKPOINT_S = 1.0
"""How often a running run writes its LLM usage so far into its manifest (seconds)."""
USAGE_CHECKPOINT_DUTY = 50
"""The usage checkpoint waits at least this many times as long as its last write took: the
manifest of 100,000 agents (16 MB) takes about half a second to write, so a write every second
would keep half a core busy, in a thread that competes with the run's event loop."""


class _UsageCheckpoint:
    """Writes the ledger into the manifest (``status="running"``) every ``interval`` seconds while
    the run goes (or ``duty`` times as long as the last write took, if that is longer: a large
    population's manifest is slow to write), with the wall time since ``started`` (the run's
    start), so the manifest of a run killed with SIGKILL still holds what it spent, and how long
    it ran, up to a moment before it died, and a resume sums it in (the answers themselves are in the
    record/replay cache and are not paid again). :meth:`close` stops it before the final
    manifest is written; a write already in progress finishes first (one lock), never after."""

    def __init__(
        self,
        run_dir: Path,
        manifest: Manifest,
        ledger: Ledger,
        interval: float,
        *,
        duty: float = USAGE_CHECKPOINT_DUTY,
        started: float | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.started = time.perf_counter() if started is None else started
        self.manifest = manifest
        self.ledger = ledger
        self.interval = interval
        self.duty = duty
        self.writes = 0
        self._lock = threading.Lock()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        last: dict[str, Any] | None = None
        delay = self.interval
        while True:
            await asyncio.sleep(delay)
            usage = self.ledger.to_json()
            if usage != last:
                last = usage
                started = time.perf_counter()
                await asyncio.to_thread(self._write, usage)
                delay = max(self.interval, (time.perf_counter() - started) * self.duty)

    def _write(self, usage: dict[str, Any]) -> None:
        with self._lock:
            if not self._closed:
                wall = round(time.perf_counter() - self.started, 3)
                update = {"llm_usage": usage, "wall_seconds": wall}
                write_manifest(self.run_dir, self.manifest.model_copy(update=update))
                self.writes += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self._closing)

    def _closing(self) -> None:
        with self._lock:
            self._closed = True


def _log_sha256(db: Path) -> str:
    conn = connect(db)
    try:
        return log_hash(conn)
    finally:
        conn.close()


async def _shutdown(
    service: CoachService | None,
    stacks: Mapping[str, LLMStack],
    platform: Platform,
    *,
    abandon: bool = False,
) -> None:
    """Stop the coach, close the LLM stacks, then close (flush) the platform — each step even
    when an earlier one fails, so the database is always closed and its thread ends. A run that
    did not complete (``abandon``) does not wait for the coach advice still being asked."""
    try:
        if service is not None:
            await service.stop(abandon=abandon)
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


def _losses(
    engine: Engine, service: CoachService | None, instruments: Instruments | None
) -> dict[str, int]:
    """What the run lost so far, as the manifest's ``totals`` count it
    (:data:`~friendsim.runtime.status.LOSSES`)."""
    moderation = instruments.moderation if instruments is not None else None
    return {
        "lost_actions": engine.lost_actions,
        "policy_errors": engine.policy_errors,
        "lost_guidance": service.lost_guidance if service is not None else 0,
        "lost_reviews": moderation.lost_reviews if moderation is not None else 0,
        "lost_answers": instruments.lost_answers if instruments is not None else 0,
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
