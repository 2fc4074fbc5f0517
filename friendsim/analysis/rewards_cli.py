"""Re-score a stored run: per-window, per-agent reward components and totals as plain dicts.

Used by ``friendsim analyze RUN_DIR --json``. The events of a run are ``<run_dir>/events.db``;
``<run_dir>/manifest.json`` may hold ``"lambdas"`` (agent -> {component: weight}) and
``"rewards"`` (:meth:`RewardParams.to_dict`). Missing keys mean uniform λ and default params.
Synchronous on purpose (a CLI helper, never called from the event loop).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from friendsim.analysis.rewards import AgentScores, RewardParams, score_log
from friendsim.analysis.rewards_params import COMPONENTS, RewardConfigError
from friendsim.analysis.sentiment import SentimentModel
from friendsim.platform.events import Event, event_from_row

EVENTS_DB = "events.db"
MANIFEST = "manifest.json"


def resolve_run(path: str | Path) -> tuple[Path, Path | None]:
    """``(events_db, manifest_or_None)`` for a run directory or an events database path."""
    p = Path(path)
    if p.is_dir():
        db = p / EVENTS_DB
        manifest = p / MANIFEST
    else:
        db = p
        manifest = p.parent / MANIFEST
    if not db.is_file():
        raise FileNotFoundError(f"no events database at {db} (expected <run_dir>/{EVENTS_DB})")
    return db, manifest if manifest.is_file() else None


def load_reward_config(
    manifest: Path | None,
) -> tuple[RewardParams, dict[str, dict[str, float]]]:
    """Reward params and λ from a manifest (defaults when absent)."""
    if manifest is None:
        return RewardParams(), {}
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RewardConfigError(f"{manifest}: not valid JSON: {exc}") from exc
    if not isinstance(data, Mapping):
        raise RewardConfigError(f"{manifest}: top level must be a JSON object")
    try:
        params = RewardParams.from_dict(data.get("rewards") or {})
    except RewardConfigError as exc:
        raise RewardConfigError(f"{manifest} key 'rewards': {exc}") from exc
    lambdas = data.get("lambdas") or {}
    if not isinstance(lambdas, Mapping) or not all(
        isinstance(v, Mapping) for v in lambdas.values()
    ):
        raise RewardConfigError(
            f"{manifest} key 'lambdas': must map agent -> {{component: weight}}"
        )
    return params, {str(a): dict(w) for a, w in lambdas.items()}


def iter_events(db: Path, *, page: int = 10_000) -> Iterator[Event]:
    """Decode the ``events`` table of ``db`` in seq order.

    Reads a snapshot copy (:func:`friendsim.rundir.log.snapshot`) in a temporary folder: opening
    a WAL database in place, even read-only, creates ``-wal``/``-shm`` files beside it, and a
    reader must leave the run byte-identical (a live run is read as of the copy)."""
    import tempfile

    from friendsim.rundir.log import snapshot

    with tempfile.TemporaryDirectory(prefix="friendsim-read-") as tmp:
        copy = snapshot(Path(db), Path(tmp))
        con = sqlite3.connect(copy)
        try:
            cur = con.execute("SELECT seq, t, kind, actor, payload FROM events ORDER BY seq")
            while rows := cur.fetchmany(page):
                for row in rows:
                    yield event_from_row(*row)
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise ValueError(f"{db}: cannot read the events table: {exc}") from exc
        finally:
            con.close()


def score_row(s: AgentScores) -> dict[str, Any]:
    row: dict[str, Any] = {"window": s.window, "agent": s.agent}
    row.update({c: s.components[c] for c in COMPONENTS})
    row["total"] = s.total
    return row


def rewards_table(
    run_dir_or_db_path: str | Path,
    *,
    sentiment: SentimentModel | None = None,
    events: Iterable[Event] | None = None,
) -> list[dict[str, Any]]:
    """One dict per (window, agent): ``window, agent, SOC, INF, PRE, COORD, EMO, total``.

    ``events``, when given, are the run's already decoded events (so a caller that needs them
    anyway reads the log once); otherwise they are read from the run's ``events.db``.
    """
    db, manifest = resolve_run(run_dir_or_db_path)
    params, lambdas = load_reward_config(manifest)
    source = iter_events(db) if events is None else events
    scores = score_log(source, params=params, lambdas=lambdas, sentiment=sentiment)
    return [score_row(s) for s in scores]


def window_means(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean of every component and the total over agents, per window."""
    by_window: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_window.setdefault(r["window"], []).append(r)
    out = []
    for w in sorted(by_window):
        rs = by_window[w]
        mean = {k: sum(r[k] for r in rs) / len(rs) for k in (*COMPONENTS, "total")}
        out.append({"window": w, "agents": len(rs), **mean})
    return out
