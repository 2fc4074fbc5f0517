"""Building a run's instruments from its plan (called by the one assembly).

Kept apart from :mod:`friendsim.runtime.assembly` so the assembly only gains a few calls:
:func:`inline_plan_items` (item files become inline items before the manifest is written, so a
re-run needs no file), :func:`check_named_agents` (the agents interventions name exist),
:func:`check_growth` (a persona file holds the agents that join), :func:`moderation_spec` (the
LLM moderator's provider spec, opened with the other stacks) and :func:`open_instruments` (the
:class:`~.instruments.Instruments` hooks, or ``None`` for a run that uses none — whose log is
then exactly as before).

The interventions and surveys follow the plan's final config (the one the manifest records; a
fork may not change them). Moderation follows each phase (:func:`moderation_regimes`): the
items posted in a window are reviewed under the ``[moderation]`` in force in that window.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from friendsim.agents.persona import Persona
from friendsim.moderation.kinds import MODERATORS
from friendsim.moderation.kinds import uses_llm as moderator_uses_llm
from friendsim.moderation.service import ModerationRegime, ModerationService
from friendsim.runtime.config import ConfigError, ExperimentConfig, resolve_auto_provider
from friendsim.runtime.instruments import Instruments, instruments_used
from friendsim.runtime.instruments_config import InterventionSpec, inline_items
from friendsim.runtime.interventions import added_agents, named_agents
from friendsim.runtime.items import ItemsFileError
from friendsim.vocabulary import Policy

if TYPE_CHECKING:
    from friendsim.llm.stack import LLMStack
    from friendsim.platform.service import Platform
    from friendsim.runtime.plan import RunPlan


def inline_plan_items(plan: RunPlan, *, base: Path, source: str | Path) -> RunPlan:
    """``plan`` with every intervention's item file replaced by its items."""
    if not any(p.config.interventions for p in plan.phases):
        return plan
    phases = []
    for phase in plan.phases:
        cfg = phase.config
        try:
            inlined = inline_items(cfg.interventions, base)
        except ItemsFileError as exc:
            raise ConfigError(source, "[interventions].items", str(exc)) from None
        _check_item_ids(inlined, source)
        phases.append(
            dataclasses.replace(phase, config=cfg.model_copy(update={"interventions": inlined}))
        )
    return dataclasses.replace(plan, phases=tuple(phases))


def _check_item_ids(specs: Sequence[InterventionSpec], source: str | Path) -> None:
    """Each item id is injected once in the run (surveys ask about an item by its id, and
    analyses label its cascade and its belief answers with the truth of that id), else
    :class:`ConfigError` at the later intervention's ``items``."""
    first: dict[str, int] = {}
    for i, spec in enumerate(specs):
        items = spec.params.get("items")
        if isinstance(items, str) or not isinstance(items, (list, tuple)):
            continue
        for item in items:
            item_id = str(item.get("id") if isinstance(item, Mapping) else item.id)
            j = first.setdefault(item_id, i)
            if j != i:
                raise ConfigError(
                    source,
                    f"[interventions][{i}].items",
                    f"item id {item_id!r} is injected already by [interventions][{j}]; each "
                    "injected item needs its own id (surveys and analyses tell items apart by it)",
                )


def check_named_agents(
    plan: RunPlan,
    personas: Sequence[Persona],
    *,
    more_personas: Callable[[int], Sequence[Persona]],
    source: str | Path,
) -> None:
    """Every agent an intervention of ``plan`` names (:func:`~.interventions.named_agents`) is
    in the run when that intervention applies: one of ``personas``, or one that an ``add_agents``
    intervention applied before it adds (in the order the runtime applies them:
    :meth:`~friendsim.runtime.config.ExperimentSection.applied_at`), else :class:`ConfigError`
    at ``[interventions][i].agents`` — the runtime could only record the intervention as failed;
    and no ``inject`` registers as its outside account (``by``) an id that an ``add_agents``
    applied after it adds (:class:`ConfigError` at ``[interventions][i].by``: the agent could
    not join).
    Called once the population is known and before anything is written. ``more_personas(n)``:
    the run's first ``n`` personas (built only when an id is not among ``personas`` and the
    population grows)."""
    specs = plan.final.interventions
    known = {p.id for p in personas}
    names = [(i, a) for i, s in enumerate(specs) for a in named_agents(s.kind, s.params)]
    added = sum(added_agents(s.kind, s.params) for s in specs)
    if all(a in known for _, a in names) and not (added and _outside_accounts(specs)):
        return
    order = _applied_order(plan)
    grown: list[str] = []
    if added:
        with contextlib.suppress(ConfigError):  # too few personas: the ids stay unknown
            grown = [p.id for p in more_personas(len(personas) + added)][len(personas) :]
    adds: dict[int, list[str]] = {}  # add_agents intervention -> the agents it adds
    for i in order:
        if n := added_agents(specs[i].kind, specs[i].params):
            offset = sum(len(v) for v in adds.values())
            adds[i] = grown[offset : offset + n]
    joins = {a: i for i, added_ids in adds.items() for a in added_ids}
    present = set(known)
    outside = _outside_accounts(specs)
    for i in order:
        spec = specs[i]
        by = outside.get(i)
        if by is not None and by not in present and by in joins:
            j = joins[by]
            raise ConfigError(
                source,
                f"[interventions][{i}].by",
                f"the outside account {by!r} would be registered ({_when(spec)}) before "
                f"[interventions][{j}] (add_agents, {_when(specs[j])}) adds agent {by!r}; "
                "name another account",
            )
        for agent in named_agents(spec.kind, spec.params):
            if agent in present:
                continue
            if agent in joins:
                j = joins[agent]
                raise ConfigError(
                    source,
                    f"[interventions][{i}].agents",
                    f"agent {agent!r} joins only with [interventions][{j}] (add_agents, "
                    f"{_when(specs[j])}), after this {spec.kind} ({_when(spec)}) applies",
                )
            ids = sorted(known | set(grown))
            raise ConfigError(
                source,
                f"[interventions][{i}].agents",
                f"no agent {agent!r} in this run ({len(ids)} agents: {ids[0]} ... {ids[-1]})",
            )
        present.update(adds.get(i, ()))


def check_growth(
    plan: RunPlan,
    personas: Sequence[Persona],
    *,
    more_personas: Callable[[int], Sequence[Persona]],
    source: str | Path,
) -> None:
    """A persona file holds the personas every ``add_agents`` of ``plan`` adds, else
    :class:`ConfigError` at the ``[interventions][i].count`` of the first one it runs out at
    (the run failed there, windows into it). ``more_personas(n)``: the run's first ``n``
    personas from its file; called only for a run that grows, once per ``add_agents``."""
    specs = plan.final.interventions
    n = len(personas)
    for i in _applied_order(plan):
        if not (k := added_agents(specs[i].kind, specs[i].params)):
            continue
        n += k
        try:
            more_personas(n)
        except ConfigError as exc:
            raise ConfigError(
                source,
                f"[interventions][{i}].count",
                f"the population grows to {n} agents here: {exc.problem}",
            ) from None


def _applied_order(plan: RunPlan) -> list[int]:
    """The indexes of ``plan``'s interventions in the order the runtime applies them
    (:meth:`~friendsim.runtime.config.ExperimentSection.applied_at`, then config order)."""
    specs, ex = plan.final.interventions, plan.final.experiment
    return sorted(
        range(len(specs)), key=lambda i: (ex.applied_at(window=specs[i].window, at=specs[i].at), i)
    )


def _outside_accounts(specs: Sequence[InterventionSpec]) -> dict[int, str]:
    """The outside account each ``inject`` intervention without ``agents`` posts as, by index."""
    return {
        i: str(s.params.get("by", "newsdesk"))
        for i, s in enumerate(specs)
        if s.kind == "inject" and not s.params.get("agents")
    }


def _when(spec: InterventionSpec) -> str:
    return f"window {spec.window}" if spec.window is not None else f"at={spec.at!r}"


def moderation_spec(cfg: ExperimentConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The resolved provider spec of an LLM moderator (``None`` without one)."""
    mod = cfg.moderation
    if not (mod.enabled and moderator_uses_llm(mod.kind)):
        return None
    spec = mod.provider or cfg.llm.provider
    return resolve_auto_provider(env) if spec == "auto" else spec


def moderation_regimes(
    plan: RunPlan, stacks: Mapping[str, LLMStack], env: Mapping[str, str] | None
) -> list[ModerationRegime]:
    """One :class:`~friendsim.moderation.service.ModerationRegime` per run of consecutive
    phases of ``plan`` with the same ``[moderation]`` (so a fork that leaves it as it was keeps
    one moderator, its state carried through), its moderator built from that section (``None``
    where moderation is off). ``stacks``: the run's LLM stacks, by provider spec
    (:func:`moderation_spec`)."""
    regimes: list[ModerationRegime] = []
    last = None
    for phase in plan.phases:
        mod = phase.config.moderation
        if regimes and mod == last:
            continue
        last = mod
        moderator = None
        if mod.enabled:
            spec = moderation_spec(phase.config, env)
            moderator = MODERATORS.create(mod.kind, mod.params, llm=stacks[spec] if spec else None)
        regimes.append(ModerationRegime(start=phase.start, moderator=moderator))
    return regimes


async def open_instruments(
    plan: RunPlan,
    *,
    platform: Platform,
    personas: Sequence[Persona],
    stacks: Mapping[str, LLMStack],
    env: Mapping[str, str] | None,
    make_policies: Callable[[list[Persona]], Mapping[str, Policy]],
    build_personas: Callable[[int], Sequence[Persona]],
) -> Instruments | None:
    """The run's instruments, started (the moderation service subscribes to the bus)."""
    cfg, first = plan.final, plan.first
    moderated = any(p.config.moderation.enabled for p in plan.phases)
    if not (instruments_used(cfg) or moderated):
        return None
    moderation: ModerationService | None = None
    if moderated:
        moderation = ModerationService(
            platform,
            regimes=moderation_regimes(plan, stacks, env),
            concurrency=cfg.llm.concurrency,
        )
        await moderation.start()
    population: list[Persona] = list(personas)

    def more(k: int) -> list[Persona]:
        made = list(build_personas(len(population) + k))[len(population) :]
        population.extend(made)
        return made

    def make_policy(p: Persona) -> Policy:
        return make_policies([p])[p.id]

    ex = first.experiment
    return Instruments(
        platform=platform,
        interventions=cfg.interventions,
        moderation=moderation,
        surveys=cfg.surveys,
        personas=personas,
        theme=ex.theme,
        seed=ex.seed,
        mode=ex.mode,
        window_length=ex.window_length,
        make_policy=make_policy,
        more_personas=more,
    )
