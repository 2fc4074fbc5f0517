"""The ``ray`` sweep executor: each replication is one Ray task; finished runs come back as data.

Ray is optional (``pip install 'friendsim[ray]'``, core ``ray`` only) and imported only here.
The driver (``friendsim sweep --executor ray``) connects to the cluster at ``--address`` or, with
none, starts a local one of ``--jobs`` CPUs for the sweep (a session already initialised in the
process is used as it is). ``friendsim`` itself must be installed on every node.

**How run directories reach ``--out`` (no shared filesystem needed).** A task runs its
replication with :func:`friendsim.sweep.execute.execute_plan` (the same function the local pool
calls, so the same seed gives the same event log byte for byte) into a scratch folder on its
node, then returns the outcome and the whole run directory as one gzip'd tar archive (with each
file's mtime in nanoseconds, so the analysis cache stays valid). The driver unpacks it into
``<run>.incoming`` beside its final place, checks it with the log verifier
(:func:`friendsim.rundir.verify.verify_run`: manifest matches log, log rebuilds the state), and
only then renames it into ``<cell>/rep<k>``. A run that fails verification is recorded as failed
and its files are kept as ``<run>.rejected-<n>`` for inspection. Files a config names by path
(``[agents].personas``, ``[llm].endpoints_file``, ``[[interventions]] items``) travel with the
task through Ray's object store and are written into the scratch folder; the task's config then
names those copies.

**Failures.** A task whose worker process or node dies is re-run by Ray (``max_retries``, on
another node when its node is gone). A replication that fails is an outcome like any other
(``failed`` with the error): the sweep goes on. When Ray gives up on a task, that run is
recorded as failed with Ray's error. A task's scratch folder is named after its replication
(:func:`scratch_key`), so a re-run of a task whose worker died, on the same node, finds the run
the dead attempt left there: it is shipped back with the new attempt's run and kept as
``<run>.stale-<n>``, as the local executor keeps a killed worker's run, so what the dead attempt
spent is counted (:func:`friendsim.sweep.aggregate.spent_usd`). A dead attempt on a node that is
gone, or whose task was re-run on another node, cannot be reached. **Resume**: runs already
completed in ``--out`` are not submitted again; unfinished directories are set aside as in the
local executor.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from friendsim.rundir.layout import LOCK
from friendsim.rundir.lock import holder, writer_name
from friendsim.sweep.config import Replication
from friendsim.sweep.execute import (
    PlanStream,
    RunOutcome,
    execute_plan,
    found_manifest,
    keep_completed,
    read_status,
    replication_mismatch,
    set_aside,
)

log = structlog.get_logger(__name__)

INSTALL_HINT = "pip install 'friendsim[ray]'"
MAX_RETRIES = 3
"""Re-runs of a task whose worker or node died (Ray's ``max_retries``)."""
_MTIMES = ".friendsim-mtimes.json"


class RayUnavailableError(RuntimeError):
    """``--executor ray`` without the ``ray`` package installed, or no cluster to run on."""


def require_ray() -> Any:
    """The ``ray`` module, or :class:`RayUnavailableError` with the install command."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            f"--executor ray needs the 'ray' package ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return ray


def open_ray(*, address: str | None, jobs: int) -> bool:
    """Connect to the cluster at ``address`` (or start a local Ray of ``jobs`` CPUs) unless this
    process already has a Ray session; returns whether it opened one (and so must shut it down).
    A cluster that cannot be reached is a :class:`RayUnavailableError` naming the address."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayUnavailableError(f"cannot start or reach {where}: {first}") from None
    return True


def pack_run(run_dir: Path) -> bytes:
    """The run directory as a gzip'd tar archive (files only, not the run lock), with an mtime
    record."""
    mtimes = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for path in sorted(run_dir.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.name != LOCK:
                rel = path.relative_to(run_dir).as_posix()
                mtimes[rel] = path.stat().st_mtime_ns
                tar.add(path, arcname=rel, recursive=False)
        blob = json.dumps(mtimes, sort_keys=True).encode()
        info = tarfile.TarInfo(_MTIMES)
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def unpack_run(archive: bytes, dest: Path) -> None:
    """Unpack an archive of :func:`pack_run` into the new folder ``dest`` (safe extraction:
    no absolute paths, no ``..``, no links) and restore each file's mtime."""
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                raise ValueError(f"run archive holds a non-file entry {member.name!r}")
        tar.extractall(dest, filter="data")
    record = dest / _MTIMES
    mtimes = json.loads(record.read_text(encoding="utf-8"))
    record.unlink()
    for rel, ns in mtimes.items():
        os.utime(dest / rel, ns=(int(ns), int(ns)))


def _items_path(value: str, base: Path) -> Path:
    """Where an intervention's ``items = "FILE"`` is read from (as ``inline_items`` reads it)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def side_files(plans: Sequence[Replication], source: str) -> dict[str, bytes]:
    """Files the plans' configs name by path, read on the driver: ``{config value: bytes}``
    (persona file, endpoints file, interventions' item files)."""
    from friendsim.runtime.config import parse_config

    base = Path(source).parent
    out: dict[str, bytes] = {}
    for plan in plans:
        cfg = parse_config(plan.data, source=source)
        named = [
            (cfg.agents.personas, cfg.persona_path(base)),
            (cfg.llm.endpoints_file, cfg.endpoints_path(base)),
        ]
        for spec in cfg.interventions:
            items = spec.params.get("items")
            if isinstance(items, str):
                named.append((items, _items_path(items, base)))
        for value, path in named:
            if value is not None and path is not None and value not in out and path.is_file():
                out[value] = path.read_bytes()
    return out


def _localise(
    plan_data: Mapping[str, Any], files: Mapping[str, bytes], scratch: Path
) -> dict[str, Any]:
    """``plan_data`` with each shipped file written under ``scratch`` and named there."""
    data = json.loads(json.dumps(plan_data))
    for k, (section, key) in enumerate((("agents", "personas"), ("llm", "endpoints_file"))):
        value = (data.get(section) or {}).get(key)
        if isinstance(value, str) and value in files:
            target = scratch / f"file{k}-{Path(value).name}"
            target.write_bytes(files[value])
            data[section][key] = str(target)
    for i, spec in enumerate(data.get("interventions") or ()):
        value = spec.get("items") if isinstance(spec, dict) else None
        if isinstance(value, str) and value in files:
            target = scratch / f"items{i}-{Path(value).name}"
            target.write_bytes(files[value])
            spec["items"] = str(target)
    return data


def scratch_key(out: Path, rel_dir: str) -> str:
    """What names the scratch folder of the task running replication ``rel_dir`` of the sweep
    into ``out`` on any node: the same for every attempt at it."""
    return hashlib.sha256(f"{out.resolve()}\0{rel_dir}".encode()).hexdigest()[:24]


def run_replication(
    plan_data: Mapping[str, Any],
    source: str,
    files: Mapping[str, bytes],
    log_level: str,
    key: str | None = None,
) -> tuple[RunOutcome, bytes, list[bytes]]:
    """The Ray task: run one replication in a scratch folder and return (outcome, archive,
    archives of earlier attempts).

    ``key`` (:func:`scratch_key`) names the scratch folder, so an earlier attempt at the same
    replication whose worker died (or was cancelled) on this node left its run there: it is set
    aside (``run.stale-<n>``), finished or not, and returned packed, to be kept beside the
    replication; the replication runs afresh, as it always does in a task. A run there of
    another experiment (:func:`replication_mismatch`) is not returned. A folder still being
    written (its run lock held) is left alone, and the task runs in a folder of its own. The
    scratch folder is removed at the end."""
    from friendsim.runtime.logs import configure_logging

    configure_logging(log_level)
    scratch = Path(tempfile.gettempdir()) / f"friendsim-task-{key}" if key else None
    if scratch is None or holder(scratch / "run") is not None:
        scratch = Path(tempfile.mkdtemp(prefix="friendsim-task-"))
    try:
        scratch.mkdir(parents=True, exist_ok=True)
        data = _localise(plan_data, files, scratch)
        run_dir = scratch / "run"
        if run_dir.exists():
            found = found_manifest(run_dir)
            if found is not None and replication_mismatch(run_dir, found, data, source) is None:
                set_aside(run_dir)
            else:
                shutil.rmtree(run_dir)
        outcome = execute_plan(data, str(run_dir), source)
        archive = pack_run(run_dir) if run_dir.is_dir() else b""
        earlier = [pack_run(p) for p in sorted(scratch.glob("run.stale-*")) if p.is_dir()]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    outcome["set_aside"] = None  # a scratch path: that run comes back in ``earlier``
    outcome["worker"] = {"host": socket.gethostname(), "pid": os.getpid()}
    return outcome, archive, earlier


def keep_earlier(out: Path, rel_dir: str, archives: Sequence[bytes]) -> list[str]:
    """Unpack the runs of earlier attempts a task returned (:func:`run_replication`) beside the
    replication as ``<run>.stale-<n>``; returns their paths. One that cannot be unpacked is
    logged and left out (the replication's own run does not depend on it)."""
    final = out / rel_dir
    kept = []
    for archive in archives:
        k = 1
        while (target := final.with_name(f"{final.name}.stale-{k}")).exists():
            k += 1
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            unpack_run(archive, target)
        except (OSError, ValueError, tarfile.TarError) as exc:
            log.warning("sweep_earlier_attempt_not_kept", run=rel_dir, error=repr(exc))
            continue
        kept.append(str(target))
    return kept


def receive(out: Path, rel_dir: str, outcome: RunOutcome, archive: bytes) -> RunOutcome:
    """Put a task's run directory into place (module docstring); returns the final outcome:
    ``failed``, saying why, when the archive cannot be unpacked (cut short, a full disk) or the
    run fails verification, so one replication's trouble does not end the sweep."""
    from friendsim.rundir.errors import RunInputError
    from friendsim.rundir.verify import verify_run

    res = dict(outcome)
    res["archive_bytes"] = len(archive)
    if not archive:
        return res
    final = out / rel_dir
    if final.exists() and (pid := holder(final)) is not None:
        res.update(
            status="failed",
            error=f"RunLockedError: {final} is being written by {writer_name(pid)}; the task's "
            "run was not put in its place (re-run the sweep once it is done)",
        )
        return res
    incoming = final.with_name(final.name + ".incoming")
    try:
        if incoming.exists():
            set_aside(incoming)
        unpack_run(archive, incoming)
    except (OSError, ValueError, tarfile.TarError) as exc:  # kept for the next sweep to set aside
        res.update(
            status="failed",
            error=f"cannot unpack the task's run of {rel_dir} into {incoming}: "
            f"{type(exc).__name__}: {exc}",
        )
        return res
    if res["status"] == "completed":
        try:
            report = verify_run(incoming)
            problem = None if report.ok else f"log verification failed: {report.divergence}"
        except (RunInputError, OSError, ValueError) as exc:
            problem = f"log verification failed: {type(exc).__name__}: {exc}"
        if problem is not None:
            k = 1
            while (bad := final.with_name(f"{final.name}.rejected-{k}")).exists():
                k += 1
            incoming.rename(bad)
            res.update(status="failed", error=problem, rejected=str(bad))
            return res
        res["verified_events"] = report.events
    if final.exists():
        res["set_aside"] = set_aside(final)
    incoming.rename(final)
    return res


def ray_outcomes(
    plans: Sequence[Replication],
    out: Path,
    source: str,
    *,
    log_level: str,
    shutdown: bool,
    max_retries: int = MAX_RETRIES,
) -> PlanStream:
    """The ``ray`` executor (module docstring) on the session :func:`open_ray` made: yields each
    plan with its outcome; ``shutdown``: end the Ray session when done (or interrupted)."""
    ray = require_ray()
    todo: list[Replication] = []
    for plan in plans:
        if read_status(out / plan.rel_dir) == "completed":
            yield plan, keep_completed(out / plan.rel_dir)
        else:
            todo.append(plan)
    if not todo:
        if shutdown:
            ray.shutdown()
        return
    task = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(run_replication)
    files_ref = ray.put(side_files(todo, source))
    pending = {
        task.remote(dict(p.data), source, files_ref, log_level, scratch_key(out, p.rel_dir)): p
        for p in todo
    }
    t_submit = time.perf_counter()
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            plan = pending.pop(ref)
            try:
                outcome, archive, earlier = ray.get(ref)
            except ray.exceptions.RayError as exc:  # Ray gave up: retries spent, or cancelled
                res: RunOutcome = {
                    "status": "failed",
                    "wall_seconds": None,
                    "error": f"ray: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                }
            else:
                kept = keep_earlier(out, plan.rel_dir, earlier)
                res = receive(out, plan.rel_dir, outcome, archive)
                if kept:
                    res["earlier_attempts"] = kept
            log.info(
                "sweep_ray_task_done",
                run=plan.rel_dir,
                status=res["status"],
                since_submit_s=round(time.perf_counter() - t_submit, 3),
            )
            yield plan, res
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if shutdown:
            ray.shutdown()
