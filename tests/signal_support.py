"""What the signal tests share: a small baseline config (4 agents, 3 rounds, seconds to run) and
how they read a run's outcome (the events' digest, the manifest)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

CONFIG = """
[experiment]
name = "sig"
seed = 3
rounds = 3
n_actions = 1
[agents]
count = 4
policy = "baseline"
"""


def digest(run: Path) -> str:
    """sha256 over the run's events rows, in seq order."""
    h = hashlib.sha256()
    with sqlite3.connect(f"file:{run / 'events.db'}?mode=ro", uri=True) as con:
        for row in con.execute("SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"):
            h.update(repr(row).encode() + b"\n")
    return h.hexdigest()


def manifest(run: Path) -> dict[str, Any]:
    """The run's manifest.json, as JSON."""
    return dict(json.loads((run / "manifest.json").read_text()))
