"""A sweep command refused because ``friendsim analyze`` or ``friendsim report`` holds the sweep
lock (it reads the sweep whole) says the sweep is being read, and by which command and process:
the user waits for a reader, not for another sweep. It used to say the sweep "is being written"
by that process. The readers are real ``friendsim`` processes, held inside their lock."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from friendsim.sweep.config import parse_sweep
from friendsim.sweep.runner import run_sweep

SMALL = (
    '[experiment]\nname = "small"\nrounds = 1\nn_actions = 1\n[agents]\ncount = 3\n'
    'policy = "baseline"\n[sweep]\nreplications = 1\n'
)

HELD_READER = (
    "import sys\n"
    "import friendsim.commands.analyze as analyze\n"
    "import friendsim.report.render as render\n"
    "from friendsim.cli import main\n"
    "def held(*args, **kwargs):\n"
    "    print('reading', flush=True)\n"
    "    sys.stdin.read()\n"
    "    raise SystemExit(0)\n"
    "analyze.analyze_path = held\n"
    "render.write_report = held\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_a_sweep_refused_by_a_reader_names_the_reader(tmp_path: Path, command: str) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text(SMALL)
    out = tmp_path / "out"
    run_sweep(parse_sweep(tomllib.loads(SMALL), source=cfg), out, jobs=1)
    reader = subprocess.Popen(
        [sys.executable, "-c", HELD_READER, command, str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
        done = subprocess.run(
            [sys.executable, "-m", "friendsim", "sweep", str(cfg), "--out", str(out)],
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    finally:
        if reader.poll() is None:
            reader.kill()
        reader.wait()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "being written" not in done.stderr
    assert (
        f"{out}: the sweep is being read by process {reader.pid} (friendsim {command})"
        in done.stderr
    ), done.stderr
