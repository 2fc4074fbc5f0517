"""``friendsim run CONFIG --fork RUN_DIR --at W``: a new run that shares an old run's first W windows.

The fork is a :class:`~friendsim.runtime.plan.RunPlan`: the parent's config from window 1,
the new config from window W+1, and the parent's log up to ``WindowEnded(W)`` as the recorded
prefix. Windows ``1..W`` are re-executed with the parent's LLM cache (no live call until
``WindowEnded(W)`` is logged), so the new log's prefix — every event
with ``seq <=`` the seq of the parent's ``WindowEnded(W)`` — is the parent's, byte for byte
(checked at the end against the digest of the parent's prefix, taken from a copy of its log
that is removed before the new run starts; a difference is a
:class:`~friendsim.rundir.errors.DivergenceError` naming the first differing seq). Those
windows are history, replayed without a live call: they are not judged against the failure
budget again (``judged_until_seq``), which would stop a fork of a run resumed past the window
that spent its budget at that window; window W+1 on is judged as in any run. The new config takes
over at the boundary, each part at the first moment it can act without touching the prefix: the
coach and the reward scorer from the processing of ``WindowEnded(W)`` (so with coaching switched
on, guidance for window W is issued right after the prefix and agents are coached in window W+1);
the agents' view of guidance, the feed ranker and the feed size from window W+1; the
moderation from the items of window W+1 (below). More or fewer windows follow
(``rounds``/``duration``). Both reward settings are scored from the first event on, so the new
scorer's state at the switch is the one the log implies; in-memory state (agent memory, coach
context, a moderator's strike counts, RNGs) carries over exactly as in an uninterrupted run.

Moderation (``[moderation]``: switched on or off, another moderator, other parameters or
provider): every item is reviewed under the ``[moderation]`` in force in the window it was
posted in (:class:`~friendsim.moderation.service.ModerationRegime`). So the new moderation
reviews exactly the items posted from window W+1 on, the first at the sweep that follows window
W+1's interventions, and never an item of the prefix: those were reviewed, or not, by the
parent's moderation in the prefix. None is pending at ``WindowEnded(W)`` (a sweep follows every
wake and every intervention; votes and survey answers are no items); one that were would be
reviewed by the parent's moderation, as in the parent. A parent without moderation leaves its
prefix unreviewed for good: a fork that switches moderation on records no ``ModerationDecided``
about an item of windows 1..W. A changed moderator starts with nothing reviewed (a rule
moderator's strikes from zero); a fork that leaves ``[moderation]`` as it was keeps the
parent's moderator, state included. Decisions of the prefix stay in force whatever the fork
says: a removed item stays removed, a label stays, a shadowban holds and a suspension runs to
its end, also with moderation switched off. An LLM moderator of the parent is answered from
the parent's cache in the prefix, as every model request there is.

The new manifest's ``fork`` entry records the lineage: parent run dir, parent manifest hash,
fork window, prefix last seq, the prefix's sha256, and the phases before the new config
(:mod:`friendsim.replay.phases`, ``[moderation]`` included), so that the fork can be resumed,
re-run and forked again with each window under the config it ran under. A fork of a fork keeps
its parent's phases up to the fork window.

What may change at the fork (anything else is a :class:`~friendsim.rundir.errors.RunInputError`
naming the key): ``[coach]``, ``[rewards]`` (the coach's scorer is rebuilt and re-fed the
prefix), ``[feed]``, ``[moderation]``, ``[ties]`` (analysis only),
``[experiment].name/rounds/duration`` and the ``[llm]`` limits and cache mode. The agents, seed,
theme, time structure and models must stay: the prefix must be the parent's. Personas are the
parent's. ``[[interventions]]`` and ``[[surveys]]`` are compared each as one setting
(:func:`~.config.settings`), an items file of the new config read relative to it (the parent's
manifest holds the items themselves); they cannot change.

``provider = "auto"`` in the new config means the model the parent ran that part with
(:func:`~.config.with_parent_models`: its agents', its coach's, its moderator's, as its manifest
recorded them), not what ``auto`` would mean where the fork runs: the config a run was made with
forks it, under the run's models, whatever keys are set now; the fork's manifest records those
specs in its config. A spec the new config names is taken as written: another agents' model is
refused, another coach's or moderator's is a switch. Where the parent has no model for a part,
``auto`` resolves from the environment, as in any run.
"""

from __future__ import annotations

import asyncio
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from friendsim._carry import in_thread
from friendsim.rundir.errors import DivergenceError, RunInputError
from friendsim.rundir.layout import EVENTS_DB, MANIFEST
from friendsim.rundir.log import connect, log_hash
from friendsim.rundir.scratch import working_folder
from friendsim.runtime.assembly import LLMFactory, run_plan
from friendsim.runtime.config import ExperimentConfig, parse_config
from friendsim.runtime.engine import RunListener
from friendsim.runtime.instruments_config import inline_items
from friendsim.runtime.items import ItemsFileError
from friendsim.runtime.plan import Phase, RunPlan

from .config import (
    config_from_manifest,
    setting_label,
    settings,
    with_changes,
    with_parent_models,
)
from .execute import (
    check_answers_kept,
    check_failures_replayable,
    check_recorded_answers,
    manifest_sha256,
    new_run_dir,
    undone_if_refused,
)
from .logdiff import first_difference
from .phases import phase_lineage, recorded_phases
from .rerun import _summary_and_hash, inspect_run

SWITCHABLE = {
    "experiment": {"name", "rounds", "duration"},
    "llm": {"concurrency", "rpm", "tpm", "retries", "cache", "prices"},
    "coach": None,
    "rewards": None,
    "feed": None,
    "moderation": None,
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
    """``{name: [parent value, child value]}`` for each setting (:func:`~.config.settings`:
    ``"section.key"``, or ``"section"`` for an array of tables) that differs; raises, naming
    it, for one a fork cannot change. ``parent``: the config the parent ran the window after
    the fork window under (:func:`_in_force`)."""
    a, b = settings(parent), settings(child)
    out: dict[str, Any] = {}
    for name in a:
        if name == "agents.personas" or a[name] == b[name]:
            continue
        section, _, key = name.partition(".")
        allowed = SWITCHABLE.get(section, set())
        if allowed is not None and key not in allowed:
            raise RunInputError(
                f"fork: {setting_label(name)} differs from the parent run ({a[name]!r} -> "
                f"{b[name]!r}); a fork may only change "
                "[coach], [rewards], [feed], [moderation], [ties], "
                "[experiment].name/rounds/duration and [llm] limits/cache"
            )
        out[name] = [a[name], b[name]]
    return out


RUN_WIDE = ("experiment.name", "experiment.rounds", "experiment.duration")
"""Settings of a run as a whole (its name and length), not of the windows a phase runs."""


def _in_force(phases: tuple[Phase, ...], window: int, final: ExperimentConfig) -> ExperimentConfig:
    """The config the parent ran ``window`` under (the last of its ``phases`` started by then)
    with its :data:`RUN_WIDE` settings (``final``'s): what the fork's own config takes over
    from, so what its ``changed`` compares with. A fork of a fork at or before its parent's
    fork window takes over from the grandparent's phase, not the parent's final config."""
    cfg = [p for p in phases if p.start <= window][-1].config
    whole = settings(final)
    return with_changes(cfg, {k: whole[k] for k in RUN_WIDE})


def _inlined(cfg: ExperimentConfig, config_path: str | Path | None) -> ExperimentConfig:
    """``cfg`` with its interventions' item files (relative to ``config_path``'s folder)
    replaced by their items, as the parent's manifest holds them: the same items are the same
    setting, and the fork, run from its own folder, needs no file."""
    if not cfg.interventions:
        return cfg
    base = Path(config_path).parent if config_path is not None else Path.cwd()
    try:
        inlined = inline_items(cfg.interventions, base)
    except ItemsFileError as exc:
        raise RunInputError(
            f"{config_path or '<fork config>'}: [interventions].items: {exc}"
        ) from None
    return cfg.model_copy(update={"interventions": inlined})


def _n_windows(cfg: ExperimentConfig) -> int:
    ex = cfg.experiment
    if ex.mode == "rounds":
        return ex.rounds
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
    stop: asyncio.Event | None = None,
) -> ForkReport:
    """Fork ``parent_dir`` after window ``at_window`` into ``out_dir`` under ``cfg``; ``stop``
    (optional) stops the new run as it stops ``friendsim run`` (:func:`run_plan`)."""
    parent, out = Path(parent_dir), Path(out_dir)
    # the copies are read by the checks and removed before the run, which may last hours
    with working_folder(parent, what="fork") as tmp:
        manifest, parent_copy, summary, _ = await in_thread(inspect_run, parent, tmp)
        await in_thread(check_recorded_answers, parent, manifest)
        if at_window not in summary.window_ends:
            raise RunInputError(
                f"fork: window {at_window} never ended in {parent} (committed windows: "
                f"1..{summary.last_window}); choose --at between 1 and {summary.last_window}"
            )
        prefix_seq = summary.window_ends[at_window]
        await in_thread(
            check_failures_replayable, parent, parent_copy, until_seq=prefix_seq, scratch=tmp
        )
        prefix_hash = await in_thread(_hash_upto, parent_copy, prefix_seq)
        pcfg = config_from_manifest(parent, manifest)
        child_data = cfg.model_dump(mode="json")
        child_data["agents"] = pcfg.model_dump(mode="json")["agents"]
        child = _inlined(
            parse_config(child_data, source=config_path or "<fork config>"), config_path
        )
        recorded = recorded_phases(manifest, pcfg, source=parent / MANIFEST)
        check_answers_kept(parent, manifest, [p for p in recorded if p.start <= at_window])
        taken_over = _in_force(recorded, at_window + 1, pcfg)
        child = with_parent_models(child, taken_over)
        changed = changes(taken_over, child)
        if _n_windows(child) <= at_window:
            raise RunInputError(
                f"fork: the new config has {_n_windows(child)} windows; nothing runs after "
                f"window {at_window}"
            )
        parent_hash = await in_thread(manifest_sha256, parent)
        mode = "replay" if child.llm.cache == "replay" else "read_through"
        phases = (
            *(
                Phase(start=p.start, config=with_changes(p.config, {"llm.cache": mode}))
                for p in recorded
                if p.start <= at_window
            ),
            Phase(start=at_window + 1, config=with_changes(child, {"llm.cache": mode})),
        )
        plan = RunPlan(
            phases=phases,
            recorded_until_seq=prefix_seq,
            judged_until_seq=prefix_seq,
            lineage={
                "fork": {
                    "parent_run_dir": await in_thread(os.path.abspath, parent),
                    "parent_manifest_sha256": parent_hash,
                    "fork_window": at_window,
                    "prefix_last_seq": prefix_seq,
                    "prefix_sha256": prefix_hash,
                    "changed": changed,
                    "phases": phase_lineage(phases),
                }
            },
        )
    with undone_if_refused(out):
        await in_thread(new_run_dir, parent, out)
        result = await run_plan(
            plan,
            out_dir=out,
            config_path=out / MANIFEST,
            listener=listener,
            llm_factory=llm_factory,
            stop=stop,
        )
    if await in_thread(_hash_upto, out / EVENTS_DB, prefix_seq) != prefix_hash:
        diff = await in_thread(first_difference, parent, out / EVENTS_DB, to_seq=prefix_seq)
        raise DivergenceError(
            f"fork of {parent} at window {at_window}: the re-executed prefix differs at "
            f"{diff or f'a row up to seq {prefix_seq}'}",
            diff,
        )
    new_summary, _ = await in_thread(_summary_and_hash, out / EVENTS_DB)
    return ForkReport(
        run_dir=out,
        parent=parent,
        fork_window=at_window,
        prefix_last_seq=prefix_seq,
        prefix_sha256=prefix_hash,
        events=new_summary.count,
        status=result.manifest.status,
        changed=changed,
    )


def _hash_upto(db: Path, seq: int) -> str:
    conn = connect(db)
    try:
        return log_hash(conn, to_seq=seq)
    finally:
        conn.close()
