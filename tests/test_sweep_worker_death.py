"""A local sweep whose worker process dies (the kernel's OOM killer, a ``kill -9``): that
replication is run again in a new worker, as Ray re-runs a task whose worker died, and the
other replications are neither failed nor dropped with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from friendsim.sweep.runner import SWEEP_FILE

MEDIUM = (
    '[experiment]\nname = "medium"\nrounds = 20\nn_actions = 3\n[agents]\ncount = 50\n'
    'policy = "baseline"\n[sweep]\nreplications = 3\n'
)


def _workers(pid: int) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmdline = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"resource_tracker" not in cmdline:
            found.append(int(d.name))
    return found


def _writer(run_dir: Path) -> int | None:
    try:
        text = (run_dir / "run.lock").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@pytest.mark.slow
def test_a_killed_worker_s_replication_runs_again_and_the_others_go_on(tmp_path: Path) -> None:
    """SIGKILL to the worker running ``rep0`` while another runs ``rep1`` and ``rep2`` waits:
    the sweep ends completed (exit 0) with all three replications completed, ``rep0`` run
    again (its cut-short run set aside as ``rep0.stale-1``). It used to record all three
    failed with ``BrokenProcessPool`` (the one killed, the one running beside it, and the one
    that never started) and exit 1."""
    cfg = tmp_path / "m.toml"
    cfg.write_text(MEDIUM)
    out = tmp_path / "out"
    rep0 = out / "base" / "rep0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "friendsim", "sweep", str(cfg), "--out", str(out), "--jobs", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while (victim := _writer(rep0)) not in _workers(proc.pid) or not (
            rep0 / "events.db"
        ).is_file():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=500)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    recorded = json.loads((out / SWEEP_FILE).read_text())
    assert recorded["status"] == "completed"
    runs = {r["dir"]: r for r in recorded["runs"]}
    assert all(r["status"] == "completed" for r in runs.values()), runs
    assert runs["base/rep0"]["set_aside"] == str(rep0.with_name("rep0.stale-1"))
    assert (
        json.loads((rep0.with_name("rep0.stale-1") / "manifest.json").read_text())["status"]
        != "completed"
    )
    for d in ("base/rep1", "base/rep2"):
        assert json.loads((out / d / "manifest.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_a_replication_whose_worker_keeps_dying_does_not_fail_the_ones_queued_behind_it(
    tmp_path: Path,
) -> None:
    """``--jobs 1``: the worker running ``rep0`` is killed each time it starts it, until ``rep0``
    is recorded failed (one death, then :data:`WORKER_RETRIES` re-runs). ``rep1`` and ``rep2``
    waited in the queue all along: their workers never died, so they run and complete. Each
    death used to be charged to every replication the broken pool had not finished, so the two
    that never started were recorded failed with ``rep0`` ("a worker process died 4 times")."""
    from friendsim.sweep.runner import WORKER_RETRIES

    cfg = tmp_path / "m.toml"
    cfg.write_text(MEDIUM)
    out = tmp_path / "out"
    rep0 = out / "base" / "rep0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "friendsim", "sweep", str(cfg), "--out", str(out), "--jobs", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    killed: list[int] = []
    try:
        deadline = time.monotonic() + 300
        for _ in range(WORKER_RETRIES + 1):
            while (victim := _writer(rep0)) in killed or victim not in _workers(proc.pid):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            assert victim is not None
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        _, err = proc.communicate(timeout=500)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err  # a replication failed
    recorded = json.loads((out / SWEEP_FILE).read_text())
    runs = {r["dir"]: r for r in recorded["runs"]}
    assert runs["base/rep0"]["status"] == "failed"
    assert f"died {WORKER_RETRIES + 1} times" in runs["base/rep0"]["error"]
    for d in ("base/rep1", "base/rep2"):
        assert runs[d]["status"] == "completed", runs[d]
        assert json.loads((out / d / "manifest.json").read_text())["status"] == "completed"
    assert sorted(p.name for p in rep0.parent.glob("rep0.stale-*")) == [
        f"rep0.stale-{k}" for k in range(1, WORKER_RETRIES + 1)
    ]


@pytest.mark.slow
def test_a_replication_running_beside_a_dying_worker_is_not_charged_its_death(
    tmp_path: Path,
) -> None:
    """``--jobs 2``: the worker running ``rep0`` is killed as soon as both replications are
    running, each time, until ``rep0`` is recorded failed. ``rep1``'s worker never died: each
    time the pool broke it was cut short (set aside) and ran again, uncharged, and it completes.
    Each death used to be charged to every replication the pool was running, so ``rep1`` was
    recorded failed with ``rep0`` ("a worker process died 4 times"); and the death of the
    worker spawned last often went unseen until ``rep1`` had finished beside it."""
    from friendsim.rundir.lock import holder
    from friendsim.sweep.runner import WORKER_RETRIES

    cfg = tmp_path / "m.toml"
    cfg.write_text(
        MEDIUM.replace("replications = 3", "replications = 2").replace("rounds = 20", "rounds = 40")
    )
    out = tmp_path / "out"
    rep0, rep1 = out / "base" / "rep0", out / "base" / "rep1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "friendsim", "sweep", str(cfg), "--out", str(out), "--jobs", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    killed: list[int] = []
    beside: list[int] = []
    try:
        deadline = time.monotonic() + 200
        for _ in range(WORKER_RETRIES + 1):
            while True:  # both running, in two live workers of the current pool
                assert proc.poll() is None and time.monotonic() < deadline, (killed, beside)
                victim, other = holder(rep0), holder(rep1)  # their run locks are held
                workers = _workers(proc.pid)
                if (
                    victim not in killed
                    and victim in workers
                    and other in workers
                    and other != victim
                    and (rep0 / "events.db").is_file()
                    and (rep1 / "events.db").is_file()
                ):
                    break
                time.sleep(0.05)
            assert victim is not None and other is not None
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            beside.append(other)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err  # rep0 failed
    runs = {r["dir"]: r for r in json.loads((out / SWEEP_FILE).read_text())["runs"]}
    assert runs["base/rep0"]["status"] == "failed"
    assert f"died {WORKER_RETRIES + 1} times" in runs["base/rep0"]["error"]
    assert runs["base/rep1"]["status"] == "completed", runs["base/rep1"]
    assert json.loads((rep1 / "manifest.json").read_text())["status"] == "completed"
    assert sorted(p.name for p in rep1.parent.glob("rep1.stale-*")) == [
        f"rep1.stale-{k}" for k in range(1, WORKER_RETRIES + 2)
    ]
    assert not set(beside) & set(killed)
