"""Real sweeps through the runtime: the paper's configuration on the baseline policy,
3 replications x coach on/off (2 rounds instead of 15 to keep the test short), in parallel
worker processes; then failures, resuming and a foreign output directory."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from friendsim.commands import sweep as cli_sweep
from friendsim.sweep.config import load_sweep, parse_sweep
from friendsim.sweep.runner import SWEEP_FILE, SweepDirError, run_sweep

PAPER = Path(__file__).resolve().parents[1] / "examples" / "paper.toml"


def paper_sweep(tmp_path: Path, *, rounds: int = 2) -> Path:
    text = PAPER.read_text(encoding="utf-8")
    for old, new in (
        ('policy = "llm"', 'policy = "baseline"'),
        ("rounds = 15", f"rounds = {rounds}"),
        ("thresholds = [0.01, 0.05, 0.1]", "thresholds = [0.05]"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    text += '\n[sweep]\nreplications = 3\ngrid = { "coach.enabled" = [true, false] }\n'
    path = tmp_path / "paper_sweep.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="friendsim")
    sp = p.add_subparsers(dest="command", required=True)
    cli_sweep.register(sp)
    args = p.parse_args(argv)
    return int(args.handler(args))


@pytest.mark.slow
def test_paper_baseline_sweep_has_confidence_intervals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = paper_sweep(tmp_path)
    out = tmp_path / "sweep"
    assert _main(["sweep", str(cfg), "--out", str(out), "--jobs", "2", "--json"]) == 0
    agg = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in agg["cells"]] == ["coach.enabled-true", "coach.enabled-false"]
    seeds = {}
    for cell in agg["cells"]:
        assert cell["completed"] == 3 and cell["failed"] == []
        for k in range(3):
            manifest = json.loads((out / cell["name"] / f"rep{k}" / "manifest.json").read_text())
            assert manifest["status"] == "completed"
            assert manifest["config"]["coach"]["enabled"] is (cell["name"] == "coach.enabled-true")
            assert manifest["config"]["agents"]["count"] == 30
            seeds.setdefault(k, set()).add(manifest["seeds"]["seed"])
        m = cell["metrics"]
        for key in ("reward.all.total.mean", "reward.all.total.w2", "ties.0.05.density"):
            s = m[key]
            assert s["n"] == 3
            assert s["lower"] <= s["mean"] <= s["upper"], key
        # different seeds give different runs, so the interval has a width
        total = m["reward.all.total.mean"]
        assert total["upper"] - total["lower"] > 0
        assert total["sd"] > 0
    assert all(len(s) == 1 for s in seeds.values()) and len(set().union(*seeds.values())) == 3
    assert (out / "aggregate.json").is_file() and (out / "aggregate.md").is_file()
    table = (out / "aggregate.md").read_text()
    assert "[" in table and "coach.enabled=true (n=3)" in table

    # resuming: completed runs are kept, not re-run
    spec = load_sweep(cfg)
    res = run_sweep(spec, out, jobs=2)
    assert len(res.runs) == 6 and not res.failed
    assert all(r.get("resumed") for r in res.runs)


def test_sweep_with_bad_grid_key_or_missing_persona_file_exits_2_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = '[experiment]\nname = "n"\nrounds = 1\n[agents]\ncount = 3\npolicy = "baseline"\n'
    for sweep, needle in (
        ('grid = { "experiment.name.x" = [1, 2] }', '[sweep].grid."experiment.name.x"'),
        ('grid = { "agents.personas" = ["nofile.jsonl"] }', "persona file not found"),
    ):
        cfg = tmp_path / "s.toml"
        cfg.write_text(base + f"[sweep]\nreplications = 1\n{sweep}\n")
        assert _main(["sweep", str(cfg), "--out", str(tmp_path / "out"), "--jobs", "1"]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err
        assert not (tmp_path / "out").exists()


def test_failed_run_is_recorded_and_others_complete(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        '[experiment]\nrounds = 1\nn_actions = 1\n[agents]\ncount = 3\npolicy = "baseline"\n'
        '[sweep]\nreplications = 1\ngrid = { "agents.personas" = ["synthetic", "missing.jsonl"] }\n'
    )
    # parsed without the file check of load_sweep: the persona file is missing when the run starts
    spec = parse_sweep(tomllib.loads(cfg.read_text()), source=cfg)
    done: list[dict] = []
    res = run_sweep(spec, tmp_path / "out", jobs=2, on_done=done.append)
    status = {r["cell"]: r for r in res.runs}
    assert status["agents.personas-synthetic"]["status"] == "completed"
    bad = status["agents.personas-missing.jsonl"]
    assert bad["status"] == "failed" and "missing.jsonl" in bad["error"]
    assert len(done) == 2
    recorded = json.loads((tmp_path / "out" / SWEEP_FILE).read_text())
    assert recorded["status"] == "partial"
    assert {r["status"] for r in recorded["runs"]} == {"completed", "failed"}
    assert (tmp_path / "out" / "agents.personas-synthetic" / "rep0" / "analysis.json").is_file()

    # resuming: an unfinished run directory is set aside (kept) and run again
    good = tmp_path / "out" / "agents.personas-synthetic" / "rep0"
    manifest = json.loads((good / "manifest.json").read_text())
    manifest["status"] = "running"
    (good / "manifest.json").write_text(json.dumps(manifest))
    again = {r["cell"]: r for r in run_sweep(spec, tmp_path / "out", jobs=1).runs}
    redo = again["agents.personas-synthetic"]
    assert redo["status"] == "completed" and not redo.get("resumed")
    assert redo["set_aside"] == str(good.with_name("rep0.stale-1"))
    assert (good.with_name("rep0.stale-1") / "events.db").is_file()
    assert json.loads((good / "manifest.json").read_text())["status"] == "completed"

    other = tmp_path / "other.toml"
    other.write_text(cfg.read_text().replace("replications = 1", "replications = 2"))
    with pytest.raises(SweepDirError, match="different sweep"):
        run_sweep(
            parse_sweep(tomllib.loads(other.read_text()), source=other), tmp_path / "out", jobs=1
        )

    # load_sweep finds the missing file before anything is created: exit 2 from the command
    assert _main(["sweep", str(cfg), "--out", str(tmp_path / "new"), "--jobs", "1"]) == 2
    assert not (tmp_path / "new").exists()


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_local_workers_die_when_the_sweep_is_killed(tmp_path: Path) -> None:
    cfg = paper_sweep(tmp_path, rounds=6)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "friendsim", "sweep", str(cfg), "--out", str(out), "--jobs", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # wait until both workers run a replication (their run directories hold a log)
        while len(list(out.glob("*/rep*/events.db"))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        workers = [
            pid
            for pid in _children(proc.pid)
            if b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
            and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(workers) == 2
        proc.kill()  # SIGKILL: no handler, no clean-up in the parent
        proc.wait()
        deadline = time.monotonic() + 10  # a 6-round replication takes far longer than this
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "pool workers outlived the sweep"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    runs = json.loads((out / SWEEP_FILE).read_text())["runs"]
    assert not any(r["status"] == "completed" for r in runs)  # they really were cut short


SMALL = (
    '[experiment]\nname = "small"\nrounds = 1\nn_actions = 1\n[agents]\ncount = 3\n'
    'policy = "baseline"\n[sweep]\nreplications = 2\n'
)


def test_a_second_sweep_into_a_directory_being_swept_is_refused_and_touches_nothing(
    tmp_path: Path,
) -> None:
    """Another process holds the sweep's lock (a sweep running into ``out``): ``friendsim
    sweep`` into the same folder exits 2 naming that process, and writes nothing there; it
    used to go on and set aside, as unfinished, the runs the first sweep was writing."""
    from friendsim.rundir.layout import SWEEP_LOCK
    from friendsim.rundir.lock import RunLock

    cfg = tmp_path / "s.toml"
    cfg.write_text(SMALL)
    out = tmp_path / "out"
    out.mkdir()
    (out / SWEEP_FILE).write_text(
        json.dumps({"kind": "sweep", "status": "running",
                    "spec": parse_sweep(tomllib.loads(SMALL), source=cfg).to_json()})
    )  # fmt: skip
    rep0 = out / "base" / "rep0"
    rep0.mkdir(parents=True)
    (rep0 / "manifest.json").write_text('{"status": "running"}')
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with RunLock(out, name=SWEEP_LOCK, what="sweep"):
        done = subprocess.run(
            [sys.executable, "-m", "friendsim", "sweep", str(cfg), "--out", str(out),
             "--jobs", "1"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"the sweep is being written by process {os.getpid()}" in done.stderr
    assert "Traceback" not in done.stderr
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != SWEEP_LOCK}
    assert after == before and not list(out.glob("base/rep0.stale-*"))

    # Once the first is done, the same command runs the sweep (the unfinished rep0 set aside).
    again = subprocess.run(
        [sys.executable, "-m", "friendsim", "sweep", str(cfg), "--out", str(out), "--jobs", "1"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (out / "base" / "rep0.stale-1" / "manifest.json").is_file()
    assert json.loads((rep0 / "manifest.json").read_text())["status"] == "completed"


def test_a_replication_being_written_by_another_command_is_not_set_aside(tmp_path: Path) -> None:
    """``friendsim run --out`` writing into a sweep's replication folder holds that run's lock:
    the sweep leaves it where it is, records the replication failed with the reason, and runs
    the others."""
    from friendsim.rundir.lock import RunLock

    cfg = tmp_path / "s.toml"
    cfg.write_text(SMALL)
    spec = parse_sweep(tomllib.loads(SMALL), source=cfg)
    out = tmp_path / "out"
    busy = out / "base" / "rep0"
    busy.mkdir(parents=True)
    (busy / "manifest.json").write_text('{"status": "running"}')
    with RunLock(busy):
        res = {r["dir"]: r for r in run_sweep(spec, out, jobs=1).runs}
    assert res["base/rep0"]["status"] == "failed"
    assert f"being written by process {os.getpid()}" in res["base/rep0"]["error"]
    assert res["base/rep1"]["status"] == "completed"
    assert json.loads((busy / "manifest.json").read_text()) == {"status": "running"}
    assert not list(busy.parent.glob("rep0.stale-*"))


def test_a_ray_task_s_run_is_not_put_over_a_replication_being_written(tmp_path: Path) -> None:
    """The Ray executor's driver puts each task's run directory in its place; one another
    command is writing there stays as it is, and the task is recorded failed with the reason."""
    from friendsim.rundir.lock import RunLock
    from friendsim.sweep.ray_executor import pack_run, receive

    cfg = tmp_path / "s.toml"
    cfg.write_text(SMALL)
    done = run_sweep(parse_sweep(tomllib.loads(SMALL), source=cfg), tmp_path / "a", jobs=1)
    assert {r["status"] for r in done.runs} == {"completed"}
    archive = pack_run(tmp_path / "a" / "base" / "rep0")
    busy = tmp_path / "b" / "base" / "rep0"
    busy.mkdir(parents=True)
    (busy / "manifest.json").write_text('{"status": "running"}')
    outcome = {"status": "completed", "wall_seconds": 1.0, "error": None}
    with RunLock(busy):
        res = receive(tmp_path / "b", "base/rep0", dict(outcome), archive)  # type: ignore[arg-type]
    assert res["status"] == "failed" and f"process {os.getpid()}" in res["error"]
    assert json.loads((busy / "manifest.json").read_text()) == {"status": "running"}
    assert sorted(p.name for p in busy.parent.iterdir()) == ["rep0"]
    placed = receive(tmp_path / "b", "base/rep0", dict(outcome), archive)  # type: ignore[arg-type]
    assert placed["status"] == "completed" and placed["set_aside"].endswith("rep0.stale-1")


PAPER_SWEEP = Path(__file__).resolve().parents[1] / "examples" / "paper_sweep.toml"
CONTINUOUS = Path(__file__).resolve().parents[1] / "examples" / "continuous.toml"


def _shrunk(example: Path, target: Path, changes: tuple[tuple[str, str], ...]) -> Path:
    text = example.read_text(encoding="utf-8")
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    target.write_text(text, encoding="utf-8")
    return target


def tiny_paper_sweep(tmp_path: Path, *, extra: tuple[tuple[str, str], ...] = ()) -> Path:
    """examples/paper_sweep.toml at tiny sizes: 2 rounds, 6 agents, 2 replications x coach
    on/off."""
    return _shrunk(
        PAPER_SWEEP,
        tmp_path / "sw.toml",
        (
            ("rounds = 15", "rounds = 2"),
            ("count = 30", "count = 6"),
            ("replications = 3", "replications = 2"),
            ("thresholds = [0.01, 0.05, 0.1]", "thresholds = [0.05]"),
            *extra,
        ),
    )


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_replication_folder_holding_a_run_of_another_experiment_is_refused_not_adopted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completed run of another experiment (examples/continuous.toml, seed 1, written with
    ``friendsim run --out``) in one replication folder: the sweep neither adopts it as that
    replication nor sets it aside; the replication is recorded failed naming the folder and
    what differs, the sweep exits 1, the other replications complete, the foreign run's files
    stay byte for byte as they were, and a re-run refuses it again."""
    cfg = tiny_paper_sweep(tmp_path)
    foreign_cfg = _shrunk(
        CONTINUOUS,
        tmp_path / "big.toml",
        (("count = 50", "count = 5"), ("duration = 43200.0", "duration = 7200.0")),
    )
    out = tmp_path / "sweeps" / "s3"
    foreign = out / "coach.enabled-true" / "rep0"
    foreign.parent.mkdir(parents=True)
    made = subprocess.run(
        [sys.executable, "-m", "friendsim", "run", str(foreign_cfg), "--out", str(foreign),
         "--quiet"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert json.loads((foreign / "manifest.json").read_text())["status"] == "completed"
    before = _digests(foreign)
    spec = load_sweep(cfg)
    seed0 = spec.seeds[0]
    assert seed0 != 1
    monkeypatch.setenv("COLUMNS", "1000")  # the progress console prints each line unwrapped

    for attempt in range(2):  # the first sweep, then a re-run: refused both times
        code = _main(["sweep", str(cfg), "--out", str(out), "--jobs", "1", "--json"])
        captured = capsys.readouterr()
        assert code == 1, captured.err
        assert "Traceback" not in captured.err
        recorded = json.loads((out / SWEEP_FILE).read_text())
        assert recorded["status"] == "partial"
        runs = {r["dir"]: r for r in recorded["runs"]}
        refused = runs["coach.enabled-true/rep0"]
        assert refused["status"] == "failed" and not refused.get("resumed")
        error = refused["error"]
        assert f"{foreign} holds a run of another experiment" in error, error
        assert f"seed 1, not {seed0}" in error, error
        assert "experiment.mode continuous, not rounds" in error, error
        assert "move it away or choose another --out" in error, error
        assert error in captured.err  # shown as the replication fails
        others = {d: r for d, r in runs.items() if d != "coach.enabled-true/rep0"}
        assert len(others) == 3 and all(r["status"] == "completed" for r in others.values())
        assert all(bool(r.get("resumed")) == (attempt == 1) for r in others.values())
        # the foreign run: where it was, byte for byte, not set aside, not analysed by the sweep
        assert _digests(foreign) == before
        assert sorted(p.name for p in foreign.parent.iterdir()) == ["rep0", "rep1"]
        agg = json.loads(captured.out)
        by_cell = {c["name"]: c for c in agg["cells"]}
        assert by_cell["coach.enabled-true"]["completed"] == 1
        assert by_cell["coach.enabled-false"]["completed"] == 2


def test_a_replication_interrupted_and_resumed_in_place_is_still_adopted(tmp_path: Path) -> None:
    """A sweep's replication stopped after its first window (as Ctrl-C would stop it) and then
    finished in place with ``friendsim run --resume``: its manifest records the config a resume
    pins (the run's own persona copy for the persona file, the read-through cache for
    ``cache = "off"``), yet it is that replication, so a re-run of the sweep keeps it (not
    refused, not run again) and runs the others."""
    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.config import parse_config
    from friendsim.runtime.status import RunInterrupted
    from friendsim.testing import stop_after_window

    people = tmp_path / "people.jsonl"
    made = subprocess.run(
        [sys.executable, "-m", "friendsim", "personas", "generate", "--n", "6", "--seed", "3",
         "--out", str(people)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    cfg = tiny_paper_sweep(
        tmp_path,
        extra=(
            ('personas = "synthetic"', 'personas = "people.jsonl"'),
            ('cache = "read_through"', 'cache = "off"'),
        ),
    )
    spec = load_sweep(cfg)
    plan = spec.plans()[0]
    out = tmp_path / "out"
    rep = out / plan.rel_dir
    stop, listener = stop_after_window(1)
    with pytest.raises(RunInterrupted):
        asyncio.run(
            run_experiment(
                parse_config(plan.data, source=str(cfg)),
                out_dir=rep,
                config_path=str(cfg),
                stop=stop,
                listener=listener,
            )
        )
    resumed = subprocess.run(
        [sys.executable, "-m", "friendsim", "run", "--resume", str(rep), "--quiet"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((rep / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["resumed_from"]
    assert manifest["config"]["agents"]["personas"] == "personas.jsonl"
    assert manifest["config"]["llm"]["cache"] == "read_through"
    before = _digests(rep)

    res = run_sweep(spec, out, jobs=2)
    by_dir = {r["dir"]: r for r in res.runs}
    assert not res.failed, res.failed
    assert by_dir[plan.rel_dir]["resumed"] is True
    assert [d for d, r in by_dir.items() if not r.get("resumed")] == [
        p.rel_dir for p in spec.plans()[1:]
    ]
    kept = _digests(rep)
    assert {k: v for k, v in kept.items() if k != "analysis.json"} == {
        k: v for k, v in before.items() if k != "analysis.json"
    }  # adopted as it is (only its analysis cache is written, as for any kept run)
