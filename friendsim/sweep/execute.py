"""One replication of a sweep, run into its folder: what both executors call and share.

The ``local`` executor (:func:`friendsim.sweep.runner.local_outcomes`, a process pool) and the
``ray`` executor (:mod:`friendsim.sweep.ray_executor`, one Ray task per replication) both run a
replication with :func:`execute_plan`, so the same seed gives the same event log byte for byte on
either; both keep a ``completed`` run with :func:`keep_completed`, read a folder's run with
:func:`found_manifest` and :func:`read_status`, move an unfinished one away with
:func:`set_aside` and refuse a folder that holds another experiment's run
(:func:`replication_mismatch`, :func:`foreign_runs`). What an executor yields is a
:data:`PlanStream` of :data:`RunOutcome` s. Kept apart from :mod:`friendsim.sweep.runner` (the
sweep: its directory, its lock, ``sweep.json`` and the choice of executor) so that the executors
depend on this module, and the sweep on them, never the other way round.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from friendsim.rundir.errors import RunInputError
from friendsim.rundir.lock import holder, writer_name
from friendsim.rundir.manifest import Manifest, read_manifest, redact
from friendsim.sweep.config import Replication
from friendsim.sweep.interrupt import StopFlag, run_until_stopped

if TYPE_CHECKING:
    from friendsim.runtime.config import ExperimentConfig

log = structlog.get_logger(__name__)

RunOutcome = dict[str, Any]
"""``{"cell", "rep", "seed", "dir", "status", "wall_seconds", "error"}`` of one run."""


PlanStream = Generator[tuple[Replication, RunOutcome], None, None]
"""What an executor yields: each plan with its outcome, in the order the runs finish."""


def found_manifest(run_dir: Path) -> Manifest | None:
    """The manifest of the run in ``run_dir``; ``None``: none there, or not readable."""
    try:
        return read_manifest(run_dir)
    except RunInputError:
        return None


def read_status(run_dir: Path) -> str | None:
    """The status the manifest in ``run_dir`` records; ``None``: no readable manifest there."""
    manifest = found_manifest(run_dir)
    return None if manifest is None else manifest.status


FOREIGN_RUN = "ForeignRunError"
"""How the outcome of a replication whose folder holds another experiment's run names its error."""

_FILE_KEYS = ("agents.personas", "llm.endpoints_file")
"""Config values that name a file, compared by the file's content where both can be read."""

_RESUME_PINNED = ("llm.cache", "llm.budget_usd")
"""Config values ``friendsim run --resume`` may change (:mod:`friendsim.replay.resume`)."""

_UNSET = object()


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _shown(value: Any) -> str:
    if value is _UNSET:
        return "unset"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _config_of(data: Mapping[str, Any], source: str) -> ExperimentConfig | None:
    from friendsim.runtime.config import parse_config

    try:
        return parse_config(data, source=source)
    except ValueError:  # ConfigError, or a value this friendsim no longer reads
        return None


def expected_config(plan_data: Mapping[str, Any], source: str) -> ExperimentConfig | None:
    """The config :func:`execute_plan` starts the run of ``plan_data`` with, as the run's
    manifest records it (intervention item files inlined); ``None`` when it does not validate
    (the run fails and says why)."""
    from friendsim.runtime.config import ConfigError
    from friendsim.runtime.instruments_setup import inline_plan_items
    from friendsim.runtime.plan import RunPlan

    cfg = _config_of(plan_data, source)
    if cfg is None:
        return None
    try:
        return inline_plan_items(RunPlan.of(cfg), base=Path(source).parent, source=source).final
    except ConfigError:  # an item file that cannot be read: the run fails on it
        return cfg


def _same_file(a: Path | None, b: Path | None) -> bool:
    """Whether two files hold the same bytes; ``True`` when either cannot be read (a Ray task's
    scratch copy, gone; a relative path whose folder is not known): nothing says they differ."""
    if a is None or b is None:
        return a is None and b is None
    try:
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return True


def replication_mismatch(
    run_dir: Path, manifest: Manifest, plan_data: Mapping[str, Any], source: str
) -> str | None:
    """Why the run in ``run_dir`` (its ``manifest``) is not the replication ``plan_data``
    describes, or ``None`` when it is.

    It is when the config its manifest records (``Manifest.config``, re-read by this friendsim
    so defaults added since count as set) equals :func:`expected_config`, credentials redacted
    on both sides as the manifest redacts them. Paths and times are not compared: a file the
    config names (persona file, endpoints file) is compared by its content where both copies can
    be read (a Ray task ran on a scratch copy), and a run resumed in place with ``friendsim run
    --resume`` may have pinned what a resume pins (the cache mode, the spending limit, ``auto``
    providers resolved, its own copy of the personas). A manifest that records no config cannot
    be told apart: ``None`` unless the run is ``completed`` (it would be kept unchecked).
    """
    expected_cfg = expected_config(plan_data, source)
    if expected_cfg is None:
        return None
    if not manifest.config:
        if manifest.status != "completed":
            return None  # unfinished and unidentifiable: set aside (kept), as always
        return (
            f"{run_dir} holds a completed run whose manifest records no experiment config, so "
            "it cannot be told to be this replication; move it away or choose another --out"
        )
    recorded_cfg = _config_of(manifest.config, str(run_dir / "manifest.json"))
    expected = _flat(redact(expected_cfg.model_dump(mode="json")))
    recorded = _flat(
        redact(recorded_cfg.model_dump(mode="json"))
        if recorded_cfg is not None
        else manifest.config
    )
    resumed = manifest.resumed_from is not None
    if recorded_cfg is not None:
        recorded_base = Path(manifest.config_file).parent if manifest.config_file else run_dir
        for key in _FILE_KEYS:
            mine, theirs = expected.get(key), recorded.get(key)
            if mine == theirs or not isinstance(mine, str) or not isinstance(theirs, str):
                continue
            path_of = "persona_path" if key == "agents.personas" else "endpoints_path"
            a = getattr(expected_cfg, path_of)(Path(source).parent)
            b = getattr(recorded_cfg, path_of)(recorded_base)
            if (a is not None and b is not None and resumed and key == "agents.personas") or (
                _same_file(a, b)
            ):
                recorded[key] = mine
    if resumed:
        for key, mine in expected.items():
            if key in _RESUME_PINNED or (mine == "auto" and key.endswith("provider")):
                recorded[key] = mine
        for key in ("llm.overrides",):  # a list of tables: each ``auto`` provider resolved
            mine, theirs = expected.get(key), recorded.get(key)
            if isinstance(mine, list) and isinstance(theirs, list) and len(mine) == len(theirs):
                recorded[key] = [
                    {**t, "provider": m["provider"]}
                    if isinstance(m, dict) and isinstance(t, dict) and m.get("provider") == "auto"
                    else t
                    for m, t in zip(mine, theirs, strict=True)
                ]
    keys = [*expected, *(k for k in recorded if k not in expected)]
    first = ("experiment.seed", "experiment.mode")
    differ = sorted(
        (k for k in keys if expected.get(k, _UNSET) != recorded.get(k, _UNSET)),
        key=lambda k: first.index(k) if k in first else len(first),
    )
    if not differ:
        return None
    parts = [
        f"{'seed' if k == 'experiment.seed' else k} {_shown(recorded.get(k, _UNSET))}, "
        f"not {_shown(expected.get(k, _UNSET))}"
        for k in differ[:5]
    ]
    if len(differ) > 5:
        parts.append(f"and {len(differ) - 5} more settings")
    return (
        f"{run_dir} holds a run of another experiment ({'; '.join(parts)}); move it away or "
        "choose another --out"
    )


def refusal(run_dir: Path, manifest: Manifest, why: str) -> RunOutcome:
    """The outcome of a replication whose folder holds a run that is not it (left untouched)."""
    if manifest.status != "completed" and (pid := holder(run_dir)) is not None:
        why += f" (it is being written by {writer_name(pid)})"
    return {
        "status": "failed",
        "resumed": False,
        "wall_seconds": 0.0,
        "error": f"{FOREIGN_RUN}: {why}",
    }


def foreign_runs(plans: Sequence[Replication], out_dir: Path, source: str) -> dict[str, RunOutcome]:
    """``{rel_dir: failed outcome}`` for each plan whose run folder under ``out_dir`` holds a
    run that is not that replication (:func:`replication_mismatch`): neither kept nor set aside
    nor run over, whichever executor runs the others."""
    out: dict[str, RunOutcome] = {}
    for plan in plans:
        run_dir = out_dir / plan.rel_dir
        manifest = found_manifest(run_dir)
        if manifest is None:
            continue
        why = replication_mismatch(run_dir, manifest, plan.data, source)
        if why is not None:
            out[plan.rel_dir] = refusal(run_dir, manifest, why)
    return out


def set_aside(run_dir: Path) -> str:
    """Rename an unfinished run directory to ``<name>.stale-<k>`` (nothing is deleted)."""
    k = 1
    while (target := run_dir.with_name(f"{run_dir.name}.stale-{k}")).exists():
        k += 1
    run_dir.rename(target)
    log.warning("sweep_runset_aside", run_dir=str(run_dir), moved_to=str(target))
    return str(target)


def keep_completed(run_dir: Path) -> RunOutcome:
    """The outcome of a replication already ``completed`` in ``run_dir``, kept (not run again)
    once its tie evidence is scored and its analysis loads; ``failed`` with the reader's error
    when they cannot be (a broken log): recorded, left as it is, not counted as done. Both
    executors keep runs through this, so a broken one fails the same way on either."""
    from friendsim.analysis.analyze import ANALYSIS_FILE, load_analysis
    from friendsim.runtime.tie_scoring import score_run_ties

    try:
        score_run_ties(run_dir)
        load_analysis(run_dir, cache=run_dir / ANALYSIS_FILE)
    except Exception as exc:  # a run's failure is data for the sweep, not a crash of it
        return {
            "status": "failed",
            "resumed": False,
            "wall_seconds": 0.0,
            "error": f"{type(exc).__name__}: {exc}",
        }
    return {"status": "completed", "resumed": True, "wall_seconds": 0.0, "error": None}


def execute_plan(
    plan_data: Mapping[str, Any], run_dir: str, source: str, *, stop: StopFlag | None = None
) -> RunOutcome:
    """Run and analyse one plan (the worker function; also callable in-process).

    Never raises for a failed run: the outcome says ``failed`` with ``"<Type>: message"``.
    ``stop``: once set, the run ends ``interrupted`` at its next stop point (the sweep was
    interrupted).
    """
    from friendsim._loop import run as run_on_loop
    from friendsim.analysis.analyze import ANALYSIS_FILE, load_analysis
    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.config import parse_config
    from friendsim.runtime.status import RunStopped
    from friendsim.runtime.tie_scoring import score_run_ties

    rd = Path(run_dir)
    t0 = time.perf_counter()
    found = found_manifest(rd)
    if found is not None and (why := replication_mismatch(rd, found, plan_data, source)):
        return refusal(rd, found, why)  # another experiment's run: neither kept nor set aside
    status = None if found is None else found.status
    moved: str | None = None
    if status != "completed" and (pid := holder(rd)) is not None:
        return {  # not unfinished: being written (a `friendsim run --out` into the sweep)
            "status": "failed",
            "resumed": False,
            "wall_seconds": 0.0,
            "error": f"RunLockedError: {rd} is being written by {writer_name(pid)}; not "
            "set aside or run again (re-run the sweep once it is done)",
        }
    try:
        if status == "completed":
            return keep_completed(rd)
        moved = set_aside(rd) if rd.exists() else None
        cfg = parse_config(plan_data, source=source)
        result = run_on_loop(
            run_until_stopped(
                lambda event: run_experiment(cfg, out_dir=rd, config_path=source, stop=event),
                stop,
            )
        )
        status = result.manifest.status
        score_run_ties(rd)
        load_analysis(rd, cache=rd / ANALYSIS_FILE)
        error = None
    except RunStopped as exc:  # stopped early on purpose: its status says how (interrupted...)
        status, error = exc.status, f"{exc.reason}: {exc}"
    except Exception as exc:  # a run's failure is data for the sweep, not a crash of it
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    return {
        "status": status,
        "resumed": False,
        "set_aside": moved,
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "error": error,
    }
