"""Run every replication of every grid cell of a sweep, in parallel worker processes or on Ray.

Two executors run the plans: ``local`` (this module: a process pool on this machine) and ``ray``
(:mod:`friendsim.sweep.ray_executor`: one Ray task per replication on a cluster). Both call
:func:`execute_plan`, so the same seeds give byte-identical event logs on either.

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

Local workers die with the sweep: each sets ``PR_SET_PDEATHSIG`` (Linux) so the kernel kills it
when the parent process dies, even by SIGKILL; elsewhere a watchdog thread polls the parent pid.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from friendsim.rundir.errors import RunDirError, RunInputError
from friendsim.rundir.layout import SWEEP_FILE, SWEEP_LOCK
from friendsim.rundir.lock import RunLock, holder, writer_name
from friendsim.rundir.manifest import read_manifest
from friendsim.sweep.config import Replication, SweepSpec

log = structlog.get_logger(__name__)

RunOutcome = dict[str, Any]
"""``{"cell", "rep", "seed", "dir", "status", "wall_seconds", "error"}`` of one run."""


class SweepDirError(ValueError):
    """The output directory holds a different sweep (another spec)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SweepResult:
    """A finished sweep: its directory, every run's outcome and the total wall time."""

    out_dir: Path
    runs: tuple[RunOutcome, ...]
    wall_seconds: float

    @property
    def failed(self) -> tuple[RunOutcome, ...]:
        """Runs that did not complete."""
        return tuple(r for r in self.runs if r["status"] != "completed")


EXECUTORS = ("local", "ray")
_PR_SET_PDEATHSIG = 1

PlanStream = Generator[tuple[Replication, RunOutcome], None, None]
"""What an executor yields: each plan with its outcome, in the order the runs finish."""


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


def _worker_init(log_level: str, parent_pid: int) -> None:
    from friendsim.runtime.logs import configure_logging

    die_with_parent(parent_pid)
    configure_logging(log_level)


def _read_status(run_dir: Path) -> str | None:
    try:
        return read_manifest(run_dir).status
    except RunInputError:
        return None


def pending_plans(spec: SweepSpec, out_dir: Path) -> list[Replication]:
    """The runs of ``spec`` that a sweep into ``out_dir`` still runs: those whose run directory
    does not hold a ``completed`` run (those are kept, :func:`execute_plan`)."""
    return [p for p in spec.plans() if _read_status(out_dir / p.rel_dir) != "completed"]


def _set_aside(run_dir: Path) -> str:
    """Rename an unfinished run directory to ``<name>.stale-<k>`` (nothing is deleted)."""
    k = 1
    while (target := run_dir.with_name(f"{run_dir.name}.stale-{k}")).exists():
        k += 1
    run_dir.rename(target)
    log.warning("sweep_run_set_aside", run_dir=str(run_dir), moved_to=str(target))
    return str(target)


def execute_plan(plan_data: Mapping[str, Any], run_dir: str, source: str) -> RunOutcome:
    """Run and analyse one plan (the worker function; also callable in-process).

    Never raises for a failed run: the outcome says ``failed`` with ``"<Type>: message"``.
    """
    from friendsim._loop import run as run_on_loop
    from friendsim.analysis.analyze import ANALYSIS_FILE, load_analysis
    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.config import parse_config
    from friendsim.runtime.status import RunStopped
    from friendsim.runtime.tie_scoring import score_run_ties

    rd = Path(run_dir)
    t0 = time.perf_counter()
    status = _read_status(rd)
    moved: str | None = None
    if status != "completed" and (pid := holder(rd)) is not None:
        return {  # not unfinished: being written (a `friendsim run --out` into the sweep)
            "status": "failed",
            "resumed": False,
            "wall_seconds": 0.0,
            "error": f"RunLockedError: {rd} is being written by {writer_name(pid)}; not "
            "set aside or run again (re-run the sweep once it is done)",
        }
    try:
        if status == "completed":
            score_run_ties(rd)
            load_analysis(rd, cache=rd / ANALYSIS_FILE)
            return {"status": "completed", "resumed": True, "wall_seconds": 0.0, "error": None}
        moved = _set_aside(rd) if rd.exists() else None
        cfg = parse_config(plan_data, source=source)
        result = run_on_loop(run_experiment(cfg, out_dir=rd, config_path=source))
        status = result.manifest.status
        score_run_ties(rd)
        load_analysis(rd, cache=rd / ANALYSIS_FILE)
        error = None
    except RunStopped as exc:  # stopped early on purpose: its status says how (interrupted...)
        status, error = exc.status, f"{exc.reason}: {exc}"
    except Exception as exc:  # a run's failure is data for the sweep, not a crash of it
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    return {
        "status": status,
        "resumed": False,
        "set_aside": moved,
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "error": error,
    }


def _write_sweep_file(out_dir: Path, body: Mapping[str, Any]) -> None:
    path = out_dir / SWEEP_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def check_out_dir(out_dir: Path, spec: SweepSpec) -> None:
    """Raise :class:`SweepDirError` unless ``out_dir`` can take ``spec``'s sweep: it is absent,
    an empty or unrelated folder, or holds this same sweep (resumed). A file, a run directory
    (``friendsim run``'s, holding ``events.db`` or ``manifest.json``) and a different sweep
    are refused before anything is written."""
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
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SweepDirError(f"{path}: cannot read it: {exc}") from exc
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
) -> SweepResult:
    """Run every plan of ``spec`` into ``out_dir`` with ``jobs`` worker processes (``local``)
    or as Ray tasks (``ray``: on the cluster at ``address``, or on a local one of ``jobs``
    CPUs started for the sweep; a Ray session already initialised in this process is used).

    ``on_done`` is called in this process after each run (progress display).
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
        return _run_locked(spec, out, jobs, log_level, on_done, executor, opened_ray)
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
    if executor == "local":
        stream = local_outcomes(plans, out, source, jobs=jobs, log_level=log_level)
    else:
        from friendsim.sweep.ray_executor import ray_outcomes

        stream = ray_outcomes(plans, out, source, log_level=log_level, shutdown=opened_ray)
    try:
        for plan, res in stream:
            outcomes[plan.rel_dir].update(res)
            log.info("sweep_run_done", run=plan.rel_dir, status=res["status"])
            _write_sweep_file(out, snapshot("running"))
            if on_done is not None:
                on_done(outcomes[plan.rel_dir])
    except BaseException:
        # interrupted (Ctrl-C): the executor drops the runs not started; record what is known
        stream.close()
        _write_sweep_file(out, snapshot("interrupted"))
        raise
    wall = round(time.perf_counter() - t0, 3)
    runs = tuple(outcomes.values())
    final = "completed" if all(r["status"] == "completed" for r in runs) else "partial"
    body = snapshot(final)
    body["wall_seconds"] = wall
    _write_sweep_file(out, body)
    return SweepResult(out_dir=out, runs=runs, wall_seconds=wall)


def local_outcomes(
    plans: Sequence[Replication], out: Path, source: str, *, jobs: int, log_level: str
) -> PlanStream:
    """The ``local`` executor: a pool of ``jobs`` spawned processes that die with this one."""
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(plans)) or 1,
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(log_level, os.getpid()),
    )
    finished = False
    try:
        futures: dict[Future[RunOutcome], Replication] = {
            pool.submit(execute_plan, dict(p.data), str(out / p.rel_dir), source): p for p in plans
        }
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except Exception as exc:  # the worker process itself died
                res = {"status": "failed", "wall_seconds": None, "error": f"worker: {exc!r}"}
            yield futures[fut], res
        finished = True
    finally:
        pool.shutdown(wait=finished, cancel_futures=not finished)
