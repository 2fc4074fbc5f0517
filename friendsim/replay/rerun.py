"""``friendsim replay RUN --rerun --out NEW``: run the whole simulation again from its manifest.

The config is rebuilt from the manifest (:mod:`.config`), the old LLM cache is copied into the new
run directory and used in *replay-only* mode: every model answer must come from the recording; a
request the old run never made raises :class:`~friendsim.llm.errors.CacheMissError` naming it
(the cache never passes a request on to a provider in that mode). The new log is
then compared with the old one row by row; :class:`RerunReport` gives the first differing seq.
The new manifest records ``rerun_of`` (old dir, old manifest hash, identical or not) and the new
log's ``log_sha256``. The old run is only read.

A ``degraded`` run (every window ran, some model-backed decisions were lost to provider errors)
is re-run too: its lost requests have no recorded answer but a recorded failure, and the whole
log is re-derived as a recorded prefix (:class:`~friendsim.runtime.plan.RunPlan`'s
``recorded_until_seq``), so each fails again the way it failed, recorded as the same
``action_failed``, and no window is judged against the failure budget again (``judged_until_seq``:
the run judged them, or a resume carried it past one that spent the budget). The re-run ends
``degraded`` like the original.

``stop`` (an :class:`asyncio.Event`, as :func:`~friendsim.runtime.assembly.run_plan` takes it):
set before the re-run began, nothing is written (:class:`~friendsim.runtime.status.RunInterrupted`);
set during it, the re-run stops after its window and ends ``interrupted``, resumable with
``friendsim run --resume`` (the comparison is then not made). Once the run has ended, the
comparison and ``rerun_of`` are carried to their end even if the task is cancelled.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from friendsim._carry import in_thread, to_the_end
from friendsim.rundir.errors import CorruptLogError, RunInputError
from friendsim.rundir.layout import EVENTS_DB, MANIFEST
from friendsim.rundir.lock import holder, writer_name
from friendsim.rundir.log import (
    LogSummary,
    check_manifest,
    connect,
    log_hash,
    snapshot,
    summarise,
)
from friendsim.rundir.manifest import Manifest, amend_manifest, read_manifest
from friendsim.rundir.scratch import working_folder
from friendsim.runtime.assembly import LLMFactory, run_plan
from friendsim.runtime.engine import RunListener
from friendsim.runtime.plan import RunPlan
from friendsim.runtime.status import RunInterrupted

from .config import config_from_manifest
from .execute import (
    check_answers_kept,
    check_failures_replayable,
    check_recorded_answers,
    manifest_sha256,
    new_run_dir,
    undone_if_refused,
)
from .logdiff import LogDiff, diff_log_files
from .phases import carried_lineage, recorded_phases


@dataclass(frozen=True, kw_only=True, slots=True)
class RerunReport:
    """``identical`` when the new log equals the old one; else ``diff`` is the first difference."""

    old: Path
    new: Path
    events_old: int
    events_new: int
    diff: LogDiff | None

    @property
    def identical(self) -> bool:
        return self.diff is None

    def to_json(self) -> dict[str, Any]:
        return {
            "old": str(self.old),
            "new": str(self.new),
            "identical": self.identical,
            "events_old": self.events_old,
            "events_new": self.events_new,
            "first_diff": None if self.diff is None else self.diff.to_json(),
        }


def inspect_run(run_dir: Path, scratch: Path) -> tuple[Manifest, Path, LogSummary, str]:
    """Blocking: read and check a run (manifest vs log) from a snapshot in ``scratch``.

    Returns the manifest, the snapshot's path, the log summary and the log hash.
    """
    manifest = read_manifest(run_dir)
    copy = snapshot(run_dir / EVENTS_DB, scratch, name="old-events.db")
    conn = connect(copy, label=run_dir / EVENTS_DB)
    try:
        summary = summarise(conn, label=run_dir / EVENTS_DB)
        check_manifest(manifest, summary, conn, label=run_dir / MANIFEST)
        digest = log_hash(conn)
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        raise CorruptLogError(f"{run_dir / EVENTS_DB}: unreadable ({exc})") from None
    finally:
        conn.close()
    return manifest, copy, summary, digest


async def rerun(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    llm_factory: LLMFactory | None = None,
    listener: RunListener | None = None,
    stop: asyncio.Event | None = None,
) -> RerunReport:
    """Re-execute the completed (or degraded) run ``run_dir`` into ``out_dir`` and compare the
    logs; ``stop``: see the module docstring."""
    old, new = Path(run_dir), Path(out_dir)
    with working_folder(old, what="rerun") as tmp:  # the old log's copy, compared at the end
        manifest, old_copy, summary, digest = await in_thread(inspect_run, old, tmp)
        await in_thread(check_recorded_answers, old, manifest)
        if manifest.status not in ("completed", "degraded"):
            pid = holder(old)
            if pid is not None:
                raise RunInputError(
                    f"{old}: the run is still being written by {writer_name(pid)} (status "
                    f"{manifest.status!r}); re-run it once it has completed"
                )
            raise RunInputError(
                f"{old}: status is {manifest.status!r}, not 'completed' or 'degraded'; a run "
                "that stopped early is continued with `friendsim run --resume`, not re-run"
            )
        cfg = config_from_manifest(old, manifest, cache="replay")
        plan = RunPlan(
            phases=recorded_phases(manifest, cfg, source=old / MANIFEST),
            lineage=carried_lineage(manifest),
        )
        check_answers_kept(old, manifest, plan.phases)
        await in_thread(
            check_failures_replayable, old, old_copy, until_seq=summary.last, scratch=tmp
        )
        parent_hash = await in_thread(manifest_sha256, old)
        if manifest.status == "degraded":  # its lost requests fail again, as recorded
            plan = replace(plan, recorded_until_seq=summary.last, judged_until_seq=summary.last)
        if stop is not None and stop.is_set():
            raise RunInterrupted(f"stopped before the re-run began; nothing written to {new}")
        with undone_if_refused(new):
            await in_thread(new_run_dir, old, new)
            await run_plan(
                plan,
                out_dir=new,
                config_path=new / MANIFEST,
                listener=listener,
                llm_factory=llm_factory,
                stop=stop,
            )

        async def compare_and_record() -> RerunReport:
            diff = await in_thread(diff_log_files, old_copy, new / EVENTS_DB)
            new_summary, new_hash = await in_thread(_summary_and_hash, new / EVENTS_DB)
            await in_thread(
                amend_manifest,
                new,
                log_sha256=new_hash,
                rerun_of={
                    "run_dir": await in_thread(os.path.abspath, old),
                    "manifest_sha256": parent_hash,
                    "log_sha256": digest,
                    "identical": diff is None,
                    "first_diff_seq": None if diff is None else diff.seq,
                },
            )
            return RerunReport(
                old=old, new=new, events_old=summary.count, events_new=new_summary.count, diff=diff
            )

        return await to_the_end(compare_and_record())


def _summary_and_hash(db: Path) -> tuple[LogSummary, str]:
    conn = connect(db)
    try:
        return summarise(conn, label=db), log_hash(conn)
    finally:
        conn.close()
