"""Re-score a stored run: per-window, per-agent reward components and totals as plain dicts.

Used by ``friendsim analyze RUN_DIR --json``. The events of a run are ``<run_dir>/events.db``;
its manifest (read by :func:`friendsim.rundir.manifest.find_manifest`) may hold ``lambdas``
(agent -> {component: weight}) and ``rewards`` (:meth:`RewardParams.to_dict`). Missing keys, or
no manifest, mean uniform λ and default params.
Synchronous on purpose (a CLI helper, never called from the event loop).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from friendsim.analysis.rewards import AgentScores, RewardParams, score_log
from friendsim.analysis.rewards_params import COMPONENTS, RewardConfigError
from friendsim.analysis.sentiment import SentimentModel
from friendsim.platform.events import (
    Event,
    EventDecodeError,
    checked_event_from_row,
    event_from_row,
)
from friendsim.rundir.layout import EVENTS_DB, MANIFEST

if TYPE_CHECKING:
    from friendsim.rundir.manifest import Manifest


def resolve_run(path: str | Path) -> tuple[Path, Path]:
    """``(events_db, run_dir)`` for a run directory or an events database path."""
    p = Path(path)
    db = p / EVENTS_DB if p.is_dir() else p
    if not db.is_file():
        raise FileNotFoundError(f"no events database at {db} (expected <run_dir>/{EVENTS_DB})")
    return db, db.parent


def load_reward_config(
    manifest: Manifest | None, *, label: str | Path = MANIFEST
) -> tuple[RewardParams, dict[str, dict[str, float]]]:
    """Reward params and λ from a run's manifest (defaults with none); ``label`` names the
    manifest in errors."""
    if manifest is None:
        return RewardParams(), {}
    try:
        params = RewardParams.from_dict(manifest.rewards)
    except RewardConfigError as exc:
        raise RewardConfigError(f"{label} key 'rewards': {exc}") from exc
    return params, {a: dict(w) for a, w in manifest.lambdas.items()}


def iter_events(
    db: Path, *, page: int = 10_000, snapshot: bool = True, label: str | Path | None = None
) -> Iterator[Event]:
    """Decode the ``events`` table of ``db`` in seq order.

    Reads a snapshot copy (:func:`friendsim.rundir.log.snapshot`) in a temporary folder: opening
    a WAL database in place, even read-only, creates ``-wal``/``-shm`` files beside it, and a
    reader must leave the run byte-identical (a live run is read as of the copy).
    ``snapshot=False`` reads ``db`` itself: for a caller whose ``db`` already is such a copy, and
    which passes the log the user named as ``label`` (default ``db``) for errors to name."""
    from friendsim.rundir.log import snapshot_copy

    where = Path(label) if label is not None else Path(db)
    if not snapshot:
        yield from _decode(where, db, page=page)
        return
    with snapshot_copy(Path(db)) as copy:
        yield from _decode(where, copy, page=page)


def _decode(db: Path, copy: Path, *, page: int) -> Iterator[Event]:
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


class MalformedLogError(ValueError):
    """An analysis failed on a log holding an event that ``friendsim log import`` and ``log
    verify`` refuse (a payload field of the wrong JSON type); names the log, seq and field."""


_SLIPS = (TypeError, ValueError, KeyError, AttributeError, IndexError)
"""The errors Python raises when a value is of an unexpected type (exactly these: friendsim's
own errors, their subclasses, already say what is wrong)."""


@contextlib.contextmanager
def malformed_events_named(db: Path, *, label: str | Path | None = None) -> Iterator[None]:
    """Run an analysis of the log ``db`` (``label``: the log the user named, default ``db``).

    The analyses decode events without checking their fields' types (:func:`event_from_row`,
    on the hot path: they trust a log that a run wrote, or that ``friendsim log import`` or
    ``log verify`` passed), so a log from elsewhere with a mistyped field fails somewhere inside
    with a bare Python error. When the block fails so, the log is read again with every field
    checked (:func:`~friendsim.platform.events.checked_event_from_row`) and its first malformed
    event is raised as :class:`MalformedLogError`; a log without one re-raises the failure as
    it was. A :class:`~friendsim.analysis.rewards.RewardLogError` (the windows do not nest) is
    checked the same way, since a mistyped window number (``"1"``) breaks the nesting too: then
    the field is named, not the nesting. Costs nothing when the analysis succeeds."""
    from friendsim.analysis.rewards import RewardLogError

    try:
        yield
    except Exception as exc:
        if type(exc) not in _SLIPS and not isinstance(exc, RewardLogError):
            raise
        problem = first_malformed_event(db)
        if problem is None:
            raise
        raise MalformedLogError(
            f"{label or db}: {problem} (`friendsim log verify` checks a log friendsim did not "
            "write)"
        ) from exc


def first_malformed_event(db: Path) -> str | None:
    """The problem of the first event of ``db`` (read from a snapshot copy) whose fields do
    not check out (:func:`~friendsim.platform.events.checked_event_from_row`), or ``None``."""
    from friendsim.rundir.log import snapshot_copy

    if not Path(db).is_file():
        return None
    with snapshot_copy(Path(db)) as copy:
        con = sqlite3.connect(copy)
        try:
            cur = con.execute("SELECT seq, t, kind, actor, payload FROM events ORDER BY seq")
            while rows := cur.fetchmany(10_000):
                for row in rows:
                    try:
                        checked_event_from_row(*row)
                    except EventDecodeError as exc:
                        return str(exc)
        except (sqlite3.DatabaseError, UnicodeDecodeError):
            return None
        finally:
            con.close()
    return None


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
    manifest: Manifest | None = None,
) -> list[dict[str, Any]]:
    """One dict per (window, agent): ``window, agent, SOC, INF, PRE, COORD, EMO, total``.

    ``events``, when given, are the run's already decoded events (so a caller that needs them
    anyway reads the log once); otherwise they are read from the run's ``events.db``.
    ``manifest``, when given, is the run's manifest the caller has read; otherwise it is read
    here (a broken one is a :class:`~friendsim.rundir.errors.ManifestError` naming it).
    """
    from friendsim.rundir.manifest import find_manifest

    db, run_dir = resolve_run(run_dir_or_db_path)
    if manifest is None:
        manifest = find_manifest(run_dir)
    params, lambdas = load_reward_config(manifest, label=run_dir / MANIFEST)
    source = iter_events(db) if events is None else events
    with malformed_events_named(db):
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
