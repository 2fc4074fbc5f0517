"""The log's digest: sha256 over ``seq t kind actor payload`` lines, one per ``events`` row.

``t`` is written as ``float.hex`` (exact), a NULL actor as the empty string, each line ending in
``\\n``. Equal digests = byte-identical logs. :func:`friendsim.rundir.log.log_hash` reads a log
back to compute it; :class:`LogDigest` computes the same value from the rows as they are
committed, so a run that wrote its whole log need not read it back at the end (reading 260,000
rows took longer than formatting and hashing them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

_HEXED_MAX = 4096
"""Times whose ``float.hex`` is kept (a window's events share a few times); cleared beyond."""


def digest_lines(rows: Iterable[tuple[Any, ...]], hexed: dict[float, str]) -> bytes:
    """The digest's lines of ``rows`` (``(seq, t, kind, actor, payload)``), encoded.

    ``hexed`` caches ``float.hex`` of times across calls; the caller owns it."""
    if len(hexed) > _HEXED_MAX:
        hexed.clear()
    lines: list[str] = []
    add = lines.append
    for s, t, k, a, p in rows:
        x = hexed.get(t)
        if x is None:
            x = hexed[t] = float(t).hex()
        add(f"{s}\t{x}\t{k}\t{'' if a is None else a}\t{p}\n")
    return "".join(lines).encode()


class LogDigest:
    """The running digest of a log written from its first row, fed rows in ``seq`` order."""

    __slots__ = ("_hexed", "_sha")

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._hexed: dict[float, str] = {}

    def update(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Feed the next committed ``events`` rows."""
        self._sha.update(digest_lines(rows, self._hexed))

    def hexdigest(self) -> str:
        """The digest of every row fed so far."""
        return self._sha.hexdigest()
