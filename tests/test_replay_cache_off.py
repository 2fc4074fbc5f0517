"""A run recorded with ``[llm] cache = "off"`` kept none of its model answers: resuming it past a
complete window, forking it or re-running it is refused up front (exit 2, nothing created, the
run untouched) instead of re-running its windows to the first request and leaving a ``failed``
run behind. A run that asked no model, or ended no window, still resumes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_replay_support import checksums, config, make_run, mind_factory, rows

from friendsim.cli import main as cli_main
from friendsim.replay.resume import resume
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import ExperimentConfig
from friendsim.runtime.status import RunInterrupted
from friendsim.testing import stop_after_window

FORK_CONFIG = """
[experiment]
name = "replay-test"
seed = 11
rounds = 3
n_actions = 2
window_length = 600.0
tick = 60.0

[agents]
count = 4
policy = "llm"

[llm]
provider = "scripted"
cache = "off"
concurrency = 4

[coach]
enabled = true
kind = "rule"

[feed]
ranker = "full"
limit = 40
"""


def cache_off(**kw: Any) -> ExperimentConfig:
    cfg = config(**kw)
    return cfg.model_copy(update={"llm": cfg.llm.model_copy(update={"cache": "off"})})


def interrupted(run: Path, cfg: ExperimentConfig) -> None:
    """``cfg`` run into ``run`` and stopped after window 1, as a Ctrl-C would stop it."""
    stop, listener = stop_after_window(1)
    with pytest.raises(RunInterrupted):
        asyncio.run(
            run_experiment(cfg, out_dir=run, llm_factory=mind_factory, stop=stop, listener=listener)
        )


def refused(capsys: pytest.CaptureFixture[str], run: Path, *argv: str) -> str:
    """``friendsim replay run ARGV``: exit 2 naming the cache mode; returns its error line."""
    code = cli_main(["replay", str(run), *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert 'cache = "off"' in err and "[agents] policy = 'llm'" in err and "Traceback" not in err
    return err


def test_resume_of_a_cache_off_llm_run_is_refused_leaving_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    interrupted(run, cache_off(rounds=3))
    before = checksums(run)

    refused(capsys, run, "--resume")
    refused(capsys, run, "--resume", "--out", str(tmp_path / "resumed"))

    assert checksums(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no run.resuming, no --out


def test_rerun_and_fork_of_a_cache_off_llm_run_are_refused_leaving_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    asyncio.run(make_run(run, cache_off(rounds=2)))
    fork_cfg = tmp_path / "fork.toml"
    fork_cfg.write_text(FORK_CONFIG, encoding="utf-8")
    before = checksums(run)

    refused(capsys, run, "--rerun", "--out", str(tmp_path / "rerun"))
    refused(capsys, run, "--fork", str(fork_cfg), "--at", "1", "--out", str(tmp_path / "fork"))

    assert checksums(run) == before
    assert not (tmp_path / "rerun").exists() and not (tmp_path / "fork").exists()


@pytest.mark.parametrize("what", ["no model asked", "no window ended"])
def test_a_cache_off_run_needing_no_recorded_answer_still_resumes(
    tmp_path: Path, what: str
) -> None:
    cfg = cache_off(rounds=3, policy="baseline", coach=True)
    if what == "no model asked":
        interrupted(tmp_path / "run", cfg)
    else:
        cfg = cache_off(rounds=3)
        stop = asyncio.Event()
        stop.set()  # stopped before its first window completed
        with pytest.raises(RunInterrupted):
            asyncio.run(
                run_experiment(cfg, out_dir=tmp_path / "run", llm_factory=mind_factory, stop=stop)
            )
    asyncio.run(run_experiment(cfg, out_dir=tmp_path / "full", llm_factory=mind_factory))

    report = asyncio.run(resume(tmp_path / "run", llm_factory=mind_factory))

    assert report.status == "completed"
    assert rows(tmp_path / "run" / "events.db") == rows(tmp_path / "full" / "events.db")
