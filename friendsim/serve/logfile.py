"""Read a run's ``events.db`` without ever writing to the run directory.

SQLite quirk this module exists for: opening a WAL-mode database with ``?mode=ro`` when no
``-wal``/``-shm`` file is present (a finished run: the writer removed them on close) *creates*
both files and leaves them behind. So every read opens a short-lived connection chosen by what
is on disk at that moment:

* ``events.db-wal`` present -> a writer is (or was just) attached and the shared-memory index
  exists: ``file:...?mode=ro`` reads the committed state, including commits still in the WAL;
* no WAL -> the file is quiescent: ``file:...?mode=ro&immutable=1`` reads it without creating
  or locking anything.

A connection per read (a few hundred microseconds) keeps no lock that would stop the writer from
checkpointing and removing its WAL when it closes, and picks up a writer that starts later.
Rows come back in the exact JSONL form of ``friendsim log export``
(:func:`friendsim.platform.events.row_to_json`: the line around the stored payload text), or as
events (:meth:`LogFile.read_events`, optionally only some kinds, selected by SQLite).
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from friendsim.platform.events import Event, event_from_row, row_to_json

EVENTS_DB = "events.db"

Row = tuple[int, str]
"""``(seq, jsonl_line)`` of one logged event."""


class LogReadError(RuntimeError):
    """The log cannot be read (not a SQLite file, no ``events`` table, a broken row)."""


@dataclass(frozen=True, slots=True)
class Stamp:
    """What ``stat`` says about the database and its WAL: changes whenever a commit lands."""

    db: tuple[int, int] | None
    wal: tuple[int, int] | None


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns)


class LogFile:
    """Read-only access to one ``events.db`` (blocking; call from a thread in async code)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).absolute()
        self.wal = Path(str(self.path) + "-wal")

    def exists(self) -> bool:
        return self.path.is_file()

    def stamp(self) -> Stamp:
        """The database's and WAL's (size, mtime): equal stamps mean no commit landed between."""
        return Stamp(db=_stat(self.path), wal=_stat(self.wal))

    def _connect(self) -> sqlite3.Connection:
        uri = self.path.as_uri()
        mode = "mode=ro" if self.wal.exists() else "mode=ro&immutable=1"
        return sqlite3.connect(f"{uri}?{mode}", uri=True, check_same_thread=False)

    def _select(
        self,
        from_seq: int,
        limit: int,
        to_seq: int | None,
        kinds: Collection[str] | None = None,
    ) -> list[tuple[Any, ...]]:
        if not self.exists():
            return []
        hi = to_seq if to_seq is not None else (1 << 62)
        chosen = sorted(kinds) if kinds is not None else []
        only = f" AND kind IN ({', '.join('?' * len(chosen))})" if kinds is not None else ""
        try:
            con = self._connect()
            try:
                return con.execute(
                    "SELECT seq, t, kind, actor, payload FROM events"
                    f" WHERE seq >= ? AND seq <= ?{only} ORDER BY seq LIMIT ?",
                    (from_seq, hi, *chosen, limit),
                ).fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return []  # the writer has created the file but not migrated it yet
            raise LogReadError(f"{self.path}: cannot read the event log: {exc}") from exc

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read-only ``sql`` statement (``[]`` before the log has a table)."""
        if not self.exists():
            return []
        try:
            con = self._connect()
            try:
                return con.execute(sql, params).fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return []
            raise LogReadError(f"{self.path}: cannot read the event log: {exc}") from exc

    def read_where(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        """``(seq, JSONL line)`` of the rows ``sql`` selects (``seq, t, kind, actor, payload``
        of ``events``), in its order."""
        return self._lines(self.query(sql, params))

    def read_events(
        self,
        from_seq: int,
        limit: int,
        to_seq: int | None = None,
        *,
        kinds: Collection[str] | None = None,
    ) -> list[Event]:
        """Up to ``limit`` committed events with ``seq >= from_seq`` (and ``<= to_seq``), only
        those of ``kinds`` when given (SQLite skips the other rows: their payloads are never
        decoded, nor checked)."""
        try:
            return [_event(*r) for r in self._select(from_seq, limit, to_seq, kinds)]
        except ValueError as exc:
            raise LogReadError(f"{self.path}: {exc}") from exc

    def read(self, from_seq: int, limit: int, to_seq: int | None = None) -> list[Row]:
        """Like :meth:`read_events`, as ``(seq, JSONL line)`` pairs."""
        return self._lines(self._select(from_seq, limit, to_seq))

    def _lines(self, rows: list[tuple[Any, ...]]) -> list[Row]:
        try:
            return [(r[0], row_to_json(*r)) for r in rows]
        except ValueError as exc:
            raise LogReadError(f"{self.path}: {exc}") from exc

    def last_seq(self) -> int:
        """The highest committed seq (0 for an empty or absent log)."""
        if not self.exists():
            return 0
        try:
            con = self._connect()
            try:
                row = con.execute("SELECT MAX(seq) FROM events").fetchone()
            finally:
                con.close()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return 0
            raise LogReadError(f"{self.path}: cannot read the event log: {exc}") from exc
        return int(row[0] or 0)


_LONG_NUMBER = re.compile(r"[0-9]{19}")
"""Nineteen digits in a row: a payload that may spell an integer beyond 64 bits."""


def _event(seq: int, t: float, kind: str, actor: str | None, payload: Any) -> Event:
    """:func:`~friendsim.platform.events.event_from_row` of one row, its payload decoded by
    orjson (about three times faster than the stdlib's ``json``) where orjson reads it as an
    object; the event is then the same, and so are its errors (they are about the object, not
    its text). Anything orjson refuses (``NaN``, a lone surrogate, a broken payload) goes to
    ``event_from_row`` as text, which decodes it, or names the problem, as it always did. The
    two decoders differ only on an integer beyond 64 bits (orjson reads a float, the stdlib an
    int): a payload holding nineteen digits in a row (no run writes such an integer, but a
    hand-edited log may) goes to ``event_from_row`` as text too."""
    if type(payload) is str and _LONG_NUMBER.search(payload) is None:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = None
        if type(data) is dict:
            return event_from_row(seq, t, kind, actor, data)
    return event_from_row(seq, t, kind, actor, payload)
