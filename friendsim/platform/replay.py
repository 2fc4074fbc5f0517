"""Replay: rebuild the materialised tables from the log alone, compare, export/import JSONL.

* :func:`rebuild` reads the ``events`` of a database and applies them to a fresh database with the
  same projection code the live store uses (:mod:`.projection`).
* :func:`compare` checks two databases table by table (``events`` and every materialised table,
  rows in primary-key order) and returns the first difference, or ``None``.
* Verifying a run's log (rebuild + compare, with precise divergences) is
  :mod:`friendsim.rundir.verify`'s job; this module keeps the building blocks.
* :func:`export_jsonl` / :func:`import_jsonl` move a log as JSON Lines
  (:func:`~.events.event_to_json`; export puts each line together around the stored payload
  text where that is the same line, :func:`~.events.row_to_json`). Import re-validates every
  event with the same rules as live commands (:meth:`.service.Platform.ingest`) and writes the
  database atomically: on any bad line it raises :class:`LogImportError` naming the line, and
  no database is left behind.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from . import errors as E
from .errors import PlatformError
from .events import (
    EventDecodeError,
    WindowEnded,
    WindowStarted,
    event_from_json,
    event_from_row,
    line_utf8,
    row_to_json,
)
from .projection import MATERIALISED_TABLES
from .service import Platform
from .store import Store

TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "events": ("seq",),
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
assert set(TABLE_KEYS) == {"events", *MATERIALISED_TABLES}


class LogImportError(PlatformError):
    """A JSONL log could not be imported; the message names the line and the problem."""

    code = "bad_log"


class ReplayMismatchError(PlatformError):
    """A rebuilt database differs from the live one."""

    code = "replay_mismatch"


@dataclass(frozen=True, kw_only=True, slots=True)
class TableDiff:
    """First difference between two databases: ``row_a``/``row_b`` is None where one side ends."""

    table: str
    key: tuple[Any, ...]
    row_a: tuple[Any, ...] | None
    row_b: tuple[Any, ...] | None

    def __str__(self) -> str:
        return f"table {self.table} differs at key {self.key}: {self.row_a!r} != {self.row_b!r}"


def _exists(path: str | Path) -> bool:
    return Path(path).exists()


def _remove_db_files(path: str | Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _absolute_existing(path: str | Path) -> str:
    if not Path(path).exists():
        raise FileNotFoundError(f"no database at {path}")
    return os.path.abspath(path)


async def _open_ro(path: str | Path) -> aiosqlite.Connection:
    absolute = await asyncio.to_thread(_absolute_existing, path)
    return await aiosqlite.connect(f"file:{absolute}?mode=ro", uri=True)


async def rebuild(source: str | Path, dest: str | Path, *, batch: int = 5000) -> int:
    """Project the log of ``source`` into the fresh database ``dest``; returns the event count."""
    if await asyncio.to_thread(_exists, dest):
        raise FileExistsError(f"rebuild target {dest} exists; rebuild needs a fresh file")
    src = await _open_ro(source)
    store = await Store.open(dest)
    n = 0
    try:
        cur = await src.execute("SELECT seq, t, kind, actor, payload FROM events ORDER BY seq")
        while rows := list(await cur.fetchmany(batch)):
            await store.commit([event_from_row(*r) for r in rows])
            n += len(rows)
        await cur.close()
    finally:
        await store.close()
        await src.close()
    return n


async def _columns(conn: aiosqlite.Connection, table: str) -> list[str]:
    rows = await conn.execute_fetchall(f"PRAGMA table_info({table})")
    return [r[1] for r in rows]


async def compare(
    db_a: str | Path, db_b: str | Path, *, tables: Sequence[str] | None = None
) -> TableDiff | None:
    """First difference between the tables of two databases (rows by primary key), or None."""
    a, b = await _open_ro(db_a), await _open_ro(db_b)
    try:
        for table in tables or TABLE_KEYS:
            keys = TABLE_KEYS[table]
            cols_a, cols_b = await _columns(a, table), await _columns(b, table)
            if cols_a != cols_b:
                return TableDiff(
                    table=table, key=("<columns>",), row_a=tuple(cols_a), row_b=tuple(cols_b)
                )
            idx = [cols_a.index(k) for k in keys]
            sql = f"SELECT * FROM {table} ORDER BY {', '.join(keys)}"
            ca, cb = await a.execute(sql), await b.execute(sql)
            try:
                ra: list[Any] = []
                rb: list[Any] = []
                ia = ib = 0
                while True:
                    if ia == len(ra):
                        ra, ia = list(await ca.fetchmany(2000)), 0
                    if ib == len(rb):
                        rb, ib = list(await cb.fetchmany(2000)), 0
                    row_a = tuple(ra[ia]) if ia < len(ra) else None
                    row_b = tuple(rb[ib]) if ib < len(rb) else None
                    if row_a is None and row_b is None:
                        break
                    if row_a != row_b:
                        some = row_a if row_a is not None else row_b
                        assert some is not None
                        return TableDiff(
                            table=table, key=tuple(some[i] for i in idx), row_a=row_a, row_b=row_b
                        )
                    ia += 1
                    ib += 1
            finally:
                await ca.close()
                await cb.close()
        return None
    finally:
        await a.close()
        await b.close()


async def export_jsonl(db: str | Path, out: str | Path) -> int:
    """Write the log of ``db`` as JSON Lines (one event per line, seq order); returns the count.

    Each line is :func:`~.events.line_utf8` of the row's line, the bytes the live view's stream
    sends for it: a row holding a lone surrogate (a hand-edited or foreign log) is written
    ``\\u``-escaped instead of failing the export, every other row as UTF-8."""
    conn = await _open_ro(db)
    n = 0
    try:
        cur = await conn.execute("SELECT seq, t, kind, actor, payload FROM events ORDER BY seq")
        fh = await asyncio.to_thread(open, out, "wb")
        try:
            while rows := list(await cur.fetchmany(5000)):
                lines = [row_to_json(*r) for r in rows]
                text = "\n".join(lines) + "\n"
                try:
                    data = text.encode("utf-8")
                except UnicodeEncodeError:  # a row holds a lone surrogate: that line escaped
                    data = b"".join([line_utf8(line) + b"\n" for line in lines])
                await asyncio.to_thread(fh.write, data)
                n += len(rows)
        finally:
            await asyncio.to_thread(fh.close)
        await cur.close()
    finally:
        await conn.close()
    return n


def _undecodable(line: str) -> str | None:
    """What is wrong when ``line`` (read with ``errors="surrogateescape"``) holds bytes that are
    not UTF-8, else ``None``."""
    if line.isascii():
        return None
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        byte = ord(line[exc.start]) & 0xFF
        return f"not UTF-8 text: byte 0x{byte:02x} at character {exc.start + 1}"
    return None


class WindowOrder:
    """The run's window structure, as analysis reads it (:mod:`friendsim.analysis.rewards`) and
    as a run writes it, checked by ``friendsim log import`` and ``friendsim log verify``: a
    ``window_ended`` closes the open window and no other; a ``window_started`` opens one (while
    one is open it abandons it: a resumed run starts its unfinished window again). A run starts
    each window once, in increasing order: a window number that already ended (the rewards would
    score it twice, the ties and graphs merge the two) or lower than the last started one is
    refused, and so is a window numbered below 1 (windows count from 1; no run writes window 0).
    Numbers may skip (windows 1, 2, 7)."""

    __slots__ = ("ended_at", "last", "open")

    def __init__(self) -> None:
        self.open: int | None = None
        self.last: int | None = None
        self.ended_at: int | None = None  # seq of the window_ended of window ``last``

    def problem(self, kind: str, seq: int, window: int) -> str | None:
        """What is wrong with the window event ``kind`` (``window_started`` or ``window_ended``)
        of ``seq`` here (``None``: nothing; the caller names where the event is); then takes it
        in."""
        if kind == WindowEnded.kind:
            if window != self.open:
                is_open = (
                    "no window is open" if self.open is None else f"window {self.open} is open"
                )
                return f"window_ended for window {window!r} but {is_open}"
            self.open, self.ended_at = None, seq
            return None
        if window < 1:
            return f"window_started for window {window}: window numbers count from 1"
        last = self.last
        if last is not None and window < last:
            return (
                f"window_started for window {window} after window {last} started: "
                "window numbers never go back"
            )
        if window == last and self.open is None:
            return (
                f"window_started for window {window}, but window {window} already "
                f"ended (seq {self.ended_at}): a run starts each window once"
            )
        self.open = self.last = window
        return None


async def import_jsonl(src: str | Path, db: str | Path, *, batch_size: int = 5000) -> int:
    """Validate and load a JSONL log into the new database ``db``; returns the event count.

    Each line is decoded strictly (:func:`~.events.event_from_json`: exact keys, JSON types,
    valid Unicode), admitted under the live rules (:meth:`.service.Platform.ingest`), and the
    windows must nest as a run writes them (:class:`WindowOrder`). The first bad line is a
    :class:`LogImportError` ``"FILE:LINE: problem"`` and no database is left behind. A byte
    order mark before the first line (a file saved as "UTF-8 with BOM") is the encoding's
    signature, not text, and is skipped."""
    dest = Path(db)
    if await asyncio.to_thread(_exists, dest):
        raise FileExistsError(f"import target {dest} exists; import needs a fresh file")
    tmp = dest.with_name(dest.name + ".importing")
    await asyncio.to_thread(_remove_db_files, tmp)
    try:
        platform = await Platform.open(tmp, batch_size=batch_size)
    except sqlite3.Error as exc:
        await asyncio.to_thread(_remove_db_files, tmp)
        raise _create_failed(dest, exc) from None
    n = 0
    ok = False
    try:
        fh = await asyncio.to_thread(open, src, encoding="utf-8-sig", errors="surrogateescape")
        try:
            lineno = 0
            windows = WindowOrder()
            while lines := await asyncio.to_thread(fh.readlines, 1 << 20):
                for line in lines:
                    lineno += 1
                    if not line.strip():
                        continue
                    try:
                        problem = _undecodable(line)
                        if problem is not None:
                            raise LogImportError(f"{src}:{lineno}: {problem}")
                        event = event_from_json(line)
                        if type(event) is WindowStarted or type(event) is WindowEnded:
                            problem = windows.problem(event.kind, event.seq, event.window)
                        if problem is not None:
                            raise LogImportError(f"{src}:{lineno}: {problem}")
                        await platform.ingest(event)
                    except E.PlatformClosedError as exc:
                        raise _store_failed(src, dest, exc) from exc
                    except LogImportError:
                        raise
                    except (EventDecodeError, PlatformError) as exc:
                        raise LogImportError(f"{src}:{lineno}: {exc}") from exc
                    n += 1
        finally:
            await asyncio.to_thread(fh.close)
        try:
            await platform.close()
        except E.PlatformClosedError as exc:
            raise _store_failed(src, dest, exc) from exc
        ok = True
    finally:
        if not ok:
            try:
                await platform.close()
            except PlatformError:
                pass  # the file is deleted next; the error that stopped the import is raised
            await asyncio.to_thread(_remove_db_files, tmp)
    await asyncio.to_thread(os.replace, tmp, dest)
    return n


def _create_failed(dest: Path, exc: sqlite3.Error) -> LogImportError:
    """The new database could not be made (SQLite says only "unable to open database file"
    when its folder is read-only)."""
    folder = dest.parent
    why = f"the folder {folder} is not writable" if not os.access(folder, os.W_OK) else exc
    return LogImportError(f"{dest}: cannot create the database ({why})")


def _store_failed(src: str | Path, dest: Path, exc: E.PlatformClosedError) -> LogImportError:
    """Writing the checked events failed (a full disk, say): no line is to blame."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return LogImportError(f"{src}: could not write {dest}: {cause}")
