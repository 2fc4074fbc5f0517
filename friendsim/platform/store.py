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

from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from .events import Event, event_from_row
from .migrations import migrate
from .projection import plan

CACHE_KIB = 65_536
"""Page cache per connection (64 MiB): random index inserts of a growing log stay in memory."""
MMAP_BYTES = 1 << 30
"""Memory-mapped reads up to 1 GiB (address space, not RAM): no read() syscall per page."""


async def _connect(path: str, *, synchronous: str) -> aiosqlite.Connection:
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
            " PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 16384;"
        )
    except BaseException:
        await conn.close()
        raise
    return conn


class Store:
    """Owns the two connections. Single writer: callers serialise :meth:`commit` (Platform does)."""

    def __init__(self, path: str, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self.writer = writer
        self.reader = reader

    @classmethod
    async def open(cls, path: str | Path, *, synchronous: str = "NORMAL") -> Store:
        """Open (creating if needed) and migrate the database at ``path``."""
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"synchronous must be OFF/NORMAL/FULL/EXTRA, got {synchronous!r}")
        p = str(path)
        writer = await _connect(p, synchronous=synchronous)
        try:
            await migrate(writer, path=p)
            reader = await _connect(p, synchronous=synchronous)
        except BaseException:
            await writer.close()
            raise
        return cls(p, writer, reader)

    async def commit(self, events: Sequence[Event]) -> None:
        """Append ``events`` and apply their projections in one transaction (all or nothing)."""
        if not events:
            return
        conn = self.writer
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in plan(events):
                await conn.executemany(sql, rows)
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")

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
        async with self.reader.execute(sql, params) as cur:
            rows = await cur.fetchall()
        return [event_from_row(*row) for row in rows]

    async def close(self) -> None:
        try:
            await self.reader.close()
        finally:
            await self.writer.close()
