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
        # one script, one round trip; the version bump commits with the schema change
        script = f"BEGIN IMMEDIATE;\n{mig.sql}\n;PRAGMA user_version = {mig.version:d};\nCOMMIT;"
        try:
            await conn.executescript(script)
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
    return len(migrations)
