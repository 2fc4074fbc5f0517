"""Exporting a run's log to Parquet reads a snapshot of its database: the run is left byte for
byte as it was, as every other reader leaves it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def _tree(root: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.iterdir())
        if p.is_file()
    }


def test_parquet_export_leaves_no_side_files_in_the_run(tmp_path: Path) -> None:
    """``Run.export_parquet`` opened ``events.db`` in place and left ``events.db-wal`` and
    ``events.db-shm`` beside it."""
    import pyarrow.parquet as pq

    from friendsim import api
    from friendsim.testing import run_small

    run_small(tmp_path / "run")
    before = _tree(tmp_path / "run")
    run = api.open_run(tmp_path / "run")
    run.export_parquet(tmp_path / "pq")
    assert _tree(tmp_path / "run") == before
    written = sorted(p.name for p in (tmp_path / "pq").iterdir())
    assert "events.parquet" in written
    table = pq.read_table(tmp_path / "pq" / "events.parquet")
    assert table.num_rows == len(list(run.events()))
