"""Interrupting a local sweep: the sweep stops its replications (none runs on, nor starts, once
it says it was interrupted) and ``sweep.json`` says which replications were interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from friendsim.sweep.runner import SWEEP_FILE

LONG = (
    '[experiment]\nname = "long"\nrounds = 60\nn_actions = 3\n[agents]\ncount = 80\n'
    'policy = "baseline"\n[sweep]\nreplications = 3\n'
)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell job inherits SIG_IGN


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["sweep-only", "process-group", "sigterm"],
)
def test_an_interrupted_sweep_stops_its_runs_and_records_them_interrupted(
    tmp_path: Path, sig: signal.Signals, group: bool
) -> None:
    """SIGINT while two replications run and a third waits (``--jobs 2``), sent to the sweep
    alone (``kill -INT``) or to its process group (Ctrl-C), or SIGTERM sent to the sweep (which
    used to end it at once, ``sweep.json`` left ``running``): the sweep exits 130 within seconds
    (a replication takes far longer), ``sweep.json`` says ``interrupted`` and records every
    replication it did not finish as ``interrupted``, not ``pending``; no replication completes
    after the sweep said it was interrupted (it used to finish the queued one, or all of them,
    before exiting). The same command then resumes: every replication ends completed, each
    interrupted one set aside."""
    cfg = tmp_path / "long.toml"
    cfg.write_text(LONG)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "friendsim", "sweep", str(cfg), "--out", str(out), "--jobs", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=_default_sigint,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("base/rep*/events.db"))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1.0)
        (os.killpg if group else os.kill)(proc.pid, sig)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=120)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert took < 15, f"the sweep ran on for {took:.1f} s after {sig.name}"
    recorded = json.loads((out / SWEEP_FILE).read_text())
    assert recorded["status"] == "interrupted"
    runs = {r["dir"]: r for r in recorded["runs"]}
    unfinished = [d for d, r in runs.items() if r["status"] != "completed"]
    assert unfinished, "every replication completed: the interrupt came too late to test"
    for d in unfinished:
        assert runs[d]["status"] == "interrupted", runs[d]
        assert runs[d]["error"], runs[d]
        manifest = out / d / "manifest.json"
        if manifest.is_file():  # started: stopped, not run to the end
            assert json.loads(manifest.read_text())["status"] != "completed", d

    again = subprocess.run(
        [sys.executable, "-m", "friendsim", "sweep", str(cfg), "--out", str(out), "--jobs", "2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    redone = {r["dir"]: r for r in json.loads((out / SWEEP_FILE).read_text())["runs"]}
    assert all(r["status"] == "completed" for r in redone.values())
    for d in unfinished:
        assert not redone[d].get("resumed")


TINY = (
    '[experiment]\nname = "tiny"\nrounds = 2\nn_actions = 3\n[agents]\ncount = 12\n'
    'policy = "baseline"\n[sweep]\nreplications = 3\n'
)


def test_a_replication_that_completes_while_the_sweep_stops_is_recorded_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the local pool still runs a replication: closing the executor waits for its
    workers, so a replication past its last stop point (scoring, analysing) completes then, and
    its outcome never reaches the sweep. ``sweep.json`` used to record it ``interrupted`` while
    its manifest said ``completed``; it now says ``completed``, the one never run stays
    ``interrupted`` and the sweep ``interrupted``."""
    from friendsim.sweep import runner
    from friendsim.sweep.config import parse_sweep

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    spec = parse_sweep(tomllib.loads(TINY), source=cfg)
    out = tmp_path / "out"

    def pool(plans, out_dir, source, *, jobs, log_level):  # type: ignore[no-untyped-def]
        first, second = plans[0], plans[1]
        try:
            yield first, runner.execute_plan(first.data, str(out_dir / first.rel_dir), source)
        finally:  # as pool.shutdown(wait=True): a worker past its stop points finishes
            runner.execute_plan(second.data, str(out_dir / second.rel_dir), source)

    def interrupt(outcome: dict[str, object]) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "local_outcomes", pool)
    with pytest.raises(KeyboardInterrupt):
        runner.run_sweep(spec, out, on_done=interrupt)
    recorded = json.loads((out / SWEEP_FILE).read_text())
    assert recorded["status"] == "interrupted"
    runs = {r["dir"]: r for r in recorded["runs"]}
    assert json.loads((out / "base/rep1/manifest.json").read_text())["status"] == "completed"
    assert runs["base/rep0"]["status"] == "completed"
    assert runs["base/rep1"]["status"] == "completed", runs["base/rep1"]
    assert runs["base/rep1"]["error"] is None
    assert runs["base/rep2"]["status"] == "interrupted"
    assert not (out / "base/rep2").exists()


@pytest.mark.slow
def test_sigint_to_a_sweep_of_short_runs_records_what_their_manifests_say(tmp_path: Path) -> None:
    """SIGINT to ``friendsim sweep`` whose replications take a fraction of a second: a run that
    completes while the sweep stops its workers is recorded ``completed`` (it used to be
    recorded ``interrupted`` in most such sweeps), and every run recorded otherwise did not
    complete."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.replace("replications = 3", "replications = 40"))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "friendsim", "sweep", str(cfg), "--out", str(out), "--jobs", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=_default_sigint,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("base/rep*/manifest.json"))) < 4:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    recorded = json.loads((out / SWEEP_FILE).read_text())
    assert recorded["status"] == "interrupted"
    for run in recorded["runs"]:
        manifest = out / run["dir"] / "manifest.json"
        done = manifest.is_file() and json.loads(manifest.read_text())["status"] == "completed"
        assert (run["status"] == "completed") is done, (run, done)
