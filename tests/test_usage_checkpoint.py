"""The usage checkpoint of a running run: the ledger reaches the manifest while the run goes,
and a slow manifest write (a large population's) spaces the next one out."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from friendsim.rundir.manifest import new_manifest, read_manifest
from friendsim.runtime import usage_checkpoint
from friendsim.runtime.usage_checkpoint import UsageCheckpoint


class _Ledger:
    """A ledger whose usage changes at every look (a run that keeps calling its model)."""

    def __init__(self) -> None:
        self.calls = 0

    def to_json(self) -> dict[str, Any]:
        self.calls += 1
        return {"total": {"calls": self.calls}}


async def _writes_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, duty: float, seconds: float
) -> tuple[int, int]:
    await asyncio.to_thread(tmp_path.mkdir)
    real = usage_checkpoint.write_manifest
    started: list[float] = []

    def slow_write(run_dir: Path, manifest: Any) -> Path:
        started.append(time.perf_counter())
        time.sleep(0.02)  # what a large manifest costs, scaled down
        return real(run_dir, manifest)

    monkeypatch.setattr(usage_checkpoint, "write_manifest", slow_write)
    ledger = _Ledger()
    manifest = new_manifest(name="cp", status="running", mode="rounds")
    checkpoint = UsageCheckpoint(tmp_path, manifest, ledger, 0.005, duty=duty)  # type: ignore[arg-type]
    checkpoint.start()
    await asyncio.sleep(seconds)
    await checkpoint.close()
    written = read_manifest(tmp_path)
    assert written.status == "running"
    assert 0 < written.llm_usage["total"]["calls"] <= ledger.calls
    return checkpoint.writes, len(started)


async def test_a_slow_write_spaces_the_next_one_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paced, _ = await _writes_in(tmp_path / "paced", monkeypatch, duty=10, seconds=0.8)
    eager, _ = await _writes_in(tmp_path / "eager", monkeypatch, duty=1, seconds=0.8)
    # duty 10: after a write of >= 20 ms, the next one waits >= 0.2 s
    assert 1 <= paced <= 4
    # duty 1: the interval (5 ms) and the write itself set the pace (a write every ~45 ms)
    assert eager >= 6 and eager > 2 * paced
