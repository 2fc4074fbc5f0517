"""Aggregate a sweep: every metric and reward across replications, per grid cell, with 95 % CIs.

Each completed run's analysis (:func:`friendsim.analysis.analyze.load_analysis`) is flattened to
scalar metrics with dotted names (:func:`flatten_analysis`):

* ``reward.<group>.<component>.w<window>`` and ``.final`` (last window) and ``.mean`` (over
  windows), where ``<group>`` is ``all`` or a dominant policy (``SOC`` ... ``EMO``) and
  ``<component>`` is ``SOC`` ... ``EMO`` or ``total``;
* ``ties.<θ>.<metric>`` for every scalar metric of the final tie network at θ (density,
  clustering, lcc, path_ln, modularity, median_degree ...), ``ties.<θ>.homophily.<attr>``
  (same-ratio), ``ties.<θ>.power_law_alpha``, ``ties.<θ>.reference_inside`` (how many of the
  reference metrics fall inside the real networks' range);
* ``follow.<metric>``, ``interaction.<metric>`` (scalar metrics of those graphs);
* ``usage.<field>`` (LLM tokens, calls, ``cost_usd``) and ``run.<field>`` (wall time, totals).

Per cell and metric: ``n`` (replications with a defined value), mean, sample sd, and the 95 %
Student-t interval mean ± t(0.975, n−1)·sd/√n. With n = 1 there is no interval: ``lower`` and
``upper`` are ``None`` and ``note`` says so. ``contrasts`` holds, for every cell after the first,
the paired difference (cell − first cell) of each metric over replications with the same seed,
with its interval (a coach-on vs coach-off effect, say). Written to ``<sweep>/aggregate.json`` and a Markdown
table ``<sweep>/aggregate.md``. Each cell carries its ``label`` (:mod:`friendsim.sweep.labels`:
recorded in ``sweep.json``, or made from its grid for a sweep recorded before labels), which the
tables show; its ``name`` stays its directory's.

The metrics describe the completed runs only; what the cell's runs spent on models is
``spent_usd``, over every replication of any status (a failed or degraded run was paid for
too) and every attempt at it whose manifest reached disk (:func:`spent_usd`: a run set aside
as ``rep<k>.stale-<n>`` when its process was killed, a Ray task's run rejected, a resumed
run's original), read from each attempt's manifest (``llm_usage``), with the number of runs
whose spend is not known (no readable manifest).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from friendsim.analysis.stats import CONFIDENCE, format_stat, mean_ci
from friendsim.rundir.layout import SWEEP_FILE
from friendsim.sweep.labels import labels_of_record

AGGREGATE_FILE = "aggregate.json"
AGGREGATE_TABLE = "aggregate.md"
AGGREGATE_VERSION = 4
"""Raised when this module computes an aggregate differently: a cached one is then stale."""
HEADLINE = (
    "reward.all.total.mean",
    "reward.all.total.final",
    "reward.all.COORD.final",
    "reward.all.EMO.final",
    "ties.0.05.density",
    "ties.0.05.clustering",
    "ties.0.05.lcc",
    "ties.0.05.path_ln",
    "ties.0.05.modularity",
    "ties.0.05.median_degree",
    "cascades.false.mean_exposed",
    "cascades.false.mean_size",
    "cascades.true.mean_exposed",
    "surveys.belief.false.final",
    "surveys.belief.true.final",
    "surveys.polarization.final",
    "moderation.decisions",
    "usage.cost_usd",
    "run.wall_seconds",
)
_COMPONENTS = ("SOC", "INF", "PRE", "COORD", "EMO", "total")


class SweepReadError(ValueError):
    """A directory is not a readable sweep (no or broken ``sweep.json``)."""


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _scalars(prefix: str, metrics: Mapping[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k, v in metrics.items():
        if _is_number(v) or v is None:
            out[f"{prefix}.{k}"] = None if v is None else float(v)
    return out


def _reward_series(prefix: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    if not rows:
        return out
    for comp in _COMPONENTS:
        vals = [float(r[comp]) for r in rows]
        for r in rows:
            out[f"{prefix}.{comp}.w{r['window']}"] = float(r[comp])
        out[f"{prefix}.{comp}.final"] = vals[-1]
        out[f"{prefix}.{comp}.mean"] = statistics.fmean(vals)
    return out


def flatten_analysis(analysis: Mapping[str, Any]) -> dict[str, float | None]:
    """The scalar metrics of one run's analysis under dotted names (module docstring)."""
    out: dict[str, float | None] = {}
    rewards = analysis["rewards"]
    out.update(_reward_series("reward.all", rewards["window_means"]))
    for pol, rows in rewards["by_policy"].items():
        out.update(_reward_series(f"reward.{pol}", rows))
    net = analysis["network"]
    for th, m in net["ties"]["final"].items():
        out.update(_scalars(f"ties.{th}", m))
        for attr, h in (m.get("homophily") or {}).items():
            out[f"ties.{th}.homophily.{attr}"] = h.get("same_ratio")
        pl = m.get("power_law")
        out[f"ties.{th}.power_law_alpha"] = pl.get("alpha") if isinstance(pl, Mapping) else None
        out[f"ties.{th}.reference_inside"] = float(
            sum(1 for v in (m.get("reference") or {}).values() if v.get("inside"))
        )
    out.update(_scalars("follow", net["follow"]))
    out.update(_scalars("interaction", net["interaction"]["final"]))
    out.update(_scalars("usage", analysis["usage"].get("total") or {}))
    out.update(_instrument_scalars(analysis))
    man = analysis["manifest"]
    out["run.wall_seconds"] = man.get("wall_seconds")
    out.update(_scalars("run", man.get("totals") or {}))
    return out


def _instrument_scalars(analysis: Mapping[str, Any]) -> dict[str, float | None]:
    """Cascades by truth label, the last survey's belief by truth and polarization, and the
    number of moderation decisions, for runs that used research instruments."""
    out: dict[str, float | None] = {}
    for g in (analysis.get("cascades") or {}).get("by_truth") or []:
        out.update(_scalars(f"cascades.{g['truth']}", g))
    surveys = analysis.get("surveys") or {}
    belief = surveys.get("belief") or []
    for truth in sorted({r["truth"] for r in belief}):
        rows = [r for r in belief if r["truth"] == truth]
        out[f"surveys.belief.{truth}.final"] = float(rows[-1]["mean_belief"])
    if stance := surveys.get("stance"):
        out["surveys.polarization.final"] = float(stance[-1]["polarization"])
        out["surveys.stance.final"] = float(stance[-1]["mean"])
    if "moderation" in analysis or "interventions" in analysis:
        out["moderation.decisions"] = float(
            sum(r["count"] for r in analysis.get("moderation") or [] if r["action"] != "failed")
        )
    return out


def _json_type(value: Any) -> str:
    """How messages name the JSON type of ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _need(path: Path, where: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """``value`` when it is of ``kind`` (never a boolean for a number), else
    :class:`SweepReadError` naming the file, the key (``where``) and what was expected."""
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise SweepReadError(f"{path}: key {where!r}: expected {what}, got {_json_type(value)}")


def _get(path: Path, obj: Mapping[str, Any], where: str, key: str) -> Any:
    """``obj[key]``, or :class:`SweepReadError` naming the file and the missing key."""
    if key not in obj:
        raise SweepReadError(f"{path}: {where}: missing key {key!r}")
    return obj[key]


def read_sweep(sweep_dir: str | Path) -> dict[str, Any]:
    """The ``sweep.json`` of a sweep directory, checked: the one reader of that file.

    The file must hold an object whose ``spec`` is an object (its ``name``, when present, a
    string or null), whose ``status``, when present, is a string or null, and whose ``runs`` is a
    list of objects, each with a non-empty string ``dir``: a folder inside the sweep directory
    (a sweep's aggregate never reads, nor writes beside, a run elsewhere).
    Other keys are left to the reader that uses them (:func:`aggregate_sweep` checks its own).

    Raises :class:`SweepReadError` naming the file and the key at fault (no ``sweep.json``, not
    JSON, or not of that shape).
    """
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise SweepReadError(f"{sweep_dir}: not a sweep directory (no {SWEEP_FILE})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: not UTF-8, not JSON
        raise SweepReadError(f"{path}: cannot read it: {exc}") from exc
    if not isinstance(data, dict):
        raise SweepReadError(
            f"{path}: missing 'spec' and 'runs': expected an object holding them, "
            f"got {_json_type(data)}"
        )
    if missing := [repr(k) for k in ("spec", "runs") if k not in data]:
        raise SweepReadError(f"{path}: missing {' and '.join(missing)}")
    spec = _need(path, "spec", data["spec"], dict, "an object")
    _need(path, "spec.name", spec.get("name"), (str, type(None)), "a string")
    _need(path, "status", data.get("status"), (str, type(None)), "a string")
    for i, run in enumerate(_need(path, "runs", data["runs"], list, "a list of runs")):
        _need(path, f"runs[{i}]", run, dict, "an object")
        rel = _need(path, f"runs[{i}].dir", _get(path, run, f"runs[{i}]", "dir"), str, "a path")
        if not rel.strip():
            raise SweepReadError(f"{path}: key 'runs[{i}].dir': expected a path, got ''")
        if Path(sweep_dir).resolve() not in (Path(sweep_dir) / rel).resolve().parents:
            raise SweepReadError(f"{path}: key 'runs[{i}].dir': {rel!r} is outside the sweep")
    return data


def _check_for_aggregate(path: Path, sweep: Mapping[str, Any]) -> None:
    """The keys :func:`aggregate_sweep` reads beyond :func:`read_sweep`'s checks: ``spec.cells``
    (objects with a string ``name``, an object ``overrides`` and, when present, a non-empty string
    ``label``: files written before labels have none), ``spec.replications`` (an
    integer), ``spec.grid`` (an object), ``spec.seeds`` (a list) and, per run, ``cell`` and
    ``status`` (strings) and ``rep`` (an integer). Raises :class:`SweepReadError` naming the
    file and the key."""
    spec = sweep["spec"]
    cells = _need(path, "spec.cells", _get(path, spec, "spec", "cells"), list, "a list of cells")
    for i, cell in enumerate(cells):
        where = f"spec.cells[{i}]"
        _need(path, where, cell, dict, "an object")
        _need(path, f"{where}.name", _get(path, cell, where, "name"), str, "a string")
        _need(path, f"{where}.overrides", _get(path, cell, where, "overrides"), dict, "an object")
        if "label" in cell and not _need(path, f"{where}.label", cell["label"], str, "a string"):
            raise SweepReadError(f"{path}: key '{where}.label': expected a label, got ''")
    _need(path, "spec.replications", _get(path, spec, "spec", "replications"), int, "an integer")
    _need(path, "spec.grid", _get(path, spec, "spec", "grid"), dict, "an object")
    _need(path, "spec.seeds", _get(path, spec, "spec", "seeds"), list, "a list")
    for i, run in enumerate(sweep["runs"]):
        where = f"runs[{i}]"
        _need(path, f"{where}.cell", _get(path, run, where, "cell"), str, "a string")
        _need(path, f"{where}.status", _get(path, run, where, "status"), str, "a string")
        _need(path, f"{where}.rep", _get(path, run, where, "rep"), int, "an integer")


def _curves(analyses: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per policy group (``all`` + dominant policies), per window: CI of the mean total reward."""
    per: dict[str, dict[int, list[float]]] = {}
    for a in analyses:
        groups = {"all": a["rewards"]["window_means"], **a["rewards"]["by_policy"]}
        for g, rows in groups.items():
            for r in rows:
                per.setdefault(g, {}).setdefault(int(r["window"]), []).append(float(r["total"]))
    return {
        g: [{"window": w, **mean_ci(vals)} for w, vals in sorted(ws.items())]
        for g, ws in sorted(per.items())
    }


def contrasts(
    by_rep: Mapping[str, Mapping[int, Mapping[str, float | None]]],
) -> list[dict[str, Any]]:
    """Paired differences of every cell against the first one: for each metric, the mean of
    (cell − first cell) over the replications both completed, with its 95 % t-interval. Pairs
    share the replication seed, so this removes seed-to-seed variation (common random numbers)."""
    names = list(by_rep)
    if len(names) < 2:
        return []
    base = by_rep[names[0]]
    out = []
    for name in names[1:]:
        other = by_rep[name]
        reps = sorted(set(base) & set(other))
        keys = sorted({k for r in reps for k in other[r]} & {k for r in reps for k in base[r]})
        metrics = {}
        for k in keys:
            diffs = []
            for r in reps:
                a, b = base[r].get(k), other[r].get(k)
                if a is not None and b is not None:
                    diffs.append(b - a)
            metrics[k] = mean_ci(diffs)
        out.append({"cell": name, "baseline": names[0], "pairs": len(reps), "metrics": metrics})
    return out


def aggregate_sweep(
    sweep_dir: str | Path, *, write: bool = True, refresh: bool = False
) -> dict[str, Any]:
    """Aggregate a sweep directory (module docstring); writes the JSON and Markdown files.
    With ``refresh`` every run is analysed again rather than read from its cached analysis.

    Raises :class:`SweepReadError` naming ``sweep.json`` and the key when that file is broken.
    """
    from friendsim.analysis.analyze import load_analysis

    sd = Path(sweep_dir)
    source = _record_digest(sd)  # before the record is read: never newer than what is read
    sweep = read_sweep(sd)
    _check_for_aggregate(sd / SWEEP_FILE, sweep)
    inputs = _inputs_digest(sd, sweep)  # before the runs are read, likewise
    cells_out = []
    by_rep: dict[str, dict[int, dict[str, float | None]]] = {}
    labels = labels_of_record(sweep["spec"])
    for cell in sweep["spec"]["cells"]:
        runs = [r for r in sweep["runs"] if r["cell"] == cell["name"]]
        ok = [r for r in runs if r["status"] == "completed"]
        analyses = [load_analysis(sd / r["dir"], refresh=refresh) for r in ok]
        flats = [flatten_analysis(a) for a in analyses]
        by_rep[cell["name"]] = {int(r["rep"]): f for r, f in zip(ok, flats, strict=True)}
        keys = sorted({k for f in flats for k in f})
        metrics = {k: mean_ci(f.get(k) for f in flats) for k in keys}
        cells_out.append(
            {
                "name": cell["name"],
                "label": labels[cell["name"]],
                "overrides": cell["overrides"],
                "runs": len(runs),
                "completed": len(ok),
                "run_dirs": [r["dir"] for r in ok],
                "failed": [
                    {"dir": r["dir"], "status": r["status"], "error": r.get("error")}
                    for r in runs
                    if r["status"] != "completed"
                ],
                "metrics": metrics,
                "spent_usd": spent_usd(sd, runs),
                "curves": _curves(analyses),
            }
        )
    out = {
        "kind": "sweep",
        "sweep_dir": str(sd),
        "name": sweep["spec"].get("name"),
        "status": sweep.get("status"),
        "replications": sweep["spec"]["replications"],
        "grid": sweep["spec"]["grid"],
        "seeds": sweep["spec"]["seeds"],
        "wall_seconds": sweep.get("wall_seconds"),
        "confidence": CONFIDENCE,
        "interval": "Student t, mean ± t(0.975, n-1)·sd/√n over replications",
        "cells": cells_out,
        "contrasts": [
            {**d, "label": labels[d["cell"]], "baseline_label": labels[d["baseline"]]}
            for d in contrasts(by_rep)
        ],
        "sweep_sha256": source,
        "inputs_sha256": inputs,
    }
    if write:
        _atomic_write(sd / AGGREGATE_FILE, json.dumps(out, indent=1, sort_keys=True) + "\n")
        _atomic_write(sd / AGGREGATE_TABLE, format_aggregate(out) + "\n")
    return out


def spent_usd(sweep_dir: Path, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{"total", "runs", "attempts", "unknown"}``: the model cost in USD recorded by every
    attempt at ``runs`` (any status), how many runs and attempt folders it adds up, and how many
    runs have no readable manifest in any attempt (their spend, if any, is not in ``total``).

    The attempts at the run in ``<cell>/rep<k>`` are that folder and every folder beside it named
    ``rep<k>.<something>`` holding a manifest: runs the sweep set aside (``.stale-<n>``: killed,
    interrupted, cut short by a dying worker), a Ray task's run rejected or left unpacked
    (``.rejected-<n>``, ``.incoming``), an original moved aside by ``friendsim run --resume``
    (``.interrupted``) or a resume's staging folder (``.resuming``). Each is counted once: an
    attempt whose manifest a resume of it names (``resumed_from.manifest_sha256``) is left out
    when that resume's own accounting covers it (:func:`_attempt_cost`).
    """
    total, counted, attempts, unknown = 0.0, 0, 0, 0
    for r in runs:
        found = _attempt_manifests(sweep_dir / r["dir"])
        if not found:
            unknown += 1
            continue
        covered = {
            (m.resumed_from or {}).get("manifest_sha256")
            for m in found.values()
            if _covers_earlier(m)
        }
        for digest, m in found.items():
            if digest not in covered:
                total += _attempt_cost(m)
                attempts += 1
        counted += 1
    return {"total": round(total, 6), "runs": counted, "attempts": attempts, "unknown": unknown}


def _attempt_manifests(run_dir: Path) -> dict[str, Any]:
    """``{sha256 of manifest.json: manifest}`` of ``run_dir`` and the attempt folders beside it
    (:func:`spent_usd`) whose manifest can be read."""
    from friendsim.rundir.errors import RunInputError
    from friendsim.rundir.layout import MANIFEST
    from friendsim.rundir.manifest import read_manifest

    try:
        beside = sorted(
            p for p in run_dir.parent.iterdir() if p.name.startswith(f"{run_dir.name}.")
        )
    except OSError:
        beside = []
    out: dict[str, Any] = {}
    for folder in (run_dir, *beside):
        try:
            m = read_manifest(folder)
            digest = hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
        except (RunInputError, OSError):
            continue
        out.setdefault(digest, m)
    return out


def _usage_cost(usage: Mapping[str, Any] | None) -> float:
    return float(((usage or {}).get("total") or {}).get("cost_usd") or 0.0)


def _covers_earlier(m: Any) -> bool:
    """Whether the cost of the resume ``m`` (:func:`_attempt_cost`) includes the run it resumed:
    it finished or stopped cleanly (``segments``, summed usage), or recorded the segments before
    it when it started (``resumed_from.accounting``)."""
    return m.resumed_from is not None and bool(m.segments or m.resumed_from.get("accounting"))


def _attempt_cost(m: Any) -> float:
    """What the run of manifest ``m`` and, for a resume, the segments before it spent: its
    summed ``llm_usage`` once it has ``segments``; a resume killed before that, its own usage
    plus the ``resumed_from.accounting`` it recorded at its start; any other run, its own."""
    earlier = (m.resumed_from or {}).get("accounting")
    if m.segments or not isinstance(earlier, Mapping):
        return _usage_cost(m.llm_usage)
    return _usage_cost(earlier.get("llm_usage")) + _usage_cost(m.llm_usage)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def headline_keys(agg: Mapping[str, Any]) -> list[str]:
    """The headline metrics present in ``agg`` (θ=0.05 replaced by the first θ if absent)."""
    present = {k for c in agg["cells"] for k in c["metrics"]}
    keys = []
    for k in HEADLINE:
        if k in present:
            keys.append(k)
        elif k.startswith("ties.0.05."):
            alt = [p for p in sorted(present) if p.startswith("ties.") and p.endswith(k[9:])]
            if alt and alt[0] not in keys:
                keys.append(alt[0])
    return keys


def cell_label(cell: Mapping[str, Any]) -> str:
    """What tables call an aggregate's ``cell``: its label, or its name in an aggregate
    computed before labels."""
    return str(cell.get("label") or cell["name"])


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def format_aggregate(agg: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    """A Markdown table: one row per headline metric, one column per cell (mean [95 % CI]),
    the cells headed by their labels (each label's directory listed above the table)."""
    keys = list(keys) if keys is not None else headline_keys(agg)
    cells = agg["cells"]
    lines = [
        f"sweep {agg.get('name')}: {len(cells)} cells x {agg['replications']} replications "
        f"(95 % Student-t CI over replications; n=1 gives no CI)",
        "",
        *(f"- {_md(cell_label(c))}: `{c['name']}/`" for c in cells),
        "",
        "| metric | "
        + " | ".join(f"{_md(cell_label(c))} (n={c['completed']})" for c in cells)
        + " |",
        "|---|" + "---|" * len(cells),
    ]
    for k in keys:
        lines.append(
            f"| {k} | "
            + " | ".join(format_stat(c["metrics"].get(k), of=c["completed"]) for c in cells)
            + " |"
        )
    diffs = agg.get("contrasts") or []
    if diffs:
        base = diffs[0].get("baseline_label") or diffs[0]["baseline"]
        lines += [
            "",
            f"paired difference vs {_md(base)} (same seeds), mean [95 % CI]:",
            "",
            "| metric | "
            + " | ".join(f"{_md(d.get('label') or d['cell'])} (pairs={d['pairs']})" for d in diffs)
            + " |",
            "|---|" + "---|" * len(diffs),
        ]
        for k in keys:
            lines.append(
                f"| {k} | "
                + " | ".join(format_stat(d["metrics"].get(k), of=d["pairs"]) for d in diffs)
                + " |"
            )
    return "\n".join(lines)


def _record_digest(sweep_dir: Path) -> str | None:
    """SHA-256 of the sweep's ``sweep.json`` as it is now; ``None`` when it cannot be read."""
    try:
        return hashlib.sha256((sweep_dir / SWEEP_FILE).read_bytes()).hexdigest()
    except OSError:
        return None


def _inputs_digest(sweep_dir: Path, sweep: Mapping[str, Any]) -> str:
    """SHA-256 of what an aggregate depends on beyond ``sweep.json``: this module's
    :data:`AGGREGATE_VERSION` and, per completed run, the fingerprint its cached analysis is
    checked against (the analysis version, the sizes and times of the run's input files)."""
    from friendsim.analysis.analyze import analysis_fingerprint

    runs = {
        r["dir"]: analysis_fingerprint(sweep_dir / r["dir"])
        for r in sweep["runs"]
        if r.get("status") == "completed"
    }
    key = {"aggregate_version": AGGREGATE_VERSION, "runs": runs}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def load_or_aggregate(sweep_dir: str | Path) -> dict[str, Any]:
    """``aggregate.json`` when it was computed from ``sweep.json`` as it is now (its
    ``sweep_sha256``) and from the same runs' analyses by the same code (its
    ``inputs_sha256``: the analysis and aggregate versions, the runs' input files), else a
    fresh aggregate.

    Not by the files' times: a reader that aggregated a sweep while it ran can write its
    aggregate after the sweep's final one, newer than the final record it does not describe.
    """
    sd = Path(sweep_dir)
    agg = sd / AGGREGATE_FILE
    current = _record_digest(sd)
    if agg.is_file() and current is not None:
        try:
            data = json.loads(agg.read_text(encoding="utf-8"))
            if (
                isinstance(data, dict)
                and data.get("kind") == "sweep"
                and data.get("sweep_sha256") == current
                and data.get("inputs_sha256") == _inputs_digest(sd, read_sweep(sd))
            ):
                return data
        except (OSError, ValueError):
            pass
    return aggregate_sweep(sd)
