"""Reading an event log safely: existence checks, snapshots, log summaries, hashes.

Every command that reads a run reads its log through this module and never writes to
it. Databases are read from a *snapshot*: the ``.db`` file and its ``-wal`` are copied into a scratch folder and only the copy
is opened (opening a WAL database in place, even read-only, may touch its ``-shm`` or checkpoint
it; a killed run leaves both behind). So a tool that fails on corrupt input leaves every byte of
the run as it was, which the tests check with sha256 sums.

Checks made here, each raising a :class:`~.errors.RunInputError` subclass that names the file:
missing files, a file that is not a SQLite database or is truncated/malformed, a schema written by
a newer friendsim (``PRAGMA user_version``), an events table with gaps or not starting at 1, a
payload schema version newer than this friendsim's, a ``t`` that is not a number, a database this
user may not read, and a manifest whose recorded seq range or log hash does not match the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from friendsim.platform.digest import digest_lines
from friendsim.platform.events import SCHEMA_VERSION
from friendsim.platform.migrations import latest_version

from .errors import (
    CorruptLogError,
    ForeignLogError,
    ManifestMismatchError,
    MissingFileError,
    RunInputError,
)
from .manifest import Manifest

SIDE_FILES = ("-wal",)


@dataclass(frozen=True, kw_only=True, slots=True)
class LogSummary:
    """Shape of an events table: ``count`` rows, seq ``first``..``last`` (0, 0 when empty), the
    windows that ended (window -> seq of its ``WindowEnded``) and the seq of the last one."""

    count: int
    first: int
    last: int
    window_ends: Mapping[int, int]

    @property
    def last_window_end(self) -> int:
        """Seq of the last committed ``WindowEnded`` (0 when no window ended)."""
        return max(self.window_ends.values(), default=0)

    @property
    def last_window(self) -> int:
        """Number of the last window that ended (0 when none)."""
        return max(self.window_ends, default=0)


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else :class:`MissingFileError` naming ``what`` and the path."""
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    return path


@contextlib.contextmanager
def snapshot_copy(db: Path, *, prefix: str = "friendsim-read-") -> Iterator[Path]:
    """A :func:`snapshot` of ``db`` in a temporary folder, removed when the block ends: how a
    reader opens a run's database (opened in place, even read-only, a WAL database gets
    ``-wal``/``-shm`` files beside it, and a reader leaves the run as it found it)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield snapshot(db, Path(tmp))


def snapshot(db: Path, dest_dir: Path, *, name: str | None = None) -> Path:
    """Copy ``db`` (and its ``-wal`` if present) into ``dest_dir``; returns the copy's path.

    The source is only read. The copy is then opened normally, so SQLite recovers a killed
    writer's WAL into the copy, never into the original. A source this user may not read is a
    :class:`~.errors.RunInputError` naming it.
    """
    require_file(db, "database")
    dest = dest_dir / (name or db.name)
    try:
        shutil.copyfile(db, dest)
        for suffix in SIDE_FILES:
            side = Path(str(db) + suffix)
            if side.is_file():
                shutil.copyfile(side, Path(str(dest) + suffix))
    except PermissionError as exc:
        if exc.filename is None or Path(exc.filename).parent == dest_dir:
            raise  # the scratch folder's, not the run's
        raise RunInputError(f"{exc.filename}: cannot read it ({exc.strerror})") from None
    return dest


def connect(db: Path, *, label: str | Path | None = None) -> sqlite3.Connection:
    """Open a (snapshot) database and check it is a friendsim log this version can read."""
    where = label or db
    try:
        conn = sqlite3.connect(db, isolation_level=None)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        raise CorruptLogError(f"{where}: not a readable SQLite database ({exc})") from None
    if version > latest_version():
        conn.close()
        raise ForeignLogError(
            f"{where}: schema version {version} was written by a newer friendsim (this one "
            f"reads up to {latest_version()}); upgrade friendsim to replay it"
        )
    if "events" not in tables:
        conn.close()
        raise ForeignLogError(f"{where}: no events table; not a friendsim event log")
    return conn


def summarise(
    conn: sqlite3.Connection, *, label: str | Path, check_versions: bool = True
) -> LogSummary:
    """Count, seq range and window ends of the log; checks it is gap-free from seq 1 and (with
    ``check_versions``) that no payload has a schema version newer than this friendsim's and
    every ``t`` is a number (the log's hash reads each as one)."""
    try:
        count, first, last = conn.execute(
            "SELECT count(*), min(seq), max(seq) FROM events"
        ).fetchone()
        ends = conn.execute(
            "SELECT json_extract(payload, '$.window'), seq FROM events"
            " WHERE kind = 'window_ended' ORDER BY seq"
        ).fetchall()
        newer = None
        if check_versions:
            newer = conn.execute(
                "SELECT seq, json_extract(payload, '$.v'), kind, t FROM events"
                " WHERE typeof(t) NOT IN ('integer', 'real')"
                " OR json_extract(payload, '$.v') > ? ORDER BY seq LIMIT 1",
                (SCHEMA_VERSION,),
            ).fetchone()
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        raise CorruptLogError(f"{label}: events table unreadable ({exc})") from None
    if newer is not None and type(t := newer[3]) not in (int, float):
        got = f"the string {t!r}" if isinstance(t, str) else "null" if t is None else "a BLOB"
        raise CorruptLogError(
            f"{label}: event seq={newer[0]} ({newer[2]}): t: expected a number, got {got}"
        )
    if newer is not None:
        raise ForeignLogError(
            f"{label}: event seq={newer[0]} has payload schema version {newer[1]}, newer than "
            f"this friendsim's {SCHEMA_VERSION}; upgrade friendsim to replay it"
        )
    if count == 0:
        return LogSummary(count=0, first=0, last=0, window_ends={})
    if first != 1 or last != count:
        gap = conn.execute(
            "SELECT seq FROM events e WHERE seq > 1 AND NOT EXISTS"
            " (SELECT 1 FROM events p WHERE p.seq = e.seq - 1) ORDER BY seq LIMIT 1"
        ).fetchone()
        where = (
            f"first seq is {first}" if first != 1 else f"seq {gap[0] - 1 if gap else '?'} missing"
        )
        raise CorruptLogError(
            f"{label}: the log is not contiguous from seq 1 ({count} rows, seq {first}..{last}; "
            f"{where})"
        )
    for w, s in ends:
        if type(w) is not int:
            shown = "no window" if w is None else f"the window {w!r}"
            raise CorruptLogError(
                f"{label}: event seq={s} (window_ended) has {shown}; a window_ended's "
                "payload.window is an integer"
            )
    return LogSummary(count=count, first=first, last=last, window_ends=dict(ends))


def iter_rows(
    conn: sqlite3.Connection, *, to_seq: int | None = None, batch: int = 20000
) -> Iterator[list[tuple[Any, ...]]]:
    """The events rows ``(seq, t, kind, actor, payload)`` in seq order, in batches."""
    sql = "SELECT seq, t, kind, actor, payload FROM events"
    params: tuple[int, ...] = ()
    if to_seq is not None:
        sql += " WHERE seq <= ?"
        params = (to_seq,)
    cur = conn.execute(sql + " ORDER BY seq", params)
    while rows := cur.fetchmany(batch):
        yield rows


def log_hash(conn: sqlite3.Connection, *, to_seq: int | None = None) -> str:
    """sha256 of the log rows up to ``to_seq`` (all when None): ``seq t kind actor payload`` lines,
    ``t`` as ``float.hex`` (exact); see :mod:`friendsim.platform.digest`. Equal hashes =
    byte-identical logs."""
    h = hashlib.sha256()
    hexed: dict[float, str] = {}
    for rows in iter_rows(conn, to_seq=to_seq):
        h.update(digest_lines(rows, hexed))
    return h.hexdigest()


def check_manifest(
    manifest: Manifest,
    summary: LogSummary,
    conn: sqlite3.Connection,
    *,
    label: str | Path,
    check_hash: bool = True,
) -> None:
    """Raise :class:`ManifestMismatchError` when the manifest's recorded facts contradict the log.

    Checked: ``start_seq`` (when set) is the first seq; for a run whose final manifest was
    written (every status but ``running``: the run closed its log first) ``end_seq`` is the
    last seq; ``log_sha256`` (written by the run when every window ran, and by the replay
    tools) is the hash of the log up to ``end_seq`` (unless ``check_hash`` is false: the
    verifier checks it after the rebuild, so an edited row is reported precisely rather than
    as a hash mismatch).
    """
    start, end, status = manifest.start_seq, manifest.end_seq, manifest.status
    if start is not None and summary.count and start != summary.first:
        raise ManifestMismatchError(
            f"{label}: manifest start_seq={start} but the log starts at seq {summary.first}"
        )
    if status != "running" and end is not None and end != summary.last:
        raise ManifestMismatchError(
            f"{label}: manifest end_seq={end} (status {status}) but the log ends at seq "
            f"{summary.last}: the log was truncated, extended or belongs to another run"
        )
    recorded = manifest.log_sha256
    if check_hash and recorded is not None and status != "running":
        actual = log_hash(conn, to_seq=end)
        if actual != recorded:
            raise ManifestMismatchError(
                f"{label}: manifest log_sha256={recorded[:16]}… but the log hashes to "
                f"{actual[:16]}…: the log was modified after the run"
            )


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes (for before/after checks)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
