"""Numbered schema migrations, applied in order and tracked by ``PRAGMA user_version``.

Each ``NNNN_name.sql`` file in this package moves the schema from version ``NNNN - 1`` to
``NNNN``. :func:`migrate` applies the missing ones, each in its own transaction together with the
``user_version`` bump, so a crash leaves the database at a well-defined version. A database whose
``user_version`` is newer than the newest file here was written by a newer friendsim: opening it
raises :class:`~friendsim.platform.errors.SchemaVersionError` instead of guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import aiosqlite

from ..errors import SchemaVersionError

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """All migrations shipped with this package, by version; versions must be 1..n contiguous."""
    found: list[Migration] = []
    for entry in resources.files(__name__).iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(version=int(m.group(1)), name=entry.name, sql=entry.read_text()))
    found.sort(key=lambda mig: mig.version)
    for i, mig in enumerate(found, start=1):
        if mig.version != i:
            raise RuntimeError(f"migrations are not numbered 1..n: {[m.name for m in found]}")
    return found


def latest_version() -> int:
    return len(available())


async def schema_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: aiosqlite.Connection, *, path: str = "?") -> int:
    """Bring ``conn``'s schema to the latest version; returns it. ``conn`` must be in autocommit."""
    migrations = available()
    current = await schema_version(conn)
    if current > len(migrations):
        raise SchemaVersionError(
            f"database {path} has schema version {current}, but this friendsim only knows "
            f"versions up to {len(migrations)}: it was written by a newer friendsim; upgrade "
            "friendsim to open it"
        )
    for mig in migrations[current:]:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _statements(mig.sql):
                await conn.execute(stmt)
            await conn.execute(f"PRAGMA user_version = {mig.version:d}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
    return len(migrations)


def _statements(sql: str) -> list[str]:
    """Split a migration script into statements (``sqlite3.complete_statement`` aware)."""
    import sqlite3

    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        if not buf and line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise RuntimeError(f"incomplete SQL statement at end of migration: {buf[:80]!r}")
    return out
