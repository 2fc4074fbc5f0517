"""Run every replication of every grid cell of a sweep, in parallel worker processes or on Ray.

Two executors run the plans: ``local`` (this module: a process pool on this machine) and ``ray``
(:mod:`friendsim.sweep.ray_executor`: one Ray task per replication on a cluster). Both call
:func:`~friendsim.sweep.execute.execute_plan` (:mod:`friendsim.sweep.execute`: one replication
into its folder, and what else the executors share), so the same seeds give byte-identical event
logs on either.

Each run goes into ``<out>/<cell>/rep<k>`` through the runtime's
:func:`friendsim.runtime.assembly.run_experiment`, then has its text-based tie evidence scored
when it asks for it (:func:`friendsim.runtime.tie_scoring.score_run_ties`) and is analysed
(:func:`friendsim.analysis.analyze.load_analysis`, cached as ``analysis.json``) inside the same
worker, so analysis is parallel too. Runs are independent processes (``spawn`` start method: no
state inherited from the parent), at most ``jobs`` at a time.

A failed run does not stop the sweep: it is recorded with its error and left out of the
aggregate. Re-running a sweep into the same directory resumes it: runs whose manifest says
``completed`` are kept (not re-run); a run directory left unfinished (crash, Ctrl-C, failure) is
renamed to ``rep<k>.stale-<n>`` (kept for inspection, never deleted) and the run starts afresh. ``<out>/sweep.json`` records the
spec, every run's status and the wall time, rewritten atomically as runs finish.

A run is kept or set aside only when it is the replication its folder stands for: the config its
manifest records equals the one the sweep starts that replication with
(:func:`~friendsim.sweep.execute.replication_mismatch`). A run of another experiment there (``friendsim run --out`` into
the sweep, a folder copied in) is left exactly as it is, and its replication is recorded failed
saying what differs (``ForeignRunError``), before any executor sees it
(:func:`~friendsim.sweep.execute.foreign_runs`).

Local workers die with the sweep: each sets ``PR_SET_PDEATHSIG`` (Linux) so the kernel kills it
when the parent process dies, even by SIGKILL; elsewhere a watchdog thread polls the parent pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from friendsim._signals import settling
from friendsim.rundir.errors import RunDirError
from friendsim.rundir.layout import SWEEP_FILE, SWEEP_LOCK
from friendsim.rundir.lock import RunLock
from friendsim.sweep.config import Replication, SweepSpec
from friendsim.sweep.execute import PlanStream, RunOutcome, execute_plan, foreign_runs, read_status
from friendsim.sweep.interrupt import StopFlag, not_started, unfinished

log = structlog.get_logger(__name__)


class SweepDirError(ValueError):
    """The output directory holds a different sweep (another spec)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SweepResult:
    """A finished sweep: its directory, every run's outcome, the total wall time and, when
    asked for, its aggregate (:func:`friendsim.sweep.aggregate.aggregate_sweep`)."""

    out_dir: Path
    runs: tuple[RunOutcome, ...]
    wall_seconds: float
    aggregate: Mapping[str, Any] | None = None

    @property
    def failed(self) -> tuple[RunOutcome, ...]:
        """Runs that did not complete."""
        return tuple(r for r in self.runs if r["status"] != "completed")


EXECUTORS = ("local", "ray")
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` (its parent) dies, however it dies.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, then a check that the parent did not die before
    the call (the kernel would not signal then). Elsewhere: a daemon thread that polls the
    parent's pid once a second and exits the process when it changes.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent_pid:
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


_WORKER_STOP: StopFlag | None = None
"""The sweep's stop flag, in a local worker (:mod:`friendsim.sweep.interrupt`)."""

_WORKER_STARTED: Any = None
"""Where a local worker says which replication it starts, and its pid (a ``SimpleQueue``): the
replication a dead worker was running, told from those the other workers of its pool were
running and those the pool only had queued."""


def _worker_init(
    log_level: str, parent_pid: int, stop: StopFlag | None = None, started: Any = None
) -> None:
    global _WORKER_STOP, _WORKER_STARTED
    from friendsim.runtime.logs import configure_logging

    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sweep stops its runs: ``stop``
    _WORKER_STOP = stop
    _WORKER_STARTED = started
    configure_logging(log_level)


def _worker_plan(plan_data: Mapping[str, Any], run_dir: str, source: str) -> RunOutcome:
    """:func:`execute_plan` in a local worker: stopped with the sweep, not started after it."""
    if _WORKER_STOP is not None and _WORKER_STOP.is_set():
        return not_started()
    if _WORKER_STARTED is not None:  # unbuffered: said before anything can kill the run
        _WORKER_STARTED.put((run_dir, os.getpid()))
    return execute_plan(plan_data, run_dir, source, stop=_WORKER_STOP)


def pending_plans(spec: SweepSpec, out_dir: Path) -> list[Replication]:
    """The runs of ``spec`` that a sweep into ``out_dir`` still runs: those whose run directory
    does not hold a ``completed`` run (those are kept, :func:`execute_plan`) nor a run of another
    experiment (refused, :func:`foreign_runs`)."""
    plans = spec.plans()
    refused = foreign_runs(plans, out_dir, str(spec.source))
    return [
        p
        for p in plans
        if p.rel_dir not in refused and read_status(out_dir / p.rel_dir) != "completed"
    ]


def _write_sweep_file(out_dir: Path, body: Mapping[str, Any]) -> None:
    path = out_dir / SWEEP_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def check_out_dir(out_dir: Path, spec: SweepSpec) -> None:
    """Raise :class:`SweepDirError` unless ``out_dir`` can take ``spec``'s sweep: it is absent,
    an empty or unrelated folder, or holds this same sweep (resumed). A file, a run directory
    (``friendsim run``'s, holding ``events.db`` or ``manifest.json``), a folder holding files
    the sweep writes but no ``sweep.json`` (someone's ``aggregate.md``), an unreadable
    ``sweep.json`` and a different sweep are refused before anything is written."""
    from friendsim.rundir.layout import RunLayout

    if out_dir.exists() and not out_dir.is_dir():
        raise SweepDirError(f"{out_dir} is a file, not a directory; choose another --out")
    above = out_dir.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise SweepDirError(f"{out_dir}: {above} is a file, not a directory; choose another --out")
    if RunLayout.of(out_dir).holds_run():
        raise SweepDirError(f"{out_dir} already holds a run; choose another --out")
    path = out_dir / SWEEP_FILE
    if not path.is_file():
        from friendsim.rundir.layout import REPORT
        from friendsim.sweep.aggregate import AGGREGATE_FILE, AGGREGATE_TABLE

        clash = [n for n in (AGGREGATE_FILE, AGGREGATE_TABLE, REPORT) if (out_dir / n).exists()]
        if clash:
            raise SweepDirError(
                f"{out_dir} holds {', '.join(clash)} but no {SWEEP_FILE}; the sweep would write "
                "over them; choose another --out"
            )
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise SweepDirError(f"{path}: cannot read it: {exc}") from exc
    if not isinstance(old, dict) or not isinstance(old.get("spec", {}), dict):
        raise SweepDirError(f"{path}: not a sweep record (expected an object with a 'spec' object)")
    new = spec.to_json()
    keys = ("grid", "seeds", "replications", "base_sha256")
    differ = [k for k in keys if old.get("spec", {}).get(k) != new[k]]
    if differ:
        what = ", ".join("experiment settings" if k == "base_sha256" else k for k in differ)
        raise SweepDirError(
            f"{out_dir} holds a different sweep ({what} differ); choose another --out"
        )


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    *,
    jobs: int = 1,
    log_level: str = "warning",
    on_done: Callable[[RunOutcome], None] | None = None,
    executor: str = "local",
    address: str | None = None,
    aggregate: bool = False,
) -> SweepResult:
    """Run every plan of ``spec`` into ``out_dir`` with ``jobs`` worker processes (``local``)
    or as Ray tasks (``ray``: on the cluster at ``address``, or on a local one of ``jobs``
    CPUs started for the sweep; a Ray session already initialised in this process is used).

    ``on_done`` is called in this process after each run (progress display). ``aggregate``:
    write the sweep's aggregate at the end and return it in the result.

    Everything written into ``out_dir`` is written under its sweep lock (:func:`_lock_sweep`):
    the directory is checked again once locked (another sweep may have written it since the
    first look) and the aggregate is written before the lock is released, so a second sweep
    command can neither write over a different sweep's record nor rewrite ``sweep.json`` while
    this one aggregates it.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    out = Path(out_dir)
    check_out_dir(out, spec)
    opened_ray = False
    if executor == "ray":  # before anything is written: a missing extra or cluster is an error
        from friendsim.sweep.ray_executor import open_ray

        opened_ray = open_ray(address=address, jobs=jobs)
    try:
        lock = _lock_sweep(out)
    except BaseException:
        if opened_ray:
            import ray

            ray.shutdown()
        raise
    try:
        try:
            check_out_dir(out, spec)
        except BaseException:
            if opened_ray:
                import ray

                ray.shutdown()
            raise
        result = _run_locked(spec, out, jobs, log_level, on_done, executor, opened_ray)
        if aggregate:
            from friendsim.sweep.aggregate import aggregate_sweep

            result = replace(result, aggregate=aggregate_sweep(out))
        return result
    finally:
        lock.release()


def _lock_sweep(out: Path) -> RunLock:
    """Make ``out`` and take its sweep lock: one sweep command at a time writes a sweep
    directory (a second one would set aside, as unfinished, the runs the first is writing)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepDirError(
            f"{out}: cannot create the sweep directory: {exc.strerror or exc}"
        ) from None
    try:
        return RunLock(out, name=SWEEP_LOCK, what="sweep").acquire()
    except RunDirError as exc:
        raise SweepDirError(str(exc)) from None


def _run_locked(
    spec: SweepSpec,
    out: Path,
    jobs: int,
    log_level: str,
    on_done: Callable[[RunOutcome], None] | None,
    executor: str,
    opened_ray: bool,
) -> SweepResult:
    plans = spec.plans()
    outcomes: dict[str, RunOutcome] = {
        p.rel_dir: {
            "cell": p.cell,
            "rep": p.rep,
            "seed": p.seed,
            "dir": p.rel_dir,
            "status": "pending",
            "wall_seconds": None,
            "error": None,
        }
        for p in plans
    }
    t0 = time.perf_counter()

    def snapshot(status: str) -> dict[str, Any]:
        return {
            "kind": "sweep",
            "status": status,
            "spec": spec.to_json(),
            "jobs": jobs,
            "executor": executor,
            "runs": list(outcomes.values()),
            "wall_seconds": round(time.perf_counter() - t0, 3),
        }

    _write_sweep_file(out, snapshot("running"))
    source = str(spec.source)
    stream: PlanStream | None = None
    try:
        refused = foreign_runs(plans, out, source)
        for plan in plans:
            if (res := refused.get(plan.rel_dir)) is not None:
                outcomes[plan.rel_dir].update(res)
                log.info("sweep_run_refused", run=plan.rel_dir, error=res["error"])
                _write_sweep_file(out, snapshot("running"))
                if on_done is not None:
                    on_done(outcomes[plan.rel_dir])
        todo = [p for p in plans if p.rel_dir not in refused]
        if executor == "local":
            stream = local_outcomes(todo, out, source, jobs=jobs, log_level=log_level)
        else:
            from friendsim.sweep.ray_executor import ray_outcomes

            stream = ray_outcomes(todo, out, source, log_level=log_level, shutdown=opened_ray)
        for plan, res in stream:
            outcomes[plan.rel_dir].update(res)
            log.info("sweep_run_done", run=plan.rel_dir, status=res["status"])
            _write_sweep_file(out, snapshot("running"))
            if on_done is not None:
                on_done(outcomes[plan.rel_dir])
    except BaseException as exc:
        # interrupted (Ctrl-C): the executor stops its runs and drops those not started
        try:
            if stream is not None and inspect.getgeneratorstate(stream) != inspect.GEN_CREATED:
                stream.close()
            elif opened_ray:  # the executor never started: end the Ray session opened for it
                import ray

                ray.shutdown()
        finally:
            with settling():  # a second Ctrl-C must not leave sweep.json saying running
                for outcome in outcomes.values():
                    if outcome["status"] == "pending":
                        outcome.update(unfinished(exc, out / outcome["dir"]))
                stopped = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                _write_sweep_file(out, snapshot(stopped))
        raise
    wall = round(time.perf_counter() - t0, 3)
    runs = tuple(outcomes.values())
    final = "completed" if all(r["status"] == "completed" for r in runs) else "partial"
    body = snapshot(final)
    body["wall_seconds"] = wall
    _write_sweep_file(out, body)
    return SweepResult(out_dir=out, runs=runs, wall_seconds=wall)


WORKER_RETRIES = 3
"""Re-runs of a replication whose local worker process died (as Ray's ``max_retries``)."""

IDLE_DEATHS = 3
"""Deaths of idle local workers (running no replication) let go, uncharged, since a replication
last finished: the next one is charged (:func:`local_outcomes`), so the retries still end."""


def local_outcomes(
    plans: Sequence[Replication], out: Path, source: str, *, jobs: int, log_level: str
) -> PlanStream:
    """The ``local`` executor: a pool of ``jobs`` spawned processes that die with this one.

    Closed before the end (the sweep interrupted), it stops the runs in progress and waits for
    them to end ``interrupted`` (:mod:`friendsim.sweep.interrupt`). A worker process that dies
    (killed, out of memory) breaks its pool, and with it every replication the pool had not
    finished: those run again in a new pool (a cut-short run is set aside). The death counts
    against the replication the dead worker was running (each worker says which it starts, and
    its pid; the pool ends the other workers with SIGTERM, so the dead one is the one that did not
    exit by it), not those the other workers were running beside it nor those still queued: a
    replication is recorded failed once its worker died more than :data:`WORKER_RETRIES` times,
    and one whose worker keeps dying fails neither the replications beside it nor those queued
    behind it. A dead worker that was running none of them (idle: its replications had finished,
    or it had started none) costs none of them a retry: they all run again. Once
    :data:`IDLE_DEATHS` such deaths were let go since a replication last finished, the next one
    is charged as when the dead worker cannot be told, so pools whose workers die before
    running anything do not run again forever (and pools in which a replication finished are
    no more than the replications); a worker that dies idle after finishing a replication in
    its pool thus never costs a retry. When the dead worker cannot be told (every worker ended
    by SIGTERM), the death counts against every replication that was running; with none of them
    known to be running (a worker that died before it said), against all of them, so retries
    still end.
    """
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    started = ctx.SimpleQueue()
    deaths: dict[str, int] = {}
    idle = 0  # idle workers' deaths let go since a replication last finished
    todo = list(plans)
    while todo:
        pool = ProcessPoolExecutor(
            max_workers=min(jobs, len(todo)),
            mp_context=ctx,
            initializer=_worker_init,
            initargs=(log_level, os.getpid(), stop, started),
        )
        finished = False
        again: set[str] = set()
        broken: list[tuple[Replication, BrokenProcessPool]] = []
        ran: dict[str, int] = {}  # run folders a worker of this pool started: the worker's pid
        charged: list[str] = []
        try:
            futures: dict[Future[RunOutcome], Replication] = {
                pool.submit(_worker_plan, dict(p.data), str(out / p.rel_dir), source): p
                for p in todo
            }
            _watch_every_worker(pool)
            workers = dict(getattr(pool, "_processes", None) or {})
            for fut in as_completed(futures):
                plan = futures[fut]
                while not started.empty():  # drained as runs end: the pipe never fills
                    ran.update([started.get()])
                try:
                    res = fut.result()
                except BrokenProcessPool as exc:  # a worker process died: the pool is lost
                    broken.append((plan, exc))
                    continue
                except Exception as exc:
                    res = {"status": "failed", "wall_seconds": None, "error": f"worker: {exc!r}"}
                idle = 0
                yield plan, res
            if broken:
                pool.shutdown(wait=True)  # every worker ended: how each one did is known
            while not started.empty():
                ran.update([started.get()])
            charge = _charged(
                {str(out / p.rel_dir) for p, _ in broken}, ran, workers, spare=idle < IDLE_DEATHS
            )
            idle += 1 if charge.spared else 0
            for plan, death in broken:
                if str(out / plan.rel_dir) not in charge.runs:
                    again.add(plan.rel_dir)  # beside or behind the death: not charged with it
                    continue
                charged.append(plan.rel_dir)
                deaths[plan.rel_dir] = deaths.get(plan.rel_dir, 0) + 1
                if deaths[plan.rel_dir] <= WORKER_RETRIES:
                    again.add(plan.rel_dir)
                    continue
                died = deaths[plan.rel_dir]
                error = f"worker: a worker process died {died} times running it: {death!r}"
                yield plan, {"status": "failed", "wall_seconds": None, "error": error}
            finished = True
        finally:
            if not finished:
                stop.set()
            pool.shutdown(wait=True, cancel_futures=not finished)
        if again:
            log.warning("sweep_worker_died", run_again=sorted(again), charged=sorted(charged))
        todo = [p for p in plans if p.rel_dir in again]


@dataclass(frozen=True, kw_only=True, slots=True)
class _Charge:
    """Who pays for the worker death that broke a pool (:func:`_charged`): the run folders
    ``runs`` are each charged one death; ``spared`` when a worker known to have died was running
    none of them (idle), so none is."""

    runs: frozenset[str]
    spared: bool = False


def _charged(
    broken: set[str], ran: Mapping[str, int], workers: Mapping[int, Any], *, spare: bool
) -> _Charge:
    """Which run folders of ``broken`` (replications a broken pool did not finish) are charged
    with the worker death that broke it (:func:`local_outcomes`).

    The dead workers are those whose ``exitcode`` is neither 0 nor SIGTERM's (by which the pool
    ends the others); ``ran`` maps each folder a worker started to its pid. Charged: the folders
    of ``broken`` a dead worker was running. When dead workers are known but were running none
    of them (idle: what they started had finished, or they started nothing), none is charged if
    ``spare`` (the caller bounds how often: :data:`IDLE_DEATHS`), else the death is charged as
    when no worker is known dead: to every folder of ``broken`` a worker was running, or, none
    known to be running, to all of ``broken``."""
    dead = {
        pid
        for pid, proc in workers.items()
        if getattr(proc, "exitcode", None) not in (None, 0, -signal.SIGTERM)
    }
    running = {d for d in broken if d in ran}
    if dead:
        if hit := {d for d in running if ran[d] in dead}:
            return _Charge(runs=frozenset(hit))
        if spare:
            return _Charge(runs=frozenset(), spared=True)
    return _Charge(runs=frozenset(running or broken))


def _watch_every_worker(pool: ProcessPoolExecutor) -> None:
    """Make ``pool`` watch every worker it has spawned, by one more (no-op) submit.

    CPython's executor wakes its manager thread before spawning the worker a submit adds, so
    the thread may go back to waiting on the workers spawned before that one only: the death of
    the last worker was then not seen until another worker's result woke the thread, a whole
    replication later (the replication beside it finished in the broken pool meanwhile). A
    submit made once every worker is spawned wakes the thread to watch them all. A pool already
    broken needs no watching: its futures say so."""
    with contextlib.suppress(BrokenProcessPool):
        pool.submit(int)
