"""What the Ray executor makes of a sweep's replications already in ``--out`` before it submits
anything (no cluster needed: nothing is left to submit)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from friendsim.sweep.config import parse_sweep
from friendsim.sweep.runner import run_sweep

SMALL = (
    '[experiment]\nname = "small"\nrounds = 1\nn_actions = 1\n[agents]\ncount = 3\n'
    'policy = "baseline"\n[sweep]\nreplications = 2\n'
)


def test_a_completed_replication_that_cannot_be_analysed_is_recorded_failed_not_a_crash(
    tmp_path: Path,
) -> None:
    """A replication whose manifest says ``completed`` but whose event log is broken: the Ray
    executor records it failed with the reader's error, as the local executor does, keeps the
    good one, and goes on; it used to raise out of the sweep (a traceback, ``sweep.json`` left
    ``interrupted``)."""
    pytest.importorskip("ray")
    from friendsim.sweep.ray_executor import ray_outcomes

    cfg = tmp_path / "s.toml"
    cfg.write_text(SMALL)
    spec = parse_sweep(tomllib.loads(SMALL), source=cfg)
    out = tmp_path / "out"
    assert not run_sweep(spec, out, jobs=1).failed
    broken = out / "base" / "rep0"
    (broken / "analysis.json").unlink()
    (broken / "events.db").write_bytes(b"not a database")

    local = {r["dir"]: r for r in run_sweep(spec, out, jobs=1).runs}
    got = {
        plan.rel_dir: res
        for plan, res in ray_outcomes(
            spec.plans(), out, str(cfg), log_level="warning", shutdown=False
        )
    }
    assert got["base/rep1"]["status"] == "completed" and got["base/rep1"]["resumed"] is True
    bad = got["base/rep0"]
    assert bad["status"] == "failed" and not bad.get("resumed")
    assert bad["error"] == local["base/rep0"]["error"]
    assert "events.db" in bad["error"]
    assert (broken / "events.db").read_bytes() == b"not a database"  # left as it is


def test_a_task_s_archive_that_cannot_be_unpacked_fails_that_replication_only(
    tmp_path: Path,
) -> None:
    """A task's run comes back as an archive the driver cannot unpack (cut short, a full disk):
    that replication is recorded failed saying so, nothing is put in its place, and the sweep
    goes on; it used to raise out of the sweep."""
    from friendsim.sweep.ray_executor import receive

    outcome = {"status": "completed", "wall_seconds": 1.0, "error": None}
    res = receive(tmp_path, "base/rep0", dict(outcome), b"\x1f\x8b not a whole archive")
    assert res["status"] == "failed"
    assert "cannot unpack" in res["error"] and "base/rep0" in res["error"]
    assert not (tmp_path / "base" / "rep0").exists()
