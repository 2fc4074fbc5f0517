"""Ctrl-C and SIGTERM in ``friendsim replay --rerun`` and ``--redrive``, as in ``friendsim run``
(:mod:`friendsim._signals`): one signal stops a re-run after the window, two stop it at once;
either way it ends ``interrupted``, exit 130, no traceback, and ``friendsim run --resume`` takes
it to the log an uninterrupted run writes. The signals are raised by the process itself at
chosen moments (``tests/replay_signal_child.py``), so each case hits its moment every time.

Before, a re-run did not hold the signals: a Ctrl-C cancelled it inside a commit (the run ended
``failed`` with a traceback, exit 1), a SIGTERM killed it with the manifest left saying
``running`` and its temporary copy of the old log behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from signal_support import CONFIG, digest, manifest

from friendsim.cli import main as cli_main

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recorded")
    (folder / "sig.toml").write_text(CONFIG)
    assert cli_main(["run", str(folder / "sig.toml"), "--out", str(folder / "run"), "--quiet"]) == 0
    return folder / "run"


def child(
    tmp_path: Path, sig: str, point: str, *argv: str, count: int = 1
) -> subprocess.CompletedProcess[str]:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "CHILD_SIGNAL": sig,
        "CHILD_POINT": point,
        "CHILD_COUNT": str(count),
        "TMPDIR": str(scratch),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, str(TESTS / "replay_signal_child.py"), *argv],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_stopped_rerun_is_interrupted_and_resumes_to_the_recorded_log(
    recorded: Path, tmp_path: Path, sig: str, count: int
) -> None:
    new = tmp_path / "again"
    proc = child(tmp_path, sig, "window-1", "replay", str(recorded), "--rerun", "--out", str(new),
                 count=count)  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"{sig}: stopping after window 1" in proc.stderr
    assert ("again: stopping now" in proc.stderr) == (count == 2), proc.stderr
    assert f"friendsim run --resume {new}" in proc.stderr.splitlines()[-1]
    m = manifest(new)
    assert (m["status"], m["stop_reason"]) == ("interrupted", "stop"), m
    assert m["windows"] == 1
    assert not any((tmp_path / "scratch").iterdir()), "the re-run's temporary files were left"
    assert cli_main(["run", "--resume", str(new), "--quiet"]) == 0
    assert manifest(new)["status"] == "completed"
    assert digest(new) == digest(recorded)


def test_signals_after_the_rerun_s_last_window_change_nothing(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two Ctrl-C at the end of the last window: the run ends as it would, and the comparison
    with the old log and the manifest's ``rerun_of`` are written in full."""
    new = tmp_path / "again"
    proc = child(tmp_path, "SIGINT", "window-3", "replay", str(recorded), "--rerun", "--out",
                 str(new), count=2)  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["identical"] is True
    m = manifest(new)
    assert m["status"] == "completed" and m["rerun_of"]["identical"] is True, m
    assert digest(new) == digest(recorded)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_rerun_stopped_before_it_began_writes_nothing(
    recorded: Path, tmp_path: Path, sig: str
) -> None:
    new = tmp_path / "again"
    proc = child(tmp_path, sig, "before", "replay", str(recorded), "--rerun", "--out", str(new))
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "nothing written" in proc.stderr, proc.stderr
    assert not new.exists()
    assert not any((tmp_path / "scratch").iterdir())


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("action", ["fork", "resume"])
def test_a_stopped_replay_fork_or_resume_exits_130_with_its_resume_line(
    recorded: Path, tmp_path: Path, action: str, count: int
) -> None:
    """``friendsim replay RUN --fork`` / ``--resume`` stopped after window 2 (one signal) or at
    once (two): exit 130, one line saying how to resume, no traceback. Stopped at once, the
    run's cancellation used to escape the command as ``CancelledError`` (a traceback, exit 1).
    A resume into ``--out NEW`` that recorded its run there says to resume NEW (it used to name
    the original, whose resume starts over)."""
    new = tmp_path / "new"
    if action == "fork":
        argv = ["replay", str(recorded), "--fork", str(recorded.parent / "sig.toml"), "--at", "1"]
        resumed = new
    else:
        stopped = tmp_path / "stopped"
        first = child(tmp_path, "SIGINT", "window-1", "run", str(recorded.parent / "sig.toml"),
                      "--out", str(stopped), "--quiet")  # fmt: skip
        assert first.returncode == 130, first.stderr
        argv, resumed = ["replay", str(stopped), "--resume"], new  # go on where it went on
    proc = child(tmp_path, "SIGTERM", "window-2", *argv, "--out", str(new), count=count)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert ("again: stopping now" in proc.stderr) == (count == 2), proc.stderr
    assert f"friendsim run --resume {resumed}" in proc.stderr.splitlines()[-1], proc.stderr
    assert manifest(new)["status"] == "interrupted"
    if action == "resume":
        assert manifest(stopped)["status"] == "interrupted"  # a resume's original is untouched
    assert cli_main(["run", "--resume", str(new), "--quiet"]) == 0
    assert manifest(new)["status"] == "completed"
    assert digest(new) == digest(recorded)


@pytest.mark.parametrize("out", [False, True])
def test_two_signals_while_a_resume_copies_the_run_leave_nothing_half_made(
    recorded: Path, tmp_path: Path, out: bool
) -> None:
    """Two Ctrl-C while the resume's set-up copies the run's files (a worker thread): exit 130,
    one line, the original untouched, no staging or ``--out`` folder left, and the same command
    then resumes to the recorded log. The second signal used to cancel the await, not the copy:
    the clean-up removed the folder first and the copy then made it again, half filled, so an
    ``--out`` resume was refused next time ("exists and is not an empty directory")."""
    run = tmp_path / "run"
    stopped = child(tmp_path, "SIGINT", "window-1", "run", str(recorded.parent / "sig.toml"),
                    "--out", str(run), "--quiet")  # fmt: skip
    assert stopped.returncode == 130, stopped.stderr
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    argv = ["run", "--resume", str(run)] + (["--out", str(tmp_path / "new")] if out else [])
    proc = child(tmp_path, "SIGINT", "setup-copy", *argv, count=2)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "again: stopping now" in proc.stderr, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert "interrupted" in last, proc.stderr
    assert last.endswith(f"resume again with: friendsim run --resume {' '.join(argv[2:])}"), last
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "scratch"]
    assert not any((tmp_path / "scratch").iterdir()), "the resume's temporary files were left"
    assert cli_main([*argv, "--quiet"]) == 0
    assert digest(tmp_path / "new" if out else run) == digest(recorded)
