"""SQLite store: the append-only event log plus the tables projected from it.

The log is the table::

    events(seq INTEGER PRIMARY KEY, t REAL NOT NULL, kind TEXT NOT NULL, actor TEXT,
           payload TEXT NOT NULL)

one row per event, ``seq`` contiguous from 1, ``t`` the virtual time, ``kind`` the event kind (see
:data:`friendsim.platform.events.EVENT_TYPES`), ``actor`` the agent id (``"coach"`` for guidance,
NULL for the runtime) and ``payload`` the key-sorted JSON of the kind's fields with the schema
version under ``"v"`` (:func:`~friendsim.platform.events.payload_json`). Query it directly, e.g.
``SELECT seq, json_extract(payload, '$.post_id') FROM events WHERE kind = 'vote_cast'``; decode rows
with :func:`~friendsim.platform.events.event_from_row`.

Materialised tables (agents, posts, mentions, votes, follows, dms, exposures; schema in
``migrations/0001_init.sql``) are derived from the log by :mod:`.projection` and carry the
platform's invariants as constraints (foreign keys, UNIQUE, CHECK, a no-self-vote trigger), so even
raw SQL cannot write an impossible state.

Durability: WAL journal, ``synchronous=NORMAL``: a commit survives a killed process (the WAL is in
the OS cache); an OS crash or power cut may lose the last commits but never corrupts the file.
Each :meth:`Store.commit` appends a batch of events and applies their effects in ONE transaction.
Writes and reads use two connections: reads (feeds, catch-up, queries) only ever see committed
state, and never an open write transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import aiosqlite
import structlog

from .digest import LogDigest
from .events import Event, event_from_row
from .migrations import migrate
from .projection import SQL_EVENT, plan

log = structlog.get_logger(__name__)

CACHE_KIB = 65_536
"""Page cache per connection (64 MiB): random index inserts of a growing log stay in memory."""
MMAP_BYTES = 1 << 30
"""Memory-mapped reads up to 1 GiB (address space, not RAM): no read() syscall per page."""


CHECKPOINT_EVERY = 4
"""Commits between two background WAL checkpoints."""


async def _connect(
    path: str, *, synchronous: str, autocheckpoint: int = 1000
) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute("PRAGMA foreign_keys = ON")
        async with conn.execute("PRAGMA journal_mode = WAL") as cur:
            row = await cur.fetchone()
        if row is None or str(row[0]).lower() != "wal":
            raise RuntimeError(f"{path}: could not switch to WAL journal mode (got {row!r})")
        await conn.executescript(
            f"PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = 10000;"
            f" PRAGMA cache_size = -{CACHE_KIB:d}; PRAGMA mmap_size = {MMAP_BYTES:d};"
            f" PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = {autocheckpoint:d};"
        )
    except BaseException:
        await conn.close()
        raise
    return conn


class Store:
    """Owns the connections. Single writer: callers serialise :meth:`commit` (Platform does).

    WAL checkpoints (copying committed pages back into the database file) run on a third
    connection in the background every ``CHECKPOINT_EVERY`` commits, so a commit does not pay for
    them; the writer's own auto-checkpoint is only a safety net for a very large WAL.
    """

    def __init__(
        self,
        path: str,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        checkpointer: aiosqlite.Connection,
        *,
        empty: bool = False,
    ):
        self.path = path
        self.writer = writer
        self.reader = reader
        self._checkpointer = checkpointer
        self._checkpoint: asyncio.Task[None] | None = None
        self._commits = 0
        self._digest = LogDigest() if empty else None

    @classmethod
    async def open(cls, path: str | Path, *, synchronous: str = "NORMAL") -> Store:
        """Open (creating if needed) and migrate the database at ``path``."""
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"synchronous must be OFF/NORMAL/FULL/EXTRA, got {synchronous!r}")
        p = str(path)
        if p == ":memory:" or p.startswith("file::memory:"):
            raise ValueError("the platform needs a database file (it opens several connections)")
        opened: list[aiosqlite.Connection] = []
        try:
            opened.append(await _connect(p, synchronous=synchronous, autocheckpoint=65_536))
            await migrate(opened[0], path=p)
            opened.append(await _connect(p, synchronous=synchronous))
            opened.append(await _connect(p, synchronous=synchronous))
            await opened[1].execute("PRAGMA query_only = ON")
            async with opened[0].execute("SELECT 1 FROM events LIMIT 1") as cur:
                empty = await cur.fetchone() is None
        except BaseException:
            for conn in opened:
                await conn.close()
            raise
        return cls(p, *opened, empty=empty)

    @property
    def log_sha256(self) -> str | None:
        """The digest of the whole log (:mod:`.digest`) when this store wrote every row of it
        (it was opened on an empty log and no commit failed); ``None`` otherwise: then the
        log must be read back to hash it."""
        return None if self._digest is None else self._digest.hexdigest()

    async def commit(self, events: Sequence[Event]) -> None:
        """Append ``events`` and apply their projections in one transaction (all or nothing)."""
        if not events:
            return
        conn = self.writer
        groups = plan(events)
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in groups:
                await conn.executemany(sql, rows)
        except BaseException:
            self._digest = None
            await conn.execute("ROLLBACK")
            raise
        try:
            await conn.execute("COMMIT")
        except BaseException:
            self._digest = None
            raise
        if self._digest is not None:
            if groups and groups[0][0] == SQL_EVENT:
                self._digest.update(groups[0][1])
            else:
                self._digest = None
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0 and (
            self._checkpoint is None or self._checkpoint.done()
        ):
            self._checkpoint = asyncio.create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        try:
            await self._checkpointer.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # best effort: the writer's auto-checkpoint remains
            log.warning("store.checkpoint_failed", path=self.path, error=repr(exc))

    async def read_events(
        self, from_seq: int, limit: int, to_seq: int | None = None
    ) -> list[Event]:
        """Up to ``limit`` committed events with ``from_seq <= seq (<= to_seq)``, in order."""
        if to_seq is None:
            sql = "SELECT seq, t, kind, actor, payload FROM events WHERE seq >= ? ORDER BY seq LIMIT ?"
            params: tuple[int, ...] = (from_seq, limit)
        else:
            sql = (
                "SELECT seq, t, kind, actor, payload FROM events WHERE seq >= ? AND seq <= ?"
                " ORDER BY seq LIMIT ?"
            )
            params = (from_seq, to_seq, limit)
        rows = await self.reader.execute_fetchall(sql, params)
        return [event_from_row(*row) for row in rows]

    async def close(self) -> None:
        if self._checkpoint is not None:
            await self._checkpoint
        try:
            await self._checkpointer.close()
            await self.reader.close()
        finally:
            await self.writer.close()
