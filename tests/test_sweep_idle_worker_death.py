"""A local sweep worker that dies while idle (between replications, or before its first) was
running none of the replications its broken pool lost: none of them is charged with its death,
and the retries still end when such deaths keep coming with no replication finishing."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from llm_stub_server import StubLLMServer, mind_responder

from friendsim.rundir.lock import holder
from friendsim.sweep import runner
from friendsim.sweep.config import load_sweep

KEY_ENV = "FRIENDSIM_IDLE_DEATH_KEY"
KILLED, ENDED = -signal.SIGKILL, -signal.SIGTERM


def _procs(**exits: int) -> dict[int, SimpleNamespace]:
    return {int(pid[1:]): SimpleNamespace(exitcode=code) for pid, code in exits.items()}


def test_a_worker_that_died_idle_charges_none_of_the_replications_beside_it() -> None:
    """Worker 1 started ``a`` (finished: not among those lost) and died idle; worker 2, ended by
    the pool, was running ``b``; ``c`` was queued. None is charged (all run again). The old
    code fell back to charging every running replication: ``b``, whose worker was healthy."""
    charge = runner._charged({"b", "c"}, {"a": 1, "b": 2}, _procs(p1=KILLED, p2=ENDED), spare=True)
    assert charge.runs == frozenset() and charge.spared


def test_a_worker_that_died_before_starting_anything_charges_none() -> None:
    charge = runner._charged({"b", "c"}, {"b": 2}, _procs(p1=KILLED, p2=ENDED), spare=True)
    assert charge.runs == frozenset() and charge.spared


def test_past_the_bound_an_idle_death_is_charged_as_when_the_dead_worker_is_unknown() -> None:
    """Not spared (the caller's bound reached): charged to those running, else to all lost, as
    when no worker is known to have died."""
    procs = _procs(p1=KILLED, p2=ENDED)
    assert runner._charged({"b", "c"}, {"a": 1, "b": 2}, procs, spare=False) == runner._Charge(
        runs=frozenset({"b"})
    )
    assert runner._charged({"b", "c"}, {"a": 1}, procs, spare=False) == runner._Charge(
        runs=frozenset({"b", "c"})
    )


def test_a_dead_worker_running_a_lost_replication_is_charged_it_alone() -> None:
    procs = _procs(p1=KILLED, p2=ENDED, p3=0)
    for spare in (True, False):
        charge = runner._charged({"b", "c", "d"}, {"a": 1, "b": 1, "c": 2}, procs, spare=spare)
        assert charge == runner._Charge(runs=frozenset({"b"}))


def test_when_no_worker_is_known_dead_the_death_is_charged_as_before() -> None:
    """Every worker ended by SIGTERM (or cleanly): those running, else every one lost."""
    procs = _procs(p1=ENDED, p2=0)
    assert runner._charged({"b", "c"}, {"b": 2}, procs, spare=True).runs == {"b"}
    assert runner._charged({"b", "c"}, {"a": 1}, procs, spare=True).runs == {"b", "c"}
    assert runner._charged({"b", "c"}, {}, {}, spare=True).runs == {"b", "c"}


Script = Callable[[list[str]], tuple[dict[str, str], list[tuple[str, int]], dict[int, int]]]
"""One pool's fate, from the run folders submitted to it: the folders that finish (their
status), the folders each worker pid started, and how each worker pid exited."""


class _ScriptedPool:
    """Stands in for the process pool: once everything is submitted (the watch submit), the
    pool's :data:`Script` decides which futures finish and which the broken pool loses."""

    def __init__(self, script: Script, pools: list[int], initargs: Any) -> None:
        pools.append(0)
        self._script = script
        self._started = initargs[3]
        self._futures: dict[str, Future[Any]] = {}
        self._processes: dict[int, SimpleNamespace] = {}

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        if fn is not int:
            self._futures[args[1]] = fut
            return fut
        done, started, exits = self._script(list(self._futures))
        for item in started:
            self._started.put(item)
        self._processes.update({pid: SimpleNamespace(exitcode=c) for pid, c in exits.items()})
        for run_dir, f in self._futures.items():
            if run_dir in done:
                f.set_result({"status": done[run_dir], "wall_seconds": 0.0, "error": None})
            else:
                f.set_exception(BrokenProcessPool("a worker died"))
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


def _drive(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, replications: int, script: Script
) -> tuple[dict[str, dict[str, Any]], int]:
    """:func:`runner.local_outcomes` over ``replications`` plans, each pool's fate scripted:
    every outcome by run folder, and how many pools it made."""
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        '[experiment]\nname = "s"\nrounds = 1\n[agents]\ncount = 2\npolicy = "baseline"\n'
        f"[sweep]\nreplications = {replications}\n"
    )
    pools: list[int] = []
    monkeypatch.setattr(
        runner,
        "ProcessPoolExecutor",
        lambda **kw: _ScriptedPool(script, pools, kw["initargs"]),
    )
    plans = load_sweep(cfg).plans()
    stream = runner.local_outcomes(plans, tmp_path / "out", str(cfg), jobs=2, log_level="warning")
    return {p.rel_dir: res for p, res in stream}, len(pools)


def test_idle_deaths_with_nothing_finishing_are_let_go_a_bounded_number_of_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pool breaks at once: worker 1 dies before starting anything, nothing finishes.
    The first :data:`IDLE_DEATHS` deaths charge nobody; then each is charged to all the
    replications lost, which fail after :data:`WORKER_RETRIES` re-runs: the sweep ends."""
    got, pools = _drive(monkeypatch, tmp_path, 2, lambda dirs: ({}, [], {1: KILLED, 2: ENDED}))
    assert pools == runner.IDLE_DEATHS + runner.WORKER_RETRIES + 1
    assert {d: r["status"] for d, r in got.items()} == {
        "base/rep0": "failed",
        "base/rep1": "failed",
    }
    assert all(f"died {runner.WORKER_RETRIES + 1} times" in r["error"] for r in got.values())


def test_a_worker_dying_idle_after_each_replication_it_finishes_fails_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In every pool worker 1 finishes the first replication submitted and dies idle, while
    worker 2 runs the last one (ended by the broken pool): more idle deaths than
    :data:`IDLE_DEATHS` plus :data:`WORKER_RETRIES`, yet each came after a replication finished,
    so none is charged and all complete. The old code charged each death to the last
    replication (the one running), failing it after its fourth."""
    n = runner.IDLE_DEATHS + runner.WORKER_RETRIES + 2

    def script(dirs: list[str]) -> tuple[dict[str, str], list[tuple[str, int]], dict[int, int]]:
        if len(dirs) == 1:
            return {dirs[0]: "completed"}, [(dirs[0], 1)], {1: 0}
        return {dirs[0]: "completed"}, [(dirs[0], 1), (dirs[-1], 2)], {1: KILLED, 2: ENDED}

    got, pools = _drive(monkeypatch, tmp_path, n, script)
    assert {r["status"] for r in got.values()} == {"completed"} and len(got) == n, got
    assert pools == n


CONFIG = f"""
[experiment]
name = "idle"
seed = 3
rounds = 2
n_actions = 1
[agents]
count = 4
policy = "llm"
[llm]
provider = "openai:{{url}}#m"
retries = 0
timeout_s = 120.0
concurrency = 4
api_key_env = "{KEY_ENV}"
[sweep]
replications = 1
grid = {{ "agents.policy" = ["llm", "baseline"] }}
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_a_worker_killed_idle_between_replications_charges_the_running_one_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--jobs 2``, the local executor: one worker runs the ``llm`` replication, whose first
    model request the stub holds; the other runs the ``baseline`` one, returns it, and is then
    SIGKILLed, idle. The pool breaks and the ``llm`` replication, cut short (set aside), runs
    again, its requests answered now. With no re-run allowed for a replication whose worker
    died (``WORKER_RETRIES = 0``), it still completes: the idle worker's death is charged to no
    replication. The old code charged it to the replication running beside it, recorded failed
    ("a worker process died 1 times")."""
    monkeypatch.setattr(runner, "WORKER_RETRIES", 0)
    monkeypatch.setenv(KEY_ENV, "idle-death-key")
    asked, answer, done = threading.Event(), threading.Event(), threading.Event()
    mind = mind_responder()

    def responder(api: str, body: dict[str, Any]) -> Any:
        if not answer.is_set():  # the first pool's requests: held until the test ends
            asked.set()
            done.wait()
        return mind(api, body)

    out = tmp_path / "out"
    with StubLLMServer(responder=responder) as stub:
        cfg = tmp_path / "idle.toml"
        cfg.write_text(CONFIG.replace("{url}", stub.openai_base_url))
        plans = load_sweep(cfg).plans()
        assert [p.rel_dir for p in plans] == [
            "agents.policy-llm/rep0",
            "agents.policy-baseline/rep0",
        ]
        llm_dir, base_dir = (out / p.rel_dir for p in plans)
        stream = runner.local_outcomes(plans, out, str(cfg), jobs=2, log_level="warning")
        try:
            first, res = next(stream)  # the llm replication cannot end: its requests are held
            assert first.rel_dir == plans[1].rel_dir and res["status"] == "completed", res
            assert asked.wait(60), "the llm replication never asked the model"
            idle_pid = int((base_dir / "run.lock").read_text().split()[0])
            busy_pid = holder(llm_dir)
            assert busy_pid is not None and busy_pid != idle_pid
            assert _alive(idle_pid) and _alive(busy_pid)
            os.kill(idle_pid, signal.SIGKILL)
            answer.set()
            rest = list(stream)
        finally:
            done.set()
            stream.close()
    assert [(p.rel_dir, r["status"]) for p, r in rest] == [(plans[0].rel_dir, "completed")], rest
    assert rest[0][1]["set_aside"] == str(llm_dir.with_name("rep0.stale-1"))
    assert json.loads((llm_dir / "manifest.json").read_text())["status"] == "completed"
    assert not _alive(busy_pid)
