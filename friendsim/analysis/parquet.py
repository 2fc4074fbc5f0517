"""Parquet files of a run for dataframe users (pandas, Polars, DuckDB): the event log, the
rewards table and the network tables (:mod:`friendsim.analysis.network_tables`, written by
:func:`write_rows_parquet` with their columns).

pyarrow is optional (the ``parquet`` extra) and imported only when a file is written, so the rest
of friendsim never needs it; without it :class:`ParquetUnavailable` says how to install it.

Events file, one row per event in ``seq`` order, columns:
``seq`` (int64), ``t`` (float64, virtual seconds), ``kind`` (string), ``actor`` (string, null for
the runtime), ``window`` (int64, the window the event belongs to: the one opened by the last
``window_started``, null before the first and between windows, and, as the rewards count windows
(:mod:`friendsim.analysis.rewards`), null from a ``window_started`` to the next one when no
``window_ended`` came between: a window started again counts from its last start) and ``payload``
(string: the JSON payload exactly as stored in ``events.db``, with its schema version ``v``). The
raw payload keeps the file lossless and the schema fixed while event kinds differ; DuckDB's
``json_extract`` and Polars' ``str.json_decode`` read fields out of it.
A payload that spells a lone surrogate with the JSON escape ``\\ud800`` (a hand-edited or
foreign log: no run stores one) is written as stored too, the escape kept: the column stays
valid UTF-8 and decodes to the same value as the payload of the row's line in the JSON Lines
export, which writes that line ``\\u``-escaped (:func:`~friendsim.platform.events.line_utf8`).

Rewards file, one row per (window, agent): ``window`` (int64), ``agent`` (string), one float64
column per reward component (``SOC``, ``INF``, ``PRE``, ``COORD``, ``EMO``) and ``total``.

Files are written to a temporary name beside the target and renamed, so a failed export never
leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from friendsim.analysis.rewards_params import COMPONENTS

INSTALL_HINT = "install it with: pip install 'friendsim[parquet]'"
EVENT_COLUMNS = ("seq", "t", "kind", "actor", "window", "payload")
REWARD_COLUMNS = ("window", "agent", *COMPONENTS, "total")


class ParquetUnavailable(RuntimeError):
    """pyarrow is not installed; the message says how to install it."""


def require_pyarrow() -> Any:
    """The ``pyarrow`` module with ``pyarrow.parquet`` loaded, or :class:`ParquetUnavailable`."""
    try:
        import pyarrow as pa
        import pyarrow.parquet
    except ImportError as exc:
        raise ParquetUnavailable(f"Parquet files need pyarrow ({exc}); {INSTALL_HINT}") from None
    return pa


def _events_schema(pa: Any) -> Any:
    return pa.schema(
        [
            ("seq", pa.int64()),
            ("t", pa.float64()),
            ("kind", pa.string()),
            ("actor", pa.string()),
            ("window", pa.int64()),
            ("payload", pa.string()),
        ]
    )


def event_rows(
    db: Path, *, page: int = 10_000, snapshot: bool = True, label: str | Path | None = None
) -> Iterator[list[tuple[Any, ...]]]:
    """Pages of ``(seq, t, kind, actor, window, payload)`` rows of ``db``'s log in ``seq`` order,
    read from a snapshot copy as :func:`~friendsim.analysis.rewards_cli.iter_events` reads (a
    WAL database opened in place, even read-only, gets ``-wal``/``-shm`` files beside it).
    ``snapshot=False`` reads ``db`` itself: for a caller whose ``db`` already is such a copy, and
    which passes the log the user named as ``label`` (default ``db``): errors (a
    ``ValueError``) name it, never a temporary copy."""
    from friendsim.rundir.log import snapshot_copy

    where = Path(label) if label is not None else Path(db)
    if not snapshot:
        yield from _rows(where, db, page=page)
        return
    with snapshot_copy(Path(db)) as copy:
        yield from _rows(where, copy, page=page)


def _rows(db: Path, copy: Path, *, page: int) -> Iterator[list[tuple[Any, ...]]]:
    con = sqlite3.connect(copy)
    window: int | None = None
    try:
        marks = con.execute(
            "SELECT seq, kind FROM events WHERE kind IN ('window_started', 'window_ended')"
            " ORDER BY seq"
        ).fetchall()
        abandoned = {
            seq for (seq, kind), (_, after) in pairwise(marks) if kind == after == "window_started"
        }
        cur = con.execute("SELECT seq, t, kind, actor, payload FROM events ORDER BY seq")
        while rows := cur.fetchmany(page):
            out = []
            for seq, t, kind, actor, payload in rows:
                if kind == "window_started":
                    window = _started_window(db, seq, payload)
                    if seq in abandoned:
                        window = None
                out.append((seq, t, kind, actor, window, payload))
                if kind == "window_ended":
                    window = None
            yield out
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        raise ValueError(f"{db}: cannot read the events table: {exc}") from exc
    finally:
        con.close()


def _started_window(db: Path, seq: int, payload: str) -> int:
    try:
        window = json.loads(payload)["window"]
    except (ValueError, TypeError, KeyError):
        window = None
    if isinstance(window, bool) or not isinstance(window, int):
        raise ValueError(f"{db}: event seq={seq} (window_started) has no integer window")
    return window


def write_atomically(out: Path, write: Any) -> None:
    """``write(tmp)`` to a temporary name beside ``out``, then renamed to ``out``: a failed write
    (an error raised by ``write``) leaves no file behind and ``out`` as it was.

    An ``out`` that exists and is a stream rather than a file (``/dev/stdout``, a named pipe, a
    terminal, a socket) cannot be renamed over: ``write(out)`` writes to it directly."""
    try:
        mode = os.stat(out).st_mode
    except OSError:
        mode = None
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        write(out)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_events_parquet(
    db: str | Path, out: str | Path, *, snapshot: bool = True, label: str | Path | None = None
) -> int:
    """Write the log of the events database ``db`` to the Parquet file ``out``; returns the
    number of events written. ``db`` is read through a snapshot copy unless ``snapshot`` is
    false: for a caller that already reads its own copy (the log is copied once, not twice),
    and names the user's log as ``label`` so that errors name it (see :func:`event_rows`)."""
    pa = require_pyarrow()
    src, dest = Path(db), Path(out)
    if not src.is_file():
        raise FileNotFoundError(f"no events database at {src}")
    schema = _events_schema(pa)
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with pa.parquet.ParquetWriter(tmp, schema) as writer:
            for page in event_rows(src, snapshot=snapshot, label=label):
                columns = zip(*page, strict=True)
                arrays = [
                    pa.array(col, type=field.type)
                    for col, field in zip(columns, schema, strict=True)
                ]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                count += len(page)
            if count == 0:
                writer.write_table(schema.empty_table())

    write_atomically(dest, write)
    return count


def rewards_arrow(rows: Sequence[Mapping[str, Any]]) -> Any:
    """The rewards rows (``window, agent, SOC, INF, PRE, COORD, EMO, total``) as a pyarrow table."""
    pa = require_pyarrow()
    schema = pa.schema(
        [
            ("window", pa.int64()),
            ("agent", pa.string()),
            *((c, pa.float64()) for c in (*COMPONENTS, "total")),
        ]
    )
    return pa.Table.from_pylist([{c: r[c] for c in REWARD_COLUMNS} for r in rows], schema=schema)


def write_rewards_parquet(rows: Sequence[Mapping[str, Any]], out: str | Path) -> int:
    """Write the rewards rows to the Parquet file ``out``; returns the number of rows."""
    table = rewards_arrow(rows)
    pa = require_pyarrow()
    write_atomically(Path(out), lambda tmp: pa.parquet.write_table(table, tmp))
    return int(table.num_rows)


def write_rows_parquet(
    rows: Iterable[Mapping[str, Any]],
    out: str | Path,
    *,
    columns: Sequence[tuple[str, str]],
    page: int = 10_000,
) -> int:
    """Write ``rows`` (dicts holding ``columns``: ``(name, pyarrow type name)`` pairs such as
    ``("window", "int64")``) to the Parquet file ``out`` in pages, without holding them all;
    returns the number of rows. An error raised while the rows are produced leaves no file."""
    pa = require_pyarrow()
    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in columns])
    names = [name for name, _ in columns]
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with pa.parquet.ParquetWriter(tmp, schema) as writer:
            batch: list[Mapping[str, Any]] = []
            for row in rows:
                batch.append({n: row[n] for n in names})
                if len(batch) >= page:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    count += len(batch)
                    batch = []
            if batch or count == 0:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count += len(batch)

    write_atomically(Path(out), write)
    return count
