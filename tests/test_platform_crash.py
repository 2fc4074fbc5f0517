"""A process killed with SIGKILL mid write-burst leaves a database that opens and replays."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from friendsim.platform import Platform
from friendsim.rundir.verify import verify_db

CHILD = Path(__file__).with_name("platform_crash_child.py")


@pytest.mark.parametrize(("seed", "reports"), [(1, 3), (2, 8), (3, 15)])
async def test_sigkill_mid_burst_keeps_every_reported_commit(
    tmp_path: Path, seed: int, reports: int
) -> None:
    db = tmp_path / "crash.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(db), str(seed), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    reported = 0
    try:
        for _ in range(reports):
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line.startswith(b"committed "), line
            reported = int(line.split()[1])
    finally:
        proc.send_signal(signal.SIGKILL)  # right after a report: the child is mid-burst
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert reported > 30

    p = await Platform.open(db)
    try:
        assert p.committed_seq >= reported
        seqs = [e.seq async for e in p.events()]
        assert seqs == list(range(1, p.committed_seq + 1))
        # the reopened platform accepts new commands, continuing the sequence
        e = await p.create_post("u0", text="after the crash", topic="t0")
        assert e.seq == p.committed_seq + 1
    finally:
        await p.close()
    assert verify_db(db).divergence is None
