"""One JSON-ready analysis of a run directory: the numbers behind ``analyze`` and ``report``.

:func:`analyze_run` reads ``<run_dir>/events.db``, ``manifest.json``, (when present)
``personas.jsonl`` and, for text-based tie evidence, ``tie_scores.json`` (written by the scoring
step above analysis, :mod:`friendsim.runtime.tie_scoring`) and returns a dict with these keys (all values strict JSON: NaN → ``None``):

* ``kind`` (``"run"``), ``analysis_version``, ``run_dir``;
* ``manifest``: a short summary of the run (name, status, mode, policy, seed, agents, windows,
  coach, feed ranker, tie evidence, models used, wall time, totals);
* ``agents``: agent id → ``{"dominant": policy, "attributes": {attribute: group}}``;
* ``rewards``: ``components``, ``per_agent`` (one row per window and agent from
  :func:`friendsim.analysis.rewards_cli.rewards_table`), ``window_means`` (over all agents) and
  ``by_policy`` (policy → one row per window: mean of every component and the total over the
  agents whose dominant policy it is, plus their count and the standard deviation of the total);
* ``network``: :func:`friendsim.analysis.summary.network_summary` with the run's tie
  parameters, thresholds, sentiment model and seed;
* ``reference``: per threshold θ, each reference metric of the final tie network flagged
  inside/outside the range of the eight real friendship networks, the homophily flags, and the
  reference rows (the eight networks, their mean and Zachary's karate club recomputed live);
* ``coach``: tip adherence from :func:`friendsim.analysis.coaching.tip_adherence` (every tip,
  whether the agent followed it in the next window, rates by action, window and agent);
* ``usage``: the LLM ledger of the manifest (``total`` with tokens and ``cost_usd``, ``by_key``
  rows, ``unpriced_models``);
* ``interventions``, ``moderation``, ``surveys``, ``cascades`` — only for a run that used
  research instruments (:func:`instrument_sections`);
* ``notes``: plain-language caveats (e.g. how many text-based tie scores were invalid).

The analysis is a pure function of the files; :func:`load_analysis` caches it keyed by the size
and modification time of the inputs, so a sweep and a report do not recompute it. The cache lives
*outside* the run (reading a run never writes into it): ``$FRIENDSIM_CACHE_DIR/analysis/``, else
``$XDG_CACHE_HOME/friendsim/analysis/``, else ``~/.cache/friendsim/analysis/``, one file per run
directory (:func:`analysis_cache_path`). A sweep, which writes its replications, keeps each one's
cache beside it as ``analysis.json``, read when the cache outside holds none (an analysis made
again, ``--refresh``, goes there and wins). Blocking (file I/O, CPU); call it from a thread in
async code.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from friendsim._heap import paced_collection
from friendsim.analysis.coaching import tip_adherence
from friendsim.analysis.graphs import agents_and_attributes
from friendsim.analysis.reference import REFERENCE_METRICS, load_reference, side_by_side
from friendsim.analysis.rewards_cli import (
    iter_events,
    malformed_events_named,
    rewards_table,
    window_means,
)
from friendsim.analysis.rewards_params import COMPONENTS
from friendsim.analysis.sentiment import get_sentiment
from friendsim.analysis.summary import json_ready, network_summary
from friendsim.analysis.tie_evidence import (
    TIE_SCORES_FILE,
    LogStamp,
    TextEvidence,
    TieScoresError,
    log_stamp,
    read_tie_scores,
)
from friendsim.analysis.ties import DEFAULT_THETAS, TieParams, TieParamsError
from friendsim.platform.events import ActionFailed, Event
from friendsim.rundir.layout import EVENTS_DB, MANIFEST, PERSONAS
from friendsim.vocabulary import LOSSES

if TYPE_CHECKING:
    from friendsim.rundir.manifest import Manifest

log = structlog.get_logger(__name__)

ANALYSIS_VERSION = 7

NULL_MODEL_NOTE = (
    "null-model run: the agents used the baseline policy (seeded, persona-driven choices, no "
    "language model). Its rewards and tie network are a reference to compare LLM runs with, "
    "not a finding about LLM agents."
)
ANALYSIS_FILE = "analysis.json"
MIXED = "mixed"
"""Dominant-policy label of an agent whose reward mix has no single largest weight."""


class RunDirectoryError(ValueError):
    """``path`` is not a readable run directory; the message names the file and the problem."""


def run_manifest(run_dir: Path) -> Manifest | None:
    """The run's typed manifest, read by the run directory's one reader
    (:func:`friendsim.rundir.manifest.find_manifest`: old versions upgraded, newer ones
    refused); ``None`` when the directory holds none, :class:`RunDirectoryError` naming the
    file and the key when it is broken."""
    from friendsim.rundir.errors import RunInputError
    from friendsim.rundir.manifest import find_manifest

    try:
        return find_manifest(run_dir)
    except (OSError, RunInputError) as exc:
        raise RunDirectoryError(str(exc)) from None


def given(manifest: Manifest | None, key: str, default: Any = None) -> Any:
    """``manifest``'s ``key`` when the file holds it, else ``default``: a field the typed view
    fills with its default when absent (``status``, ``mode``, ``name``) must not stand for a
    fact the file does not state."""
    if manifest is None or key not in manifest.model_fields_set:
        return default
    return getattr(manifest, key)


def _failures_note(events: Sequence[Event]) -> str | None:
    """What failed without stopping the run, by stage and reason (``action_failed`` events):
    invalid model answers and refused actions leave a run ``completed`` (the model's
    behaviour), so the figures' gaps need saying; ``None`` when nothing failed."""
    counts = Counter(f"{e.stage}/{e.reason}" for e in events if isinstance(e, ActionFailed))
    if not counts:
        return None
    n = sum(counts.values())
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{n} recorded failure{'s' if n != 1 else ''} (action_failed, by stage/reason): {parts}"


def _status_note(manifest: Manifest | None) -> str | None:
    """A caveat for a run that is not ``completed``: what it lost, or where it stopped, since the
    figures describe what its log holds (``None`` for a completed run or no manifest)."""
    status = given(manifest, "status")
    if manifest is None or status in (None, "completed"):
        return None
    totals = manifest.totals
    if status == "degraded":
        lost = [f"{totals[x.name]} {x.what}" for x in LOSSES if totals.get(x.name)]
        return "degraded run: every window ran, but " + ("; ".join(lost) or "something was lost")
    if status == "running":
        return (
            "the run was still running, or was killed, when this was read: the figures cover "
            "what its log held"
        )
    why = manifest.stop_reason
    n = manifest.windows
    when = (
        f"after {n} complete window{'' if n == 1 else 's'}"
        if n
        else "before its first window completed"
    )
    return (
        f"{status} run{f' ({why})' if why else ''}: it stopped {when}; the figures cover what "
        "its log holds"
    )


def _persona_attributes(run_dir: Path) -> dict[str, dict[str, str]]:
    """``{agent: {attribute: group}}`` from ``personas.jsonl`` (``{}`` when absent)."""
    path = run_dir / PERSONAS
    if not path.is_file():
        return {}
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunDirectoryError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data.count(b"\n", 0, exc.start) + 1
        raise RunDirectoryError(f"{path}, line {lineno}: not UTF-8 text ({exc.reason})") from None
    out: dict[str, dict[str, str]] = {}
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RunDirectoryError(f"{path}, line {lineno}: not valid JSON: {exc}") from exc
        except RecursionError:
            raise RunDirectoryError(
                f"{path}, line {lineno}: not valid JSON: nested too deeply"
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise RunDirectoryError(f"{path}, line {lineno}: expected an object with a string 'id'")
        attrs = row.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise RunDirectoryError(f"{path}, line {lineno}: 'attributes' must be an object")
        groups = {str(k): str(v) for k, v in attrs.items() if v is not None}
        if isinstance(row.get("dominant"), str):
            groups.setdefault("dominant", row["dominant"])
        out[row["id"]] = groups
    return out


def dominant_policy(weights: Mapping[str, float] | None) -> str:
    """The component with the largest λ, or :data:`MIXED` when none is strictly largest."""
    if not weights:
        return MIXED
    ranked = sorted(((float(weights.get(c, 0.0)), c) for c in COMPONENTS), reverse=True)
    if len(ranked) > 1 and math.isclose(ranked[0][0], ranked[1][0]):
        return MIXED
    return ranked[0][1]


def tie_params_from_manifest(
    manifest: Manifest | None,
) -> tuple[TieParams, tuple[float, ...]]:
    """:class:`TieParams` and thresholds from the manifest's ``ties`` block (defaults if absent,
    or with no manifest).

    The runtime's ``evidence`` key maps to ``TieParams.method``.
    """
    ties: Mapping[str, Any] = manifest.ties if manifest is not None else {}
    fields = {"xi", "delta_max", "half_life", "beta_rec", "eps"}
    kwargs: dict[str, Any] = {k: ties[k] for k in fields if k in ties}
    method = ties.get("evidence", ties.get("method", "signals"))
    try:
        params = TieParams(**kwargs, method=method)
    except (TieParamsError, TypeError) as exc:
        raise RunDirectoryError(f"{MANIFEST} key 'ties': {exc}") from exc
    thetas = tuple(float(x) for x in ties.get("thresholds", DEFAULT_THETAS))
    return params, thetas or DEFAULT_THETAS


def _manifest_summary(manifest: Manifest | None, n_agents: int, windows: int) -> dict[str, Any]:
    cfg: Mapping[str, Any] = given(manifest, "config") or {}
    ex = cfg.get("experiment") or {}
    coach = cfg.get("coach") or {}
    models: dict[str, int] = {}
    for spec in (given(manifest, "models") or {}).values():
        models[str(spec)] = models.get(str(spec), 0) + 1
    policy = given(manifest, "policy", (cfg.get("agents") or {}).get("policy"))
    return {
        "name": given(manifest, "name", ex.get("name")),
        "status": given(manifest, "status", "unknown"),
        "mode": given(manifest, "mode", ex.get("mode")),
        "policy": policy,
        "null_model": policy == "baseline",
        "seed": (given(manifest, "seeds") or {}).get("seed", ex.get("seed")),
        "theme": ex.get("theme"),
        "agents": n_agents,
        "windows": windows,
        "rounds": ex.get("rounds"),
        "n_actions": ex.get("n_actions"),
        "coach": {"enabled": coach.get("enabled"), "kind": coach.get("kind")},
        "feed": (cfg.get("feed") or {}).get("ranker"),
        "tie_evidence": (given(manifest, "ties") or {}).get("evidence"),
        "models": models,
        "coach_model": given(manifest, "coach_model"),
        "friendsim_version": given(manifest, "friendsim_version"),
        "wall_seconds": given(manifest, "wall_seconds"),
        "totals": given(manifest, "totals") or {},
    }


def rewards_by_policy(
    rows: Sequence[Mapping[str, Any]], dominant: Mapping[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """Per dominant policy, one row per window: mean of each component and the total over the
    policy's agents, their count, and the (sample) standard deviation of the total."""
    groups: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    for r in rows:
        pol = dominant.get(r["agent"], MIXED)
        groups.setdefault(pol, {}).setdefault(int(r["window"]), []).append(r)
    out: dict[str, list[dict[str, Any]]] = {}
    for pol in sorted(groups):
        series = []
        for w, rs in sorted(groups[pol].items()):
            totals = [float(r["total"]) for r in rs]
            row: dict[str, Any] = {"window": w, "agents": len(rs)}
            row.update({k: sum(float(r[k]) for r in rs) / len(rs) for k in (*COMPONENTS, "total")})
            row["total_sd"] = statistics.stdev(totals) if len(totals) > 1 else None
            series.append(row)
        out[pol] = series
    return out


def _reference_block(network: Mapping[str, Any], seed: int) -> dict[str, Any]:
    ref = load_reference()
    finals = network["ties"]["final"]
    return {
        "metrics": list(REFERENCE_METRICS),
        "ranges": {
            k: {"min": ref.ranges[k][0], "max": ref.ranges[k][1], "mean": ref.mean[k]}
            for k in REFERENCE_METRICS
        },
        "by_theta": {th: m.get("reference", {}) for th, m in finals.items()},
        "homophily": {th: m.get("homophily_reference", {}) for th, m in finals.items()},
        "inside_count": {
            th: sum(1 for v in m.get("reference", {}).values() if v.get("inside"))
            for th, m in finals.items()
        },
        "table": side_by_side(
            {f"run ties θ={th}": m for th, m in finals.items()}, include_live_karate=True, seed=seed
        ),
    }


def stored_text_evidence(
    rd: Path, params: TieParams, *, stamp: LogStamp | None = None
) -> TextEvidence:
    """The stored text-based tie evidence of ``rd``, checked against its log and parameters
    (``stamp``: the log's :class:`LogStamp` when the caller has it, else computed here);
    :class:`RunDirectoryError` when it is missing or stale."""
    try:
        stored = read_tie_scores(rd)
    except TieScoresError as exc:
        raise RunDirectoryError(str(exc)) from exc
    hint = f"`friendsim analyze {rd}` scores it"
    if stored is None:
        raise RunDirectoryError(
            f"{rd}: text-based tie evidence is not scored yet (no {TIE_SCORES_FILE}); {hint}"
        )
    if not stored.matches(stamp or log_stamp(rd / EVENTS_DB), params):
        raise RunDirectoryError(
            f"{rd / TIE_SCORES_FILE}: scored for another log or other tie parameters; {hint}"
        )
    return stored.evidence


def analyze_run(run_dir: str | Path) -> dict[str, Any]:
    """The full analysis of one run directory (see the module docstring for the keys).

    A run configured with text-based tie evidence (``[ties] evidence = "text"``) reads its
    peers' scores from ``tie_scores.json`` (:mod:`friendsim.analysis.tie_evidence`), written by
    the scoring step :func:`friendsim.runtime.tie_scoring.score_run_ties`; scores that are
    missing or belong to another log or other tie parameters are a :class:`RunDirectoryError`,
    as is an event that cannot be decoded or breaks the window order (the message names the log
    and the seq). Full garbage collections are held off meanwhile (:mod:`friendsim._heap`).
    """
    from friendsim.analysis.rewards import RewardLogError
    from friendsim.platform.events import EventDecodeError

    rd = Path(run_dir)
    try:
        with paced_collection(), malformed_events_named(rd / EVENTS_DB):
            return _analyze_run(rd)
    except (EventDecodeError, RewardLogError) as exc:  # they name the seq, not the log
        raise RunDirectoryError(f"{rd / EVENTS_DB}: {exc}") from exc


def _analyze_run(rd: Path) -> dict[str, Any]:
    if not (rd / EVENTS_DB).is_file():
        raise RunDirectoryError(f"{rd}: not a run directory (no {EVENTS_DB})")
    manifest = run_manifest(rd)
    notes: list[str] = []
    if manifest is None:
        notes.append(f"no {MANIFEST}: default reward and tie parameters, uniform reward mixes")
    if given(manifest, "policy") == "baseline":
        notes.append(NULL_MODEL_NOTE)
    if (status_note := _status_note(manifest)) is not None:
        notes.append(status_note)
    seed = int((given(manifest, "seeds") or {}).get("seed", 0) or 0)
    params, thetas = tie_params_from_manifest(manifest)
    sentiment_name = str((given(manifest, "rewards") or {}).get("sentiment", "vader"))

    events = list(iter_events(rd / EVENTS_DB))
    if (failures_note := _failures_note(events)) is not None:
        notes.append(failures_note)
    rows = rewards_table(rd, events=events, manifest=manifest)
    text = None
    if params.method == "text":
        text = stored_text_evidence(rd, params)
        notes.append(
            f"text-based tie evidence: {text.calls} LLM scoring calls, {text.invalid} invalid "
            f"answers and {text.missing} unscored peers (counted as 0)"
        )
    network = network_summary(
        events,
        attributes={},
        params=params,
        thetas=thetas,
        sentiment=get_sentiment(sentiment_name),
        text_evidence=text.per_window if text is not None else None,
        seed=seed,
    )
    persona_attrs = _persona_attributes(rd)
    lambdas: Mapping[str, Mapping[str, float]] = given(manifest, "lambdas") or {}
    dominant_map: Mapping[str, str] = given(manifest, "dominant") or {}
    agent_ids = sorted({r["agent"] for r in rows} | set(persona_attrs) | set(lambdas))
    log_agents, recorded = agents_and_attributes(events)
    agent_ids = sorted(set(agent_ids) | set(log_agents))
    agents: dict[str, dict[str, Any]] = {}
    for a in agent_ids:
        attrs = {name: groups[a] for name, groups in recorded.items() if a in groups}
        attrs.update(persona_attrs.get(a, {}))
        dom = dominant_map.get(a) or attrs.get("dominant") or dominant_policy(lambdas.get(a))
        agents[a] = {"dominant": str(dom), "attributes": attrs}
    dominant = {a: v["dominant"] for a, v in agents.items()}
    windows = sorted({int(r["window"]) for r in rows})
    usage: Mapping[str, Any] = given(manifest, "llm_usage") or {}
    out = {
        "kind": "run",
        "analysis_version": ANALYSIS_VERSION,
        "run_dir": str(rd),
        "manifest": _manifest_summary(manifest, len(agent_ids), len(windows)),
        "agents": agents,
        "rewards": {
            "components": list(COMPONENTS),
            "windows": windows,
            "per_agent": rows,
            "window_means": window_means(rows),
            "by_policy": rewards_by_policy(rows, dominant),
        },
        "network": network,
        "reference": _reference_block(network, seed),
        "coach": tip_adherence(events),
        "usage": {
            "total": usage.get("total") or {},
            "by_key": usage.get("by_key") or [],
            "unpriced_models": usage.get("unpriced_models") or [],
            "segments": len(given(manifest, "segments") or ()) or 1,
        },
        "notes": notes,
    }
    out.update(instrument_sections(events))
    return json_ready(out)


def instrument_sections(events: Sequence[Any]) -> dict[str, Any]:
    """The analysis keys of the research instruments a run used (none when it used none):
    ``interventions``, ``moderation``, ``surveys`` and ``cascades`` (cascades only for runs
    with interventions or moderation, where items have truth labels to compare)."""
    from friendsim.analysis.cascades import cascades, summarise
    from friendsim.analysis.moderation import interventions_table, moderation_over_time
    from friendsim.analysis.surveys import survey_trends

    out: dict[str, Any] = {}
    if rows := interventions_table(events):
        out["interventions"] = rows
    if mod := moderation_over_time(events):
        out["moderation"] = mod
    if surveys := survey_trends(events):
        out["surveys"] = surveys
    if "interventions" in out or "moderation" in out:
        out["cascades"] = summarise(cascades(events))
    return out


def analysis_fingerprint(run_dir: Path) -> dict[str, Any]:
    """What a cached analysis of ``run_dir`` is checked against: the analysis version and the
    size and time of each input file (log, manifest, personas, tie scores). A sweep's
    aggregate keys its own cache on its runs' fingerprints too."""
    fp: dict[str, Any] = {"analysis_version": ANALYSIS_VERSION}
    for name in (EVENTS_DB, MANIFEST, PERSONAS, TIE_SCORES_FILE):
        p = run_dir / name
        if p.is_file():
            st = p.stat()
            fp[name] = [st.st_size, st.st_mtime_ns]
    return fp


def analysis_cache_path(run_dir: str | Path) -> Path:
    """Where :func:`load_analysis` caches the analysis of ``run_dir`` (see the module docstring)."""
    import hashlib

    root = os.environ.get("FRIENDSIM_CACHE_DIR")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "friendsim"
    key = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:32]
    return base / "analysis" / f"{key}.json"


def _read_cache(path: Path, fingerprint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The analysis cached in ``path`` when it was made from inputs with ``fingerprint``."""
    if not path.is_file():
        return None
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if isinstance(cached, dict) and cached.get("fingerprint") == fingerprint:
        found = cached.get("analysis")
        return found if isinstance(found, dict) else None
    return None


def json_bytes(value: Any) -> bytes:
    """``value`` as key-sorted UTF-8 JSON, through orjson (a 10,000-agent analysis is tens of
    megabytes: 0.1 s, against 0.7 s with the stdlib); what orjson refuses (integers beyond 64
    bits, keys that are not strings) goes through the stdlib. The same JSON value either way,
    read back by ``json.loads``; NaN and infinities are written as ``null`` (strict JSON)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(json_ready(value), sort_keys=True, allow_nan=False).encode("utf-8")


def load_analysis(
    run_dir: str | Path, *, refresh: bool = False, cache: Path | None = None
) -> dict[str, Any]:
    """:func:`analyze_run`, cached (recomputed when the inputs or the analysis version changed,
    or with ``refresh``) in ``cache``, by default :func:`analysis_cache_path` -- never inside the
    run. A sweep replication's own ``analysis.json`` is read when it is current and the default
    cache holds none (reading it changes nothing): an analysis made again with ``refresh``
    lands in the default cache and is the one read from then on, not the replication's older
    one. An unwritable cache is not an error."""
    rd = Path(run_dir)
    fp = analysis_fingerprint(rd)
    if not refresh:
        for path in (
            (cache,) if cache is not None else (analysis_cache_path(rd), rd / ANALYSIS_FILE)
        ):
            found = _read_cache(path, fp)
            if found is not None:
                return found
    cache = cache if cache is not None else analysis_cache_path(rd)
    result = analyze_run(rd)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(json_bytes({"fingerprint": fp, "analysis": result}))
        os.replace(tmp, cache)
    except OSError as exc:
        log.warning("analysis_cache_not_written", path=str(cache), error=str(exc))
    return result
