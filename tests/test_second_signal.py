"""A second SIGINT or SIGTERM arriving while a stopped run's command ends: exit 130, the manifest
``interrupted``, no traceback, and the run resumes to the log an uninterrupted run writes.

The signals are raised by the process itself at chosen moments (``tests/signal_child.py``), so
each case hits its moment every time, however loaded the machine. Before, the event loop's
handlers were removed when the run ended, putting the defaults back: a second Ctrl-C while the
command wrote its stop line raised ``KeyboardInterrupt`` out of it (a traceback; killed by
SIGINT), and a second SIGTERM killed the process.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from friendsim.cli import main as cli_main

TESTS = Path(__file__).resolve().parent
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
    h = hashlib.sha256()
    with sqlite3.connect(f"file:{run / 'events.db'}?mode=ro", uri=True) as con:
        for row in con.execute("SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"):
            h.update(repr(row).encode() + b"\n")
    return h.hexdigest()


def status(run: Path) -> str:
    return str(json.loads((run / "manifest.json").read_text())["status"])


@pytest.mark.parametrize("point", ["stop-line", "exit"])
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_second_signal_while_the_stopped_run_s_command_ends_exits_130_and_resumes(
    tmp_path: Path, sig: str, point: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "sig.toml"
    cfg.write_text(CONFIG)
    run = tmp_path / "r"
    env = {
        **os.environ,
        "CHILD_SIGNAL": sig,
        "CHILD_POINT": point,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, str(TESTS / "signal_child.py"), "run", str(cfg), "--out", str(run),
         "--quiet"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"{sig}: stopping after window 1" in proc.stderr
    assert status(run) == "interrupted"
    assert cli_main(["run", "--resume", str(run), "--quiet"]) == 0
    assert cli_main(["run", str(cfg), "--out", str(tmp_path / "whole"), "--quiet"]) == 0
    assert status(run) == "completed"
    assert digest(run) == digest(tmp_path / "whole")


def test_in_process_a_second_ctrl_c_while_reporting_the_stop_is_absorbed_and_handlers_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``main`` in a caller's process: the same, and the caller's handlers are back after."""
    import friendsim.commands.run as run_command
    from friendsim.runtime.signals import WindowWatch

    cfg = tmp_path / "sig.toml"
    cfg.write_text(CONFIG)
    window_ended = WindowWatch.window_ended
    stopped_line = run_command.stopped_line

    def first(self: WindowWatch, tally: object) -> None:
        window_ended(self, tally)  # type: ignore[arg-type]
        if getattr(tally, "window", 0) == 1:
            signal.raise_signal(signal.SIGINT)

    def second(*args: object) -> str:
        signal.raise_signal(signal.SIGINT)
        return stopped_line(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(WindowWatch, "window_ended", first)
    monkeypatch.setattr(run_command, "stopped_line", second)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        code = cli_main(["run", str(cfg), "--out", str(tmp_path / "r"), "--quiet"])
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C escaped the command as KeyboardInterrupt")
    assert code == 130
    assert status(tmp_path / "r") == "interrupted"
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
