"""An in-place resume takes over ``RUN.resuming`` only when it is what an earlier resume of
``RUN`` left there (its answers and its accounting are handed on); anything else in the way
(a file, a folder of other things, another run's resume) is refused by name (exit 2), left as
it was, and never deleted."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_replay_support import config, mind_factory, rows

from friendsim.replay.resume import STAGING_SUFFIX, resume
from friendsim.rundir.errors import RunInputError
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.status import RunInterrupted
from friendsim.testing import stop_after_window

ROOT = Path(__file__).resolve().parents[1]


def interrupted_run(run: Path, *, agents: int = 4) -> None:
    stop, listener = stop_after_window(1)
    with pytest.raises(RunInterrupted):
        asyncio.run(
            run_experiment(
                config(rounds=3, agents=agents),
                out_dir=run,
                llm_factory=mind_factory,
                stop=stop,
                listener=listener,
            )
        )


def interrupted_resume(run: Path) -> Path:
    """``run`` resumed in place and stopped again; returns the staging folder it leaves."""
    stop, listener = stop_after_window(2)
    with pytest.raises(RunInterrupted):
        asyncio.run(resume(run, llm_factory=mind_factory, stop=stop, listener=listener))
    return run.with_name(run.name + STAGING_SUFFIX)


def tree(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` (relative): a file's sha256, ``"/"`` for a folder."""
    return {
        str(p.relative_to(folder)): "/"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.name != "run.lock"
    }


def in_the_way(kind: str, tmp_path: Path, staging: Path) -> None:
    if kind == "file":
        staging.write_text("my notes\n")
    elif kind == "folder":
        staging.mkdir()
        (staging / "data.csv").write_text("a,b\n1,2\n")
    else:  # what a resume of another run left (another experiment: the same config and seed
        # make the same manifest, wall time aside, and so the same run as far as a resume knows)
        other = tmp_path / "other"
        interrupted_run(other, agents=5)
        interrupted_resume(other).rename(staging)


@pytest.mark.parametrize("kind", ["file", "folder", "other-run"])
def test_what_is_in_the_staging_folder_s_way_is_refused_and_kept(tmp_path: Path, kind: str) -> None:
    run = tmp_path / "run"
    interrupted_run(run)
    staging = run.with_name(run.name + STAGING_SUFFIX)
    in_the_way(kind, tmp_path, staging)
    before = tree(tmp_path)
    with pytest.raises(RunInputError, match=r"run\.resuming"):
        asyncio.run(resume(run, llm_factory=mind_factory))
    assert tree(tmp_path) == before
    done = subprocess.run(
        [sys.executable, "-m", "friendsim", "run", "--resume", str(run), "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "run.resuming" in done.stderr and "Traceback" not in done.stderr
    assert tree(tmp_path) == before


def test_an_earlier_resume_s_staging_folder_is_taken_over(tmp_path: Path) -> None:
    full = tmp_path / "full"
    asyncio.run(run_experiment(config(rounds=3), out_dir=full, llm_factory=mind_factory))
    run = tmp_path / "run"
    interrupted_run(run)
    interrupted_resume(run)
    report = asyncio.run(resume(run, llm_factory=mind_factory))
    assert report.status == "completed" and rows(run / "events.db") == rows(full / "events.db")
    segments = json.loads((run / "manifest.json").read_text())["segments"]
    assert [s["kind"] for s in segments] == ["original", "resume", "resume"]
