"""``friendsim analyze`` and ``friendsim report`` on a sweep directory a ``friendsim sweep`` is
writing: refused (exit 2, naming the process that holds ``sweep.lock``) instead of aggregating
the replications finished so far as if they were the sweep, and writing ``aggregate.json`` or
``report.html`` into the folder beside the sweep's own writes. The lock is held by a real second
process, as a running sweep holds it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sweep_aggregate import build_sweep_dir

from friendsim.rundir.layout import SWEEP_FILE, SWEEP_LOCK

HOLD = (
    "import sys\n"
    "from friendsim.rundir.lock import RunLock\n"
    "lock = RunLock(sys.argv[1], name=sys.argv[2], what='sweep').acquire(create=False)\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.fixture
def running_sweep(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A sweep directory whose ``sweep.lock`` another process holds (its record ``running``)."""
    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2)
    record = json.loads((sd / SWEEP_FILE).read_text())
    record["status"] = "running"
    (sd / SWEEP_FILE).write_text(json.dumps(record))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(sd), SWEEP_LOCK],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield sd, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "friendsim", *args], capture_output=True, text=True, timeout=300
    )


def test_analyze_and_report_refuse_a_sweep_being_written(
    running_sweep: tuple[Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    sd, holder = running_sweep
    before = sorted(p.name for p in sd.iterdir())
    for args in (
        ("analyze", str(sd)),
        ("analyze", str(sd), "--refresh", "--json"),
        ("report", str(sd)),
        ("report", str(sd), "--out", str(tmp_path / "r.html")),
    ):
        done = _cli(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        assert f"{sd}: the sweep is being written by process {holder.pid}" in done.stderr, args
        assert done.stdout == ""
    assert sorted(p.name for p in sd.iterdir()) == before  # no aggregate, no report written
    assert not (tmp_path / "r.html").exists()

    assert holder.stdin is not None
    holder.stdin.close()  # the sweep ends: its lock is released
    assert holder.wait(timeout=60) == 0
    done = _cli("analyze", str(sd), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "sweep"
    assert (sd / "aggregate.json").is_file()
