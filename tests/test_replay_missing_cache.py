"""A run whose manifest names its recorded model answers (``files.llm_cache``) but whose
``llm_cache.db`` is gone cannot be re-derived: resume, fork and rerun refuse it up front, naming
the file (exit 2), and create nothing; they used to re-run the prefix and stop on the first
cache miss (exit 1), leaving a ``failed`` staging or ``--out`` folder behind."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_replay_support import checksums, config, make_run, mind_factory

from friendsim.replay.fork import fork
from friendsim.replay.rerun import rerun
from friendsim.replay.resume import resume
from friendsim.rundir.errors import MissingFileError
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.status import RunInterrupted
from friendsim.testing import stop_after_window

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("missing-cache")
    asyncio.run(make_run(root / "completed", config(rounds=3)))
    stop, listener = stop_after_window(1)
    with pytest.raises(RunInterrupted):
        asyncio.run(
            run_experiment(
                config(rounds=3),
                out_dir=root / "interrupted",
                llm_factory=mind_factory,
                stop=stop,
                listener=listener,
            )
        )
    return {"completed": root / "completed", "interrupted": root / "interrupted"}


def without_cache(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    for p in copy.glob("llm_cache.db*"):
        p.unlink()
    return copy


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("how", ["resume", "resume-out", "fork", "rerun"])
async def test_a_run_without_its_recorded_answers_is_refused_up_front(
    runs: dict[str, Path], tmp_path: Path, how: str
) -> None:
    run = without_cache(runs["interrupted" if how.startswith("resume") else "completed"], tmp_path)
    before = checksums(run)
    out = tmp_path / "out"
    with pytest.raises(MissingFileError, match=r"llm_cache\.db"):
        if how == "resume":
            await resume(run, llm_factory=mind_factory)
        elif how == "resume-out":
            await resume(run, out_dir=out, llm_factory=mind_factory)
        elif how == "fork":
            await fork(run, config(rounds=4), at_window=2, out_dir=out, llm_factory=mind_factory)
        else:
            await rerun(run, out, llm_factory=mind_factory)
    assert names(tmp_path) == ["run"]
    assert checksums(run) == before


def test_friendsim_run_resume_of_a_run_without_its_answers_exits_2(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run = without_cache(runs["interrupted"], tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "friendsim", "run", "--resume", str(run), "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "llm_cache.db" in done.stderr and "Traceback" not in done.stderr
    assert names(tmp_path) == ["run"]
