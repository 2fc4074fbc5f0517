"""Stored text-based tie evidence: the data file ``<run_dir>/tie_scores.json``.

With ``[ties] evidence = "text"`` a tie's evidence e for window w is an LLM's 0–5 score of the
peer, divided by 5. Asking the model is a step *above* analysis
(:mod:`friendsim.runtime.tie_scoring`, run by ``friendsim analyze``, ``friendsim report`` and
every sweep replication); its results are stored here as data, and analysis only reads them, so
analysis stays a pure function of the run directory's files.

The file is one JSON object (written atomically, keys sorted)::

    {
      "format": 1,
      "log": {"events": 20663, "sha256": "<hex>"},   # the log the scores were computed from
      "params": {...},                                 # TieParams.to_dict() in force
      "model": "openai:gpt-4o-mini",                   # the scoring model, for the record
      "calls": 120, "invalid": 0, "missing": 2,        # LLM calls, invalid / missing peer scores
      "windows": {"1": [["a", "b", 0.8], ...], ...}    # per window: [viewer, peer, e] rows
    }

``log.sha256`` is the sha256 of the ``events`` rows (``seq``, ``t`` as ``float.hex``, ``kind``,
``actor``, ``payload``; one tab-separated line each): scores of another log (a resumed run that
grew) or of other tie parameters are *stale* and are not used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from friendsim.analysis.ties import Pair, TieParams
from friendsim.rundir.layout import TIE_SCORES as TIE_SCORES_FILE

FORMAT = 1


class TieScoresError(ValueError):
    """``tie_scores.json`` is unreadable or malformed; the message names the file and the key."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TextEvidence:
    """Evidence for ``TieParams(method="text")``: {window: {(v, u): e}} and failure counts."""

    per_window: Mapping[int, Mapping[Pair, float]] = field(default_factory=dict)
    invalid: int = 0
    missing: int = 0
    calls: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class LogStamp:
    """Which log some derived data was computed from: its event count and rows' sha256."""

    events: int
    sha256: str


def log_stamp(events_db: Path) -> LogStamp:
    """The :class:`LogStamp` of ``events_db`` (one pass over the rows of a snapshot copy: a WAL
    database opened in place, even read-only, gets ``-wal``/``-shm`` files beside it, and a
    reader leaves the run as it found it)."""
    from friendsim.rundir.log import snapshot_copy

    with snapshot_copy(Path(events_db)) as copy:
        return copy_stamp(copy)


def copy_stamp(copy: Path) -> LogStamp:
    """The :class:`LogStamp` of ``copy``, a database the caller already reads as a snapshot
    copy (it is opened in place)."""
    h = hashlib.sha256()
    n = 0
    conn = sqlite3.connect(copy)
    try:
        cur = conn.execute("SELECT seq, t, kind, actor, payload FROM events ORDER BY seq")
        while rows := cur.fetchmany(10_000):
            n += len(rows)
            h.update(
                "".join(
                    f"{s}\t{float(t).hex()}\t{k}\t{'' if a is None else a}\t{p}\n"
                    for s, t, k, a, p in rows
                ).encode()
            )
    finally:
        conn.close()
    return LogStamp(events=n, sha256=h.hexdigest())


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredTieScores:
    """The content of ``tie_scores.json``."""

    log: LogStamp
    params: Mapping[str, Any]
    model: str
    evidence: TextEvidence

    def matches(self, log: LogStamp, params: TieParams) -> bool:
        """Whether these scores belong to ``log`` under ``params`` (else they are stale)."""
        return self.log == log and dict(self.params) == _json_params(params)


def _json_params(params: TieParams) -> dict[str, Any]:
    """``params.to_dict()`` as it reads back from JSON (tuples become lists)."""
    out: dict[str, Any] = json.loads(json.dumps(params.to_dict()))
    return out


def stored_tie_scores(
    *, log: LogStamp, params: TieParams, model: str, evidence: TextEvidence
) -> StoredTieScores:
    """The record to store for ``evidence`` computed from ``log`` under ``params``."""
    return StoredTieScores(log=log, params=_json_params(params), model=model, evidence=evidence)


def write_tie_scores(run_dir: Path, scores: StoredTieScores) -> Path:
    """Write ``<run_dir>/tie_scores.json`` atomically; returns its path."""
    ev = scores.evidence
    body = {
        "format": FORMAT,
        "log": {"events": scores.log.events, "sha256": scores.log.sha256},
        "params": dict(scores.params),
        "model": scores.model,
        "calls": ev.calls,
        "invalid": ev.invalid,
        "missing": ev.missing,
        "windows": {
            str(w): [[v, u, e] for (v, u), e in sorted(pairs.items())]
            for w, pairs in sorted(ev.per_window.items())
        },
    }
    path = run_dir / TIE_SCORES_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_tie_scores(run_dir: Path) -> StoredTieScores | None:
    """The stored scores of ``run_dir`` (``None`` when the file is absent).

    Raises :class:`TieScoresError` naming the file and the problem when it is malformed; the
    file is data from disk, so every field is checked.
    """
    path = run_dir / TIE_SCORES_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise TieScoresError(f"{path}: cannot read it: {exc}") from exc
    try:
        return _parse(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise TieScoresError(f"{path}: malformed: {exc}") from exc


def _count(data: Mapping[str, Any], key: str) -> int:
    v = data[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError(f"'{key}' must be a non-negative integer, got {v!r}")
    return v


def _parse(data: Any) -> StoredTieScores:
    if not isinstance(data, dict):
        raise ValueError("top level must be a JSON object")
    if data.get("format") != FORMAT:
        raise ValueError(f"'format' is {data.get('format')!r}, this friendsim reads {FORMAT}")
    log = data["log"]
    if not isinstance(log, dict) or not isinstance(log.get("sha256"), str):
        raise ValueError("'log' must be an object with a string 'sha256'")
    params = data["params"]
    if not isinstance(params, dict):
        raise ValueError("'params' must be an object")
    windows = data["windows"]
    if not isinstance(windows, dict):
        raise ValueError("'windows' must be an object")
    per_window: dict[int, dict[Pair, float]] = {}
    for w, rows in windows.items():
        pairs: dict[Pair, float] = {}
        for row in rows:
            v, u, e = row
            if not (isinstance(v, str) and isinstance(u, str) and isinstance(e, int | float)):
                raise ValueError(f"window {w}: row {row!r} is not [viewer, peer, evidence]")
            if isinstance(e, bool) or not math.isfinite(e) or not 0.0 <= e <= 1.0:
                raise ValueError(f"window {w}: evidence {e!r} is not in [0, 1]")
            pairs[(v, u)] = float(e)
        per_window[int(w)] = pairs
    return StoredTieScores(
        log=LogStamp(events=_count(log, "events"), sha256=log["sha256"]),
        params=params,
        model=str(data["model"]),
        evidence=TextEvidence(
            per_window=per_window,
            invalid=_count(data, "invalid"),
            missing=_count(data, "missing"),
            calls=_count(data, "calls"),
        ),
    )
