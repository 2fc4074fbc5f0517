"""The sweep lock covers every write a sweep command makes in its directory: the check that the
directory takes this sweep, ``sweep.json``, the runs, and the aggregate written at the end."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from friendsim.commands import sweep as cli_sweep
from friendsim.rundir.layout import SWEEP_LOCK
from friendsim.sweep import aggregate as aggregate_module
from friendsim.sweep import runner
from friendsim.sweep.config import parse_sweep
from friendsim.sweep.runner import SWEEP_FILE, SweepDirError, run_sweep

SMALL = (
    '[experiment]\nname = "small"\nrounds = 1\nn_actions = 1\n[agents]\ncount = 3\n'
    'policy = "baseline"\n[sweep]\nreplications = 2\n'
)


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="friendsim")
    sp = p.add_subparsers(dest="command", required=True)
    cli_sweep.register(sp)
    args = p.parse_args(argv)
    return int(args.handler(args))


def test_a_second_sweep_cannot_start_while_the_first_writes_its_aggregate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second ``friendsim sweep`` into the folder, started just as the first one aggregates,
    is refused (exit 2, naming the first): the first still holds the lock. It used to be let
    in (the lock was released before the aggregate), rewrite ``sweep.json`` with every run
    ``pending`` and run the sweep again, while the first aggregated and printed that record."""
    cfg = tmp_path / "s.toml"
    cfg.write_text(SMALL)
    out = tmp_path / "out"
    real = aggregate_module.aggregate_sweep
    second: list[subprocess.CompletedProcess[str]] = []

    def aggregate_after_a_second_sweep(sweep_dir: str | Path, **kw: Any) -> dict[str, Any]:
        argv = ["sweep", str(cfg), "--out", str(out), "--jobs", "1"]
        second.append(
            subprocess.run(
                [sys.executable, "-m", "friendsim", *argv],
                capture_output=True,
                text=True,
                timeout=240,
            )
        )
        return real(sweep_dir, **kw)

    monkeypatch.setattr(aggregate_module, "aggregate_sweep", aggregate_after_a_second_sweep)
    assert _main(["sweep", str(cfg), "--out", str(out), "--jobs", "1", "--json"]) == 0
    agg = json.loads(capsys.readouterr().out)
    (done,) = second
    assert done.returncode == 2, done.stderr
    assert "the sweep is being written by process" in done.stderr
    assert "Traceback" not in done.stderr
    assert [c["completed"] for c in agg["cells"]] == [2]
    recorded = json.loads((out / SWEEP_FILE).read_text())
    assert recorded["status"] == "completed"
    assert all(r["status"] == "completed" and not r.get("resumed") for r in recorded["runs"])


def test_the_sweep_directory_is_checked_again_once_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another sweep of different settings wrote the folder between this sweep's first look at
    it and its lock (it ran and finished meanwhile): the folder is refused as a different sweep
    and that sweep's record stays as it was, instead of being written over."""
    cfg = tmp_path / "s.toml"
    cfg.write_text(SMALL)
    spec = parse_sweep(tomllib.loads(SMALL), source=cfg)
    other_cfg = tmp_path / "other.toml"
    other_cfg.write_text(SMALL.replace("replications = 2", "replications = 1"))
    other = parse_sweep(tomllib.loads(other_cfg.read_text()), source=other_cfg)
    out = tmp_path / "out"
    record = json.dumps({"kind": "sweep", "status": "completed", "spec": other.to_json(),
                         "runs": []})  # fmt: skip
    real_lock = runner._lock_sweep

    def lock_after_another_sweep(folder: Path) -> Any:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SWEEP_FILE).write_text(record)
        return real_lock(folder)

    monkeypatch.setattr(runner, "_lock_sweep", lock_after_another_sweep)
    with pytest.raises(SweepDirError, match="different sweep"):
        run_sweep(spec, out, jobs=1)
    assert (out / SWEEP_FILE).read_text() == record
    assert sorted(p.name for p in out.iterdir()) == sorted([SWEEP_FILE, SWEEP_LOCK])


def test_an_aggregate_written_from_an_older_sweep_record_is_not_served_as_current(
    tmp_path: Path,
) -> None:
    """``friendsim analyze`` of a sweep still running reads ``sweep.json`` (runs pending),
    and writes its aggregate only after the sweep has finished and written the final record and
    aggregate: that aggregate is newer than ``sweep.json`` but describes the older record. It
    used to be served from then on (by ``analyze`` and ``report``) as the finished sweep's;
    now an aggregate is used only for the record it was computed from."""
    cfg = tmp_path / "s.toml"
    cfg.write_text(SMALL)
    spec = parse_sweep(tomllib.loads(SMALL), source=cfg)
    out = tmp_path / "out"
    assert run_sweep(spec, out, jobs=1, aggregate=True).aggregate is not None
    record = out / SWEEP_FILE
    final = record.read_bytes()
    running = json.loads(final)
    running["status"] = "running"
    for run in running["runs"]:
        run["status"] = "pending"
    record.write_text(json.dumps(running))
    aggregate_module.aggregate_sweep(out)  # the reader's view of the running sweep...
    record.write_bytes(final)  # ...written after the sweep's final record
    then = (out / aggregate_module.AGGREGATE_FILE).stat().st_mtime_ns - 1_000_000_000
    os.utime(record, ns=(then, then))

    served = aggregate_module.load_or_aggregate(out)
    assert served["status"] == "completed"
    assert [c["completed"] for c in served["cells"]] == [2]
