"""``friendsim replay`` writes its diagnostic log lines to stderr, redacted, at ``--log-level``
(default ``warning``), like ``friendsim run``: stdout holds only its JSON summary, so it can be
piped to a JSON reader."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_replay_support import config, make_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay-logging") / "run"
    asyncio.run(make_run(out, config(rounds=2, agents=3, policy="baseline")))
    return out


def replay(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "friendsim", "replay", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.parametrize("level", [None, "info"])
def test_a_rerun_s_stdout_is_its_json_summary_alone(
    run: Path, tmp_path: Path, level: str | None
) -> None:
    argv = [str(run), "--rerun", "--out", str(tmp_path / "again")]
    done = replay(*argv, *([] if level is None else ["--log-level", level]))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["identical"] is True
    assert ("run_finished" in done.stderr) == (level == "info")
