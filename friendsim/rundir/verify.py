"""The log verifier: rebuild the platform from the log alone and compare with the stored state.

Used by ``friendsim replay RUN --verify`` and ``friendsim log verify``.

The log of a snapshot of ``events.db`` is decoded event by event (:func:`checked_event_from_row`,
which rejects unknown kinds, bad payloads, a payload field of the wrong JSON type and newer payload
versions, as ``friendsim log import`` does; the analyses decode without the type checks and trust
a log that a run wrote or that import or verify passed) and projected into a fresh scratch
database with the platform's own projection code (:func:`friendsim.platform.projection.plan`, the
same code the live store commits with). Then:

* the ``events`` table is checked inline: each decoded event, re-encoded, must give back the stored
  row byte for byte (so the log is canonical and lossless);
* every materialised table (agents, posts, mentions, votes, follows, dms, exposures) of the rebuilt
  database must equal the stored one, compared in SQLite (``EXCEPT`` both ways) for speed;
* the windows must follow each other as a run writes them (:func:`check_window_order`).

The first difference is reported precisely: table, primary key, column and both values
(:class:`Divergence`). A constraint the rebuilt state violates is pinned to the single event that
causes it. The run directory itself is never opened for writing (see :mod:`.log`).

Speed: one Python pass over the log (decode + plan, the events rows are compared instead of
re-inserted) and C-level inserts into a scratch database with an in-memory journal; about
``bench/replay.py``'s figure for a 1M-event log.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from friendsim.platform.events import (
    SCHEMA_VERSION,
    Event,
    EventDecodeError,
    checked_event_from_row,
)
from friendsim.platform.migrations import available
from friendsim.platform.projection import MATERIALISED_TABLES, SQL_EVENT, plan

from .errors import CorruptLogError, ForeignLogError, MissingFileError, RunInputError
from .layout import RunLayout
from .log import LogSummary, check_manifest, connect, iter_rows, snapshot, summarise
from .manifest import Manifest, read_manifest

TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "agents": ("agent_id",),
    "posts": ("post_id",),
    "mentions": ("post_id", "pos"),
    "votes": ("voter", "post_id"),
    "follows": ("follower", "target"),
    "dms": ("dm_id",),
    "exposures": ("seq", "rank"),
    "injected_items": ("post_id",),
    "moderation": ("seq",),
    "suspensions": ("seq",),
    "survey_answers": ("seq", "question"),
}
assert set(TABLE_KEYS) == set(MATERIALISED_TABLES)

EVENT_COLUMNS = ("seq", "t", "kind", "actor", "payload")

Groups = list[tuple[str, list[tuple[Any, ...]]]]


def _shown(text: str, at: int = 0, limit: int = 240) -> str:
    """``text`` (a value's repr) cut to about ``limit`` characters around position ``at`` (where
    two values first differ), so a message about a huge row stays one readable line; the whole
    values are in :meth:`Divergence.to_json`."""
    if len(text) <= limit:
        return text
    start = max(0, min(at - limit // 4, len(text) - limit))
    cut = text[start : start + limit]
    return f"{'…' if start else ''}{cut}{'…' if start + limit < len(text) else ''} ({len(text)} characters)"


@dataclass(frozen=True, kw_only=True, slots=True)
class Divergence:
    """First difference between the stored state and the state the log implies.

    ``column`` is None when a whole row exists on one side only (its values are then the row
    or None). ``stored`` is the value in the run's database, ``rebuilt`` the replayed one.
    """

    table: str
    key: tuple[Any, ...]
    column: str | None
    stored: Any
    rebuilt: Any

    def __str__(self) -> str:
        key = ", ".join(repr(k) for k in self.key)
        if self.column is None:
            side = "rebuilt state" if self.stored is None else "stored state"
            row = self.rebuilt if self.stored is None else self.stored
            return f"table {self.table}, key ({key}): row only in the {side}: {_shown(repr(row))}"
        stored, rebuilt = repr(self.stored), repr(self.rebuilt)
        at = next((i for i, (a, b) in enumerate(zip(stored, rebuilt, strict=False)) if a != b), 0)
        return (
            f"table {self.table}, key ({key}), column {self.column}: "
            f"stored {_shown(stored, at)} != rebuilt {_shown(rebuilt, at)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "key": list(self.key),
            "column": self.column,
            "stored": self.stored,
            "rebuilt": self.rebuilt,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class VerifyReport:
    """Outcome of a verification: ``divergence`` is None when the log reproduces the state."""

    path: Path
    events: int
    last_seq: int
    windows: int
    divergence: Divergence | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.divergence is None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "events": self.events,
            "last_seq": self.last_seq,
            "windows": self.windows,
            "divergence": None if self.divergence is None else self.divergence.to_json(),
            "seconds": round(self.seconds, 3),
        }


def column_diff(
    table: str,
    key: tuple[Any, ...],
    columns: Sequence[str],
    stored: tuple[Any, ...] | None,
    rebuilt: tuple[Any, ...] | None,
) -> Divergence:
    """The :class:`Divergence` between two versions of one row (either may be missing)."""
    if stored is None or rebuilt is None:
        return Divergence(table=table, key=key, column=None, stored=stored, rebuilt=rebuilt)
    for name, a, b in zip(columns, stored, rebuilt, strict=True):
        if a != b or type(a) is not type(b):
            return Divergence(table=table, key=key, column=name, stored=a, rebuilt=b)
    raise AssertionError(f"rows of {table} at {key} are equal")  # pragma: no cover


def create_schema(conn: sqlite3.Connection) -> None:
    """The platform schema (all migrations) in an empty database."""
    for mig in available():
        conn.executescript(f"BEGIN;\n{mig.sql}\n;PRAGMA user_version = {mig.version:d};\nCOMMIT;")


def drop_secondary_indexes(conn: sqlite3.Connection) -> None:
    """Drop the schema's ``CREATE INDEX`` indexes (query speed only, none is UNIQUE): a scratch
    database that is only compared needs its constraints, not its read paths."""
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall()
    for name, sql in rows:
        assert "UNIQUE" not in sql.upper(), f"index {name} enforces a constraint"
        conn.execute(f'DROP INDEX "{name}"')


def decode(row: tuple[Any, ...], *, label: str | Path) -> Event:
    """One stored row as an event; newer payload versions are :class:`ForeignLogError`."""
    try:
        return checked_event_from_row(*row)
    except EventDecodeError as exc:
        try:
            v = json.loads(row[4]).get("v")
        except (ValueError, TypeError, AttributeError, RecursionError):
            v = None
        if isinstance(v, int) and v > SCHEMA_VERSION:
            raise ForeignLogError(f"{label}: {exc}; upgrade friendsim to replay it") from None
        raise CorruptLogError(f"{label}: {exc}") from None


def _apply_batch(
    conn: sqlite3.Connection,
    groups: Groups,
    events: list[Event],
    *,
    label: str | Path,
) -> None:
    conn.execute("BEGIN")
    try:
        for sql, rows in groups:
            conn.executemany(sql, rows)
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK")
        if not events:
            raise _NeedsEvents() from None
        _pin_violation(conn, events, label=label)
        raise AssertionError("unreachable") from None  # pragma: no cover
    conn.execute("COMMIT")


class _NeedsEvents(Exception):
    """A constraint broke in a batch planned elsewhere: re-read its events to pin it."""


def _pin_violation(conn: sqlite3.Connection, events: list[Event], *, label: str | Path) -> None:
    """Re-apply ``events`` one by one to name the event whose effect breaks a constraint."""
    conn.execute("BEGIN")
    try:
        for e in events:
            try:
                for sql, rows in plan([e]):
                    if sql is not SQL_EVENT:
                        conn.executemany(sql, rows)
            except sqlite3.IntegrityError as exc:
                raise CorruptLogError(
                    f"{label}: event seq={e.seq} ({e.kind}, actor {e.actor!r}) implies an "
                    f"impossible state: {exc}"
                ) from None
    finally:
        conn.execute("ROLLBACK")
    raise CorruptLogError(f"{label}: a batch breaks a constraint no single event breaks")


def _project_rows(
    rows: list[tuple[Any, ...]], *, label: str | Path
) -> tuple[list[Event], Groups, Divergence | None]:
    """Decode one batch and plan its effects; checks every row re-encodes to itself."""
    try:
        events = [checked_event_from_row(*r) for r in rows]
    except EventDecodeError:
        events = [decode(r, label=label) for r in rows]
    groups = plan(events)
    head_sql, head_rows = groups[0]
    assert head_sql is SQL_EVENT
    if head_rows != rows:
        for stored, again in zip(rows, head_rows, strict=True):
            if stored != again:
                return events, [], column_diff("events", (stored[0],), EVENT_COLUMNS, stored, again)
    return events, groups[1:], None


def _worker_batch(db: str, lo: int, hi: int, label: str) -> tuple[int, Groups, Divergence | None]:
    """Process-pool task: read seq ``lo..hi`` of the snapshot ``db``, decode, check, plan."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT seq, t, kind, actor, payload FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq",
            (lo, hi),
        ).fetchall()
    finally:
        conn.close()
    if len(rows) != hi - lo + 1:
        raise CorruptLogError(f"{label}: seq gap between {lo} and {hi}")
    _, groups, div = _project_rows(rows, label=label)
    return lo, groups, div


def rebuild_into(
    src: sqlite3.Connection,
    dest: sqlite3.Connection,
    *,
    label: str | Path,
    to_seq: int | None = None,
    batch: int = 20000,
    workers: int = 0,
    src_path: Path | None = None,
) -> tuple[int, Divergence | None]:
    """Project the log of ``src`` (up to ``to_seq``) into ``dest`` (schema already created).

    Returns the number of events and the first ``events``-table divergence (a stored row that
    does not re-encode to itself), or None; stops at that divergence. With ``workers`` > 0 (and
    ``src_path``, the database ``src`` reads), decoding and planning run in that many processes
    while this one applies their plans in seq order: the result is the same, on more cores.
    """
    last = src.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
    last = last if to_seq is None else min(last, to_seq)
    if workers > 0 and src_path is not None and last > 2 * batch:
        return _rebuild_parallel(
            src, dest, src_path, last, label=label, batch=batch, workers=workers
        )
    n = 0
    expected = 1
    for rows in iter_rows(src, to_seq=last, batch=batch):
        if rows[0][0] != expected or rows[-1][0] != expected + len(rows) - 1:
            raise CorruptLogError(f"{label}: seq gap near seq {expected}")
        events, groups, div = _project_rows(rows, label=label)
        if div is not None:
            return n, div
        _apply_batch(dest, groups, events, label=label)
        n += len(rows)
        expected += len(rows)
    return n, None


def _rebuild_parallel(
    src: sqlite3.Connection,
    dest: sqlite3.Connection,
    src_path: Path,
    last: int,
    *,
    label: str | Path,
    batch: int,
    workers: int,
) -> tuple[int, Divergence | None]:
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    ranges = deque((lo, min(lo + batch - 1, last)) for lo in range(1, last + 1, batch))
    # fork: workers must not re-import the caller's __main__ (spawn would re-run a CLI entry
    # module); only the CLI and the benchmark ask for workers, from a single-threaded process
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    n = 0
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        inflight: deque[Any] = deque()

        def top_up() -> None:
            while ranges and len(inflight) < 3 * workers:
                lo, hi = ranges.popleft()
                inflight.append(
                    (lo, hi, pool.submit(_worker_batch, str(src_path), lo, hi, str(label)))
                )

        top_up()
        try:
            while inflight:
                lo, hi, fut = inflight.popleft()
                _, groups, div = fut.result()
                top_up()
                if div is not None:
                    return n, div
                try:
                    _apply_batch(dest, groups, [], label=label)
                except _NeedsEvents:
                    rows = src.execute(
                        "SELECT seq, t, kind, actor, payload FROM events"
                        " WHERE seq BETWEEN ? AND ? ORDER BY seq",
                        (lo, hi),
                    ).fetchall()
                    _pin_violation(dest, [decode(r, label=label) for r in rows], label=label)
                n += hi - lo + 1
        finally:
            for _, _, fut in inflight:
                fut.cancel()
    return n, None


def _first_missing(
    conn: sqlite3.Connection, table: str, keys: Sequence[str], left: str, right: str
) -> tuple[Any, ...] | None:
    k = ", ".join(keys)
    row = conn.execute(
        f"SELECT {k} FROM (SELECT * FROM {left}.{table} EXCEPT SELECT * FROM {right}.{table})"
        f" ORDER BY {k} LIMIT 1"
    ).fetchone()
    return None if row is None else tuple(row)


def _row(
    conn: sqlite3.Connection, schema: str, table: str, keys: Sequence[str], key: tuple[Any, ...]
) -> tuple[Any, ...] | None:
    where = " AND ".join(f"{k} = ?" for k in keys)
    row = conn.execute(f"SELECT * FROM {schema}.{table} WHERE {where}", key).fetchone()
    return None if row is None else tuple(row)


def compare_tables(
    conn: sqlite3.Connection, *, stored: str = "stored", rebuilt: str = "main"
) -> Divergence | None:
    """First divergence between the materialised tables of two attached schemas, or None."""
    for table, keys in TABLE_KEYS.items():
        cols = [r[1] for r in conn.execute(f"PRAGMA {stored}.table_info({table})")]
        cols_b = [r[1] for r in conn.execute(f"PRAGMA {rebuilt}.table_info({table})")]
        if cols != cols_b:
            if not cols:
                raise ForeignLogError(f"stored database has no table {table!r}")
            return Divergence(
                table=table,
                key=("<columns>",),
                column=None,
                stored=tuple(cols),
                rebuilt=tuple(cols_b),
            )
        only_stored = _first_missing(conn, table, keys, stored, rebuilt)
        n_a = conn.execute(f"SELECT count(*) FROM {stored}.{table}").fetchone()[0]
        n_b = conn.execute(f"SELECT count(*) FROM {rebuilt}.{table}").fetchone()[0]
        # rows are distinct (primary key): equal counts and nothing only-stored => equal sets
        only_rebuilt = (
            None
            if only_stored is None and n_a == n_b
            else _first_missing(conn, table, keys, rebuilt, stored)
        )
        candidates = [k for k in (only_stored, only_rebuilt) if k is not None]
        if candidates:
            key = min(candidates)
            return column_diff(
                table,
                key,
                cols,
                _row(conn, stored, table, keys, key),
                _row(conn, rebuilt, table, keys, key),
            )
    return None


def verify_db(
    db: str | Path,
    *,
    manifest: Manifest | None = None,
    label: str | Path | None = None,
    scratch: str | Path | None = None,
    workers: int = 0,
    windows: bool = True,
) -> VerifyReport:
    """Verify the events database ``db`` (see the module docstring). Never writes to ``db``.

    ``windows=False`` leaves out the check of the windows' order (:func:`check_window_order`):
    for a platform log that no run wrote (the platform records any window event it is given).

    ``manifest`` (optional) is checked against the log first. ``scratch`` is the folder for the
    snapshot and the rebuilt database (default: a temporary folder, removed afterwards).
    ``workers``: decoding processes (0, the default: all in this process). Use workers only from
    a single-threaded program (the CLI does: ``min(2, cpu_count)``), as they are forked.
    """
    t0 = time.perf_counter()
    path = Path(db)
    label = label or path
    with tempfile.TemporaryDirectory(prefix="friendsim-verify-", dir=scratch) as tmp:
        copy = snapshot(path, Path(tmp), name="stored.db")
        src = connect(copy, label=label)
        try:
            summary = summarise(src, label=label, check_versions=False)
            if manifest is not None:
                check_manifest(manifest, summary, src, label=label, check_hash=False)
            div = _verify(src, copy, Path(tmp) / "rebuilt.db", label=label, workers=workers)
            if div is None and windows:
                check_window_order(src, label=label)
            if div is None and manifest is not None:
                check_manifest(manifest, summary, src, label=label)
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise CorruptLogError(f"{label}: database unreadable ({exc})") from None
        finally:
            src.close()
    return VerifyReport(
        path=path,
        events=summary.count,
        last_seq=summary.last,
        windows=len(summary.window_ends),
        divergence=div,
        seconds=time.perf_counter() - t0,
    )


def check_window_order(src: sqlite3.Connection, *, label: str | Path) -> None:
    """The log's windows follow :class:`~friendsim.platform.replay.WindowOrder` (as ``log
    import`` checks them), else :class:`CorruptLogError` naming the event's seq. Run on a log
    whose events decode (their ``window`` is an integer)."""
    from friendsim.platform.replay import WindowOrder

    order = WindowOrder()
    rows = src.execute(
        "SELECT seq, kind, json_extract(payload, '$.window') FROM events"
        " WHERE kind IN ('window_started', 'window_ended') ORDER BY seq"
    )
    for seq, kind, window in rows:
        problem = order.problem(kind, seq, window)
        if problem is not None:
            raise CorruptLogError(f"{label}: event seq={seq}: {problem}")


def _verify(
    src: sqlite3.Connection, copy: Path, rebuilt_path: Path, *, label: str | Path, workers: int
) -> Divergence | None:
    dest = sqlite3.connect(rebuilt_path, isolation_level=None)
    try:
        dest.execute("PRAGMA journal_mode = MEMORY")
        dest.execute("PRAGMA synchronous = OFF")
        dest.execute("PRAGMA foreign_keys = ON")
        dest.execute("PRAGMA cache_size = -262144")
        create_schema(dest)
        drop_secondary_indexes(dest)
        _, div = rebuild_into(src, dest, label=label, workers=workers, src_path=copy)
        if div is not None:
            return div
        dest.execute("ATTACH DATABASE ? AS stored", (str(copy),))
        return compare_tables(dest)
    finally:
        dest.close()


def default_workers() -> int:
    """Decoding processes the CLI uses: one per CPU beyond the first, at least 1, at most 2."""
    return max(1, min(2, (os.cpu_count() or 1)))


def verify_run(run_dir: str | Path, *, workers: int = 0) -> VerifyReport:
    """Verify a run directory: its manifest must describe its log, and the log its state."""
    layout = RunLayout.of(run_dir)
    manifest = read_manifest(layout.root)
    events = layout.events
    if not events.is_file():
        raise MissingFileError(f"event log not found: {events}")
    return verify_db(events, manifest=manifest, label=events, workers=workers)


def verify_live(
    check: Callable[[], VerifyReport], run_dir: str | Path, *, attempts: int = 3
) -> tuple[VerifyReport, int | None]:
    """Run ``check`` (a verification of ``run_dir``'s log); returns the report and the pid of the
    process writing the run right now (``None``: not live).

    On a live run a snapshot can catch the writer between two files' copies; a divergence or an
    unreadable snapshot is then re-checked on a fresh snapshot (up to ``attempts`` times) before
    it is reported, so a run being written is never reported as corrupt when it is not.
    """
    from .lock import holder

    pid = holder(run_dir)
    for i in range(attempts if pid is not None else 1):
        try:
            report = check()
        except CorruptLogError:
            if pid is None or i + 1 >= attempts:
                raise
            continue
        if report.ok or pid is None:
            return report, pid
    return report, holder(run_dir)


def live_note(report: VerifyReport, pid: int | None) -> str:
    """``"run in progress (process P), checked up to window W (seq S)"``, or ``""``."""
    from .lock import writer_name

    if pid is None:
        return ""
    return f"run in progress ({writer_name(pid)}), checked up to window {report.windows} (seq {report.last_seq})"


__all__ = [
    "Divergence",
    "LogSummary",
    "RunInputError",
    "VerifyReport",
    "compare_tables",
    "rebuild_into",
    "verify_db",
    "verify_run",
]
