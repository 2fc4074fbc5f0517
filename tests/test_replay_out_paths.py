"""Where a re-execution writes: never inside the run it reads (the source run is never
written), and a run named by a path without a name of its own (``.``, ``..``) is the folder
that path names."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_replay_support import config, rows

from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import ExperimentConfig
from friendsim.runtime.status import RunInterrupted
from friendsim.testing import stop_after_window

ROOT = Path(__file__).resolve().parents[1]


def baseline() -> ExperimentConfig:
    return config(rounds=3, agents=4, policy="baseline", coach=True)


def interrupted_run(run: Path) -> None:
    stop, listener = stop_after_window(1)
    with pytest.raises(RunInterrupted):
        asyncio.run(run_experiment(baseline(), out_dir=run, stop=stop, listener=listener))


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (relative): a file's bytes, ``None`` for a folder; the
    lock file aside (a resume takes the run's lock)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
        if p.name != "run.lock"
    }


def friendsim(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "friendsim", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.parametrize("how", ["resume", "fork", "rerun"])
def test_a_re_execution_into_a_folder_inside_its_source_run_is_refused(
    tmp_path: Path, how: str
) -> None:
    run = tmp_path / "run"
    if how == "resume":
        interrupted_run(run)
        argv = ["run", "--resume", "run", "--out", "run/sub/new"]
    else:
        asyncio.run(run_experiment(baseline(), out_dir=run))
        (tmp_path / "fork.toml").write_text(
            '[experiment]\nname = "replay-test"\nseed = 11\nrounds = 4\nn_actions = 2\n'
            'window_length = 600.0\ntick = 60.0\n[agents]\ncount = 4\npolicy = "baseline"\n'
            '[llm]\nprovider = "scripted"\ncache = "read_through"\nconcurrency = 4\n'
            '[coach]\nenabled = true\nkind = "rule"\n[feed]\nranker = "full"\nlimit = 40\n'
        )
        argv = (
            ["run", "fork.toml", "--fork", "run", "--at", "2", "--out", "run/sub/new"]
            if how == "fork"
            else ["replay", "run", "--rerun", "--out", "run/sub/new"]
        )
    before = tree(run)
    done = friendsim(*argv, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "inside" in done.stderr and "run/sub/new" in done.stderr
    assert "Traceback" not in done.stderr
    assert tree(run) == before


def test_a_run_resumed_from_inside_its_own_folder(tmp_path: Path) -> None:
    full = tmp_path / "full"
    asyncio.run(run_experiment(baseline(), out_dir=full))
    run = tmp_path / "run"
    interrupted_run(run)
    done = friendsim("run", "--resume", ".", "--quiet", cwd=run)
    assert done.returncode == 0, done.stderr
    assert rows(run / "events.db") == rows(full / "events.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "run", "run.interrupted"]
