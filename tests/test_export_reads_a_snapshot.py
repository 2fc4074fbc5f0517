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


def test_cli_parquet_export_copies_the_log_once(tmp_path: Path, monkeypatch) -> None:
    """``friendsim log export --format parquet`` took a snapshot of the log and then handed that
    copy to a writer that snapshotted it again: the whole database was copied twice (twice its
    size in temporary space). One copy now, and the same rows as the JSON Lines export."""
    import json

    import pyarrow.parquet as pq

    from friendsim.cli import main
    from friendsim.rundir import log
    from friendsim.testing import run_small

    run_small(tmp_path / "run")
    before = _tree(tmp_path / "run")
    copies: list[Path] = []
    real = log.snapshot

    def counting(db: Path, dest_dir: Path, *, name: str | None = None) -> Path:
        copies.append(db)
        return real(db, dest_dir, name=name)

    monkeypatch.setattr(log, "snapshot", counting)
    out = tmp_path / "events.parquet"
    assert (
        main(["log", "export", str(tmp_path / "run"), "--format", "parquet", "--out", str(out)])
        == 0
    )
    assert copies == [tmp_path / "run" / "events.db"]
    assert main(["log", "export", str(tmp_path / "run"), str(tmp_path / "events.jsonl")]) == 0
    lines = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    table = pq.read_table(out).to_pylist()
    assert [r["seq"] for r in table] == [json.loads(x)["seq"] for x in lines]
    assert _tree(tmp_path / "run") == before


def _damaged_run(tmp_path: Path, kind: str, payload: bytes) -> Path:
    import sqlite3

    from friendsim.testing import run_small

    run = tmp_path / "run"
    run_small(run)
    con = sqlite3.connect(run / "events.db")
    seq = con.execute("SELECT min(seq) FROM events WHERE kind = ?", (kind,)).fetchone()[0]
    con.execute("UPDATE events SET payload = CAST(? AS TEXT) WHERE seq = ?", (payload, seq))
    con.commit()
    con.close()
    return run


def test_export_errors_name_the_users_log_not_the_temporary_copy(tmp_path: Path, capsys) -> None:
    """The Parquet events export and the network tables read a snapshot copy of the log; a
    payload that is not UTF-8 was reported as ``/tmp/friendsim-export-.../events.db: cannot
    read the events table``, a path the user never gave and that is gone by then."""
    from friendsim.cli import main

    run = _damaged_run(tmp_path, "post_created", b'{"v": 1, "text": "\xff"}')
    for args, out in (
        (["--format", "parquet"], tmp_path / "events.parquet"),
        (["--table", "interactions"], tmp_path / "interactions.jsonl"),
        (["--table", "ties", "--format", "graphml"], tmp_path / "ties.graphml"),
    ):
        assert main(["log", "export", str(run), *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"{run / 'events.db'}: cannot read the events table" in err, err
        assert "friendsim-export-" not in err
        assert not out.exists()


def test_parquet_export_of_a_window_started_without_a_window_exits_2(
    tmp_path: Path, capsys
) -> None:
    """A ``window_started`` payload without an integer window (a damaged or foreign log) was a
    ``KeyError`` traceback out of ``log export --format parquet``; it is bad input: exit 2
    naming the log and the event, nothing written."""
    from friendsim.cli import main

    run = _damaged_run(tmp_path, "window_started", b'{"v": 1}')
    out = tmp_path / "events.parquet"
    assert main(["log", "export", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'events.db'}: event seq=" in err and "(window_started)" in err, err
    assert not out.exists()
