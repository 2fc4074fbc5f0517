"""Sweeps on a real local Ray cluster: a head started here with ``ray start --head`` on 127.0.0.1
and reached through ``--address``, and ``ray.init`` in this process. The paper's configuration on
the baseline policy (30 agents), 1-3 rounds to keep the tests short."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from friendsim.commands import sweep as cli_sweep
from friendsim.sweep.config import load_sweep
from friendsim.sweep.runner import SWEEP_FILE, run_sweep

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "examples" / "paper.toml"
RAY = Path(sys.executable).with_name("ray")
# a throw-away cluster on this machine: no usage stats, no token (driver and head agree)
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def paper_sweep(tmp_path: Path, *, rounds: int, reps: int, grid: str, name: str) -> Path:
    text = PAPER.read_text(encoding="utf-8")
    for old, new in (
        ('policy = "llm"', 'policy = "baseline"'),
        ("rounds = 15", f"rounds = {rounds}"),
        ("thresholds = [0.01, 0.05, 0.1]", "thresholds = [0.05]"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    text += f"\n[sweep]\nreplications = {reps}\ngrid = {grid}\n"
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def log_digest(run_dir: Path) -> str:
    """SHA-256 over every ``events`` row, in order (the event log's content, byte for byte)."""
    h = hashlib.sha256()
    with sqlite3.connect(f"file:{run_dir / 'events.db'}?mode=ro", uri=True) as conn:
        for row in conn.execute("SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"):
            h.update(repr(row).encode())
    return h.hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster_pids(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == pgid:
                    out.append(int(d.name))
            except OSError:
                pass
    return out


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A one-node Ray cluster (2 CPUs) started with ``ray start --head``; stopped afterwards."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="fsray", dir="/tmp")  # short: Ray's socket paths must fit
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
         "--node-ip-address=127.0.0.1"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, "ray start --head exited"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "Ray head did not come up in 120 s"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops its processes on SIGTERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        deadline = time.monotonic() + 30
        while _cluster_pids(head.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = _cluster_pids(head.pid)
        for pid in left:  # only processes of the cluster this fixture started
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)  # its sessions' logs and sockets, Ray stopped
        assert not left, f"Ray processes left after stopping the head: {left}"


def _sweep_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "friendsim", "sweep", *args],
        env=ENV, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip


@pytest.mark.slow
def test_ray_cluster_grid_is_byte_identical_to_local(tmp_path: Path, ray_head: str) -> None:
    cfg = paper_sweep(
        tmp_path, rounds=1, reps=2, grid='{ "coach.enabled" = [true, false] }', name="grid"
    )
    local = run_sweep(load_sweep(cfg), tmp_path / "local", jobs=2)
    assert not local.failed
    ray_out = tmp_path / "ray"
    proc = _sweep_cli(
        str(cfg), "--out", str(ray_out), "--executor", "ray", "--address", ray_head, "--json"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4/4" in proc.stderr  # the progress bar counted every task
    agg = json.loads(proc.stdout)
    assert [c["completed"] for c in agg["cells"]] == [2, 2]
    sweep = json.loads((ray_out / SWEEP_FILE).read_text())
    assert sweep["executor"] == "ray" and sweep["status"] == "completed"
    for run in sweep["runs"]:
        assert run["status"] == "completed"
        assert run["verified_events"] == _event_rows(ray_out / run["dir"]) > 0
        assert run["worker"]["pid"] != os.getpid()
        rd = run["dir"]
        assert log_digest(ray_out / rd) == log_digest(tmp_path / "local" / rd), rd
        manifest = json.loads((ray_out / rd / "manifest.json").read_text())
        assert manifest["status"] == "completed" and manifest["config_file"] == str(cfg)
    # replication seeds differ, so identity is not trivial
    assert log_digest(ray_out / sweep["runs"][0]["dir"]) != log_digest(
        ray_out / sweep["runs"][1]["dir"]
    )


def _task_pids() -> list[int]:
    """Processes that are running a sweep replication as a Ray task (Ray's process title)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::run_replication"):
                out.append(int(d.name))
    return out


def _running_a_run() -> list[int]:
    """Ray task processes that hold an event log open (a run under way, in the worker's own
    directory; warm workers finish a short run in well under a second, so a fixed delay after
    the task starts may land after its end)."""
    found = []
    for pid in _task_pids():
        try:
            targets = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if any(t.endswith("events.db") for t in targets):
            found.append(pid)
    return found


@pytest.mark.slow
def test_worker_killed_mid_task_is_retried(tmp_path: Path, ray_head: str) -> None:
    cfg = paper_sweep(tmp_path, rounds=6, reps=2, grid='{ "coach.enabled" = [true] }', name="kill")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "friendsim", "sweep", str(cfg), "--out", str(out),
         "--executor", "ray", "--address", ray_head],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not (running := _running_a_run()):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no Ray task started a run"
            time.sleep(0.05)
        victim = running[0]  # a task with its run's event log open: killed mid-run
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    sweep = json.loads((out / SWEEP_FILE).read_text())
    assert [r["status"] for r in sweep["runs"]] == ["completed", "completed"]
    assert victim not in {r["worker"]["pid"] for r in sweep["runs"]}  # re-run elsewhere
    for r in sweep["runs"]:
        assert r["verified_events"] == _event_rows(out / r["dir"]) > 0
        assert (out / r["dir"] / "analysis.json").is_file()
    assert not list(out.rglob("*.incoming")) and not list(out.rglob("*.rejected-*"))
    # the killed attempt's run, left in its scratch folder, came back with the re-run and is
    # kept beside its replication, so what it spent is counted with the cell's spend
    (kept,) = out.rglob("rep*.stale-*")
    (killed,) = [r for r in sweep["runs"] if r.get("earlier_attempts")]
    assert killed["earlier_attempts"] == [str(kept)]
    assert kept.name.startswith(Path(killed["dir"]).name + ".stale-")
    assert json.loads((kept / "manifest.json").read_text())["status"] != "completed"
    from friendsim.sweep.aggregate import aggregate_sweep

    spent = aggregate_sweep(out, write=False)["cells"][0]["spent_usd"]
    assert spent["runs"] == 2 and spent["attempts"] == 3
    from friendsim.sweep.ray_executor import scratch_key

    for r in sweep["runs"]:  # the scratch folders are removed
        assert not (
            Path(tempfile.gettempdir()) / f"friendsim-task-{scratch_key(out, r['dir'])}"
        ).exists()


@pytest.fixture
def ray_in_process() -> Iterator[None]:
    import ray

    temp = tempfile.mkdtemp(prefix="fsray", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    assert not ray.is_initialized()


@pytest.mark.slow
def test_interrupted_ray_sweep_resumes_without_redoing_runs(
    tmp_path: Path, ray_in_process: None
) -> None:
    cfg = paper_sweep(
        tmp_path, rounds=1, reps=3, grid='{ "coach.enabled" = [false] }', name="resume"
    )
    spec = load_sweep(cfg)
    out = tmp_path / "out"
    first: list[dict] = []

    def interrupt(outcome: dict) -> None:
        first.append(dict(outcome))
        raise KeyboardInterrupt  # Ctrl-C right after the first run came back

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, executor="ray", on_done=interrupt)
    assert json.loads((out / SWEEP_FILE).read_text())["status"] == "interrupted"
    done_dir = first[0]["dir"]
    assert first[0]["status"] == "completed"
    digest = log_digest(out / done_dir)
    mtime = (out / done_dir / "events.db").stat().st_mtime_ns

    res = run_sweep(spec, out, executor="ray")
    assert not res.failed and len(res.runs) == 3
    by_dir = {r["dir"]: r for r in res.runs}
    assert by_dir[done_dir]["resumed"] is True
    assert [r["dir"] for r in res.runs if not r.get("resumed")] == sorted(set(by_dir) - {done_dir})
    assert (out / done_dir / "events.db").stat().st_mtime_ns == mtime  # not redone
    assert log_digest(out / done_dir) == digest
    assert json.loads((out / SWEEP_FILE).read_text())["status"] == "completed"


def test_ray_executor_without_ray_installed_gives_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    cfg = paper_sweep(tmp_path, rounds=1, reps=1, grid="{}", name="noray")
    p = argparse.ArgumentParser(prog="friendsim")
    cli_sweep.register(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["sweep", str(cfg), "--out", str(tmp_path / "o"), "--executor", "ray"])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert "pip install 'friendsim[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    args = p.parse_args(["sweep", str(cfg), "--address", "127.0.0.1:1"])
    assert args.handler(args) == 2
    assert "--address needs --executor ray" in capsys.readouterr().err


def _event_rows(run_dir: Path) -> int:
    """Rows of the run's event log (what the driver's verification must have counted)."""
    import sqlite3

    conn = sqlite3.connect(run_dir / "events.db")
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.slow
def test_a_ray_sweep_s_runs_of_a_persona_file_are_kept_when_the_sweep_is_run_again(
    tmp_path: Path, ray_in_process: None
) -> None:
    """A Ray task runs on a scratch copy of the persona file, so the manifest names that copy,
    not the sweep's file: a re-run of the sweep (on Ray or locally) still knows each run as its
    replication (the same config, the file's path aside) and keeps it, not refusing it as a run
    of another experiment."""
    people = tmp_path / "people.jsonl"
    made = subprocess.run(
        [sys.executable, "-m", "friendsim", "personas", "generate", "--n", "30", "--seed", "4",
         "--out", str(people)],
        env=ENV, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    cfg = paper_sweep(
        tmp_path, rounds=1, reps=2, grid='{ "coach.enabled" = [false] }', name="files"
    )
    cfg.write_text(
        cfg.read_text().replace('personas = "synthetic"', 'personas = "people.jsonl"'),
        encoding="utf-8",
    )
    spec = load_sweep(cfg)
    out = tmp_path / "out"
    first = run_sweep(spec, out, executor="ray")
    assert not first.failed, first.failed
    for run in first.runs:
        recorded = json.loads((out / run["dir"] / "manifest.json").read_text())["config"]
        assert recorded["agents"]["personas"] != "people.jsonl"  # the task's scratch copy
    for executor in ("ray", "local"):
        again = run_sweep(spec, out, executor=executor)
        assert not again.failed, again.failed
        assert all(r["resumed"] is True for r in again.runs), executor
