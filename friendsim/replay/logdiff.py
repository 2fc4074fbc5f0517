"""Row-by-row comparison of two event logs (``events`` tables), reporting the first differing seq."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from friendsim.rundir.layout import EVENTS_DB
from friendsim.rundir.log import connect, iter_rows, snapshot
from friendsim.rundir.scratch import working_folder
from friendsim.rundir.verify import EVENT_COLUMNS


@dataclass(frozen=True, kw_only=True, slots=True)
class LogDiff:
    """First difference of two logs: ``seq``, the ``column`` that differs (None when one log ends
    first) and both rows (None on the side that has no such seq)."""

    seq: int
    column: str | None
    row_a: tuple[Any, ...] | None
    row_b: tuple[Any, ...] | None

    def __str__(self) -> str:
        if self.column is None:
            side = "first" if self.row_b is None else "second"
            row = self.row_a if self.row_b is None else self.row_b
            return f"seq {self.seq}: only the {side} log has it: {row!r}"
        i = EVENT_COLUMNS.index(self.column)
        assert self.row_a is not None and self.row_b is not None
        return (
            f"seq {self.seq}, column {self.column}: {self.row_a[i]!r} != {self.row_b[i]!r} "
            f"(kinds {self.row_a[2]} / {self.row_b[2]})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "column": self.column,
            "row_a": None if self.row_a is None else list(self.row_a),
            "row_b": None if self.row_b is None else list(self.row_b),
        }


def _row_diff(a: tuple[Any, ...], b: tuple[Any, ...]) -> LogDiff:
    for name, x, y in zip(EVENT_COLUMNS, a, b, strict=True):
        if x != y or type(x) is not type(y):
            return LogDiff(seq=a[0], column=name, row_a=a, row_b=b)
    raise AssertionError("rows are equal")  # pragma: no cover


def diff_logs(
    a: sqlite3.Connection, b: sqlite3.Connection, *, to_seq: int | None = None
) -> LogDiff | None:
    """First difference between the logs of ``a`` and ``b`` (seq <= ``to_seq`` when given)."""
    ia = iter_rows(a, to_seq=to_seq)
    ib = iter_rows(b, to_seq=to_seq)
    ra: list[tuple[Any, ...]] = []
    rb: list[tuple[Any, ...]] = []
    while True:
        if not ra:
            ra = [tuple(r) for r in next(ia, [])]
        if not rb:
            rb = [tuple(r) for r in next(ib, [])]
        if not ra and not rb:
            return None
        if not ra or not rb:
            row = rb[0] if not ra else ra[0]
            return LogDiff(
                seq=row[0],
                column=None,
                row_a=None if not ra else row,
                row_b=None if not rb else row,
            )
        k = min(len(ra), len(rb))
        if ra[:k] != rb[:k]:
            for x, y in zip(ra[:k], rb[:k], strict=True):
                if x != y:
                    if x[0] != y[0]:
                        seq = min(x[0], y[0])
                        return LogDiff(
                            seq=seq,
                            column=None,
                            row_a=x if x[0] == seq else None,
                            row_b=y if y[0] == seq else None,
                        )
                    return _row_diff(x, y)
        ra, rb = ra[k:], rb[k:]


def diff_log_files(a: Path, b: Path, *, to_seq: int | None = None) -> LogDiff | None:
    """:func:`diff_logs` on two (snapshot) database files, opened read-only."""
    ca = sqlite3.connect(f"file:{a}?mode=ro", uri=True)
    cb = sqlite3.connect(f"file:{b}?mode=ro", uri=True)
    try:
        return diff_logs(ca, cb, to_seq=to_seq)
    finally:
        ca.close()
        cb.close()


def first_difference(run_dir: Path, new: Path, *, to_seq: int | None = None) -> LogDiff | None:
    """:func:`diff_log_files` of the log of ``run_dir``, from a snapshot taken now in a working
    folder beside it (:func:`~friendsim.rundir.scratch.working_folder`), and the log ``new``:
    where a re-execution whose digest came out different diverged. A resume and a fork check
    their re-derived prefix by its digest, taken from the old log at their start, and keep no
    copy of that log for the hours they run; only a divergence, which ends them, reads it again."""
    with working_folder(run_dir, what="diff") as work:
        copy = snapshot(run_dir / EVENTS_DB, work)
        connect(copy, label=run_dir / EVENTS_DB).close()  # a killed run's -wal folded into the copy
        return diff_log_files(copy, new, to_seq=to_seq)
