"""``friendsim run --resume RUN_DIR``: continue a run that was killed (SIGKILL, crash, Ctrl-C).

Rule (what may be rewritten). The original run directory is never written. The resumed run is
built in a staging directory next to it by *deterministic re-execution*: the same config (from the
manifest), the same personas, and the old LLM cache (copied) in read-through mode. What the old
run committed is re-derived and must come out byte-identical — its *kept* events: every event
up to its last ``WindowEnded`` (the complete windows), then the events of the unfinished window
before its first ``action_failed``. The new log's first ``N`` events are compared with the old
log's ``N`` kept events and any difference aborts the resume (:class:`~.errors.DivergenceError`,
naming the seq), leaving the original untouched and the staging directory for inspection. The
old log is read from a copy in a working folder beside it
(:func:`~friendsim.rundir.scratch.working_folder`), removed once the checks are done, before the
re-execution starts: the kept events are compared by their digest, taken from the copy, and only
a divergence reads the old log again, to name the first differing seq. Until
the last committed ``WindowEnded`` has been re-derived, no request may reach a live model (a guard
raises ``CacheMissError``): a divergent prefix stops at once instead of spending money. A
request that failed there (its retries spent; an ``action_failed`` of a complete window) has no
recorded answer but a recorded failure, and fails again the same way without being sent
(:class:`~friendsim.runtime.recorded_prefix.RecordedFailures`): a complete window is kept with its
failures. Only after that point are new answers fetched (the unfinished window's unanswered
requests and everything after), which is exactly what an uninterrupted run would have asked.
That includes the requests the unfinished window recorded as failed (a provider going down
fails some calls before its breaker stops the run): they are asked again and may be answered,
so the unfinished window's events from its first ``action_failed`` on are re-run live, not
compared. A killed run's unfinished window without failures is compared to its end.

A run the failure budget stopped (``failed``, ``failure_budget``) stopped after its last
``WindowEnded``: the window that spent the budget is complete, kept with its failures like any
other, and not judged against the budget again (:func:`judged_until`; the original run judged
it, and judging it again would stop the resume where the original stopped). The windows after
it run and are checked as usual, so a provider still failing stops the resume at the budget
again, and one that works lets the run finish ``degraded`` (the kept window's decisions stay
lost). Only windows a segment judged are spared: a run killed between a window's end and its
check never judged it, and its resume does.

Why re-execution instead of restoring state: agent memory, the coach's and reward scorer's state,
the baseline policy's random generators and the continuous scheduler's draws are all in-memory
and are rebuilt by the very code that built them, in the same order, with recorded answers: no
second code path to keep in sync, and the comparison proves the rebuilt state is the one the log
implies. Cost: the prefix's CPU work again (cache hits are cheap; no tokens are paid twice).

Outcome: with ``out_dir`` given, the resumed run is written there. Without it the resumed run
replaces ``RUN_DIR`` (the killed original is moved aside to ``RUN_DIR.interrupted[-k]``; nothing is
deleted). The new manifest records ``resumed_from`` (original path, its manifest hash, the
number of events kept, the last complete window, the kept prefix's hash and ``judged_until_seq``,
the windows not judged again), the original
``config_file``, and ``segments``: one entry per segment (the original run and each resume) with
its status, events and LLM usage; ``llm_usage`` and ``wall_seconds`` are the sums over all
segments (:func:`~friendsim.llm.accounting.sum_usage`), so cost is never under-reported. A
resume that stops early (interrupted again, out of budget) records the same in its own
manifest before the stop is raised. One killed (SIGKILL) cannot: its manifest holds its own usage
as of its last checkpoint, and ``resumed_from.accounting``, written when it started, with the
segments before it and their summed usage. Resuming its directory (an ``out_dir``) therefore
counts every segment once, and so does the next in-place resume, to which the staging folder an
interrupted in-place resume leaves hands both its LLM cache (answers paid for are not asked again)
and its accounting (:func:`_accounted`).

A refused resume leaves nothing behind. Its input (the run, its manifest, its recorded config
and personas) is checked before anything is created; a refusal after that but before the
re-execution recorded anything (no manifest of its own: the population does not fit this
machine's memory, a provider is not configured here...) removes the staging folder or ``--out``
folder it created (an ``--out`` folder that was empty is left empty) and hands an earlier
interrupted resume's staging folder its answers and manifest back (:func:`_undo_refused`). What
recorded something stays: a re-execution that diverged (for inspection) or stopped early.

Which runs can be resumed: any that did not finish every window (``interrupted``, ``failed``,
or ``running`` after a kill). ``completed`` and ``degraded`` runs ran every window: refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from friendsim._carry import in_thread, to_the_end
from friendsim.llm.accounting import sum_usage
from friendsim.rundir.errors import DivergenceError, RunInputError
from friendsim.rundir.layout import (
    EVENTS_DB,
    LLM_BATCHES_DB,
    LLM_CACHE_DB,
    LOCK,
    MANIFEST,
    PERSONAS,
)
from friendsim.rundir.lock import RunLock
from friendsim.rundir.log import LogSummary, connect, log_hash, snapshot
from friendsim.rundir.manifest import Manifest, amend_manifest, read_manifest
from friendsim.rundir.scratch import working_folder
from friendsim.runtime.assembly import LLMFactory, run_plan
from friendsim.runtime.engine import RunListener
from friendsim.runtime.plan import RunPlan

from .config import config_from_manifest
from .execute import (
    check_answers_kept,
    check_failures_replayable,
    check_recorded_answers,
    empty_folder,
    manifest_sha256,
    new_run_dir,
)
from .logdiff import first_difference
from .phases import carried_lineage, recorded_phases
from .rerun import _summary_and_hash, inspect_run

STAGING_SUFFIX = ".resuming"
"""An in-place resume of ``RUN_DIR`` builds the resumed run in ``RUN_DIR.resuming`` beside it."""
ASIDE_SUFFIX = ".interrupted"
"""Where an in-place resume moves the original: ``RUN_DIR.interrupted`` (``-k`` added when
taken)."""
ACCOUNTING = "accounting"
"""The key of a resume's ``resumed_from`` (written when it starts) holding the ``segments``,
summed ``llm_usage`` and ``config_file`` of every segment before it."""
JUDGED = "judged_until_seq"
"""The key of a resume's ``resumed_from`` holding the seq up to which the windows it re-derives
are not judged against the failure budget again (:func:`judged_until`), for a resume of it."""
FORK_PREFIX = "prefix_last_seq"
"""The key of a fork's ``fork`` lineage holding the seq of its parent's last shared event."""

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class ResumeReport:
    """A finished resume: where the run now is, what was recovered and what was added.

    ``recovered_events``: the interrupted run's events kept byte for byte (module docstring)."""

    run_dir: Path
    original_kept_at: Path | None
    recovered_events: int
    last_complete_window: int
    events: int
    status: str

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "original_kept_at": None
            if self.original_kept_at is None
            else str(self.original_kept_at),
            "recovered_events": self.recovered_events,
            "last_complete_window": self.last_complete_window,
            "events": self.events,
            "status": self.status,
        }


def _named(run_dir: Path) -> Path:
    """``run_dir``, absolute when its last part names no folder of its own (``.``, ``..``): an
    in-place resume puts its staging folder and the original beside it, by name."""
    return Path(os.path.abspath(run_dir)) if run_dir.name in ("", "..") else run_dir


def _aside(run_dir: Path) -> Path:
    k = 0
    while True:
        name = f"{run_dir.name}{ASIDE_SUFFIX}" + (f"-{k}" if k else "")
        cand = run_dir.with_name(name)
        if not cand.exists():
            return cand
        k += 1


@dataclass(frozen=True, kw_only=True, slots=True)
class _Abandoned:
    """What an earlier, interrupted resume of the same run left in the staging folder."""

    cache: Path | None
    """A copy of its LLM cache: answers already paid for, reused instead of asked again."""
    manifest: Manifest | None
    """Its manifest: what it spent, which the run's accounting must keep."""
    manifest_bytes: bytes | None = None
    """That manifest's bytes, put back should this resume be refused (:func:`_undo_refused`)."""


_STAGING_FILES = frozenset({EVENTS_DB, LLM_CACHE_DB, PERSONAS, MANIFEST, LOCK, LLM_BATCHES_DB})
"""The files a resume's staging folder may hold, besides their SQLite and temporary siblings."""


def _check_staging(staging: Path, old: Path, parent_hash: str) -> None:
    """Refuse (:class:`~friendsim.rundir.errors.RunInputError`) to take over ``staging`` unless
    it is what an earlier resume of ``old`` left: a folder of run files only whose manifest, if
    it got one, says it resumed ``old`` (the sha256 of ``old``'s manifest, ``parent_hash``,
    which no resume changes). Anything else there is someone's, and taking over deletes it."""
    why = None
    if staging.is_symlink() or not staging.is_dir():
        why = "it is not a folder"
    elif strange := sorted(
        p.name
        for p in staging.iterdir()
        if p.name.removesuffix(".tmp").rsplit("-", 1)[0] not in _STAGING_FILES
    ):
        why = f"it holds {strange[0]!r}, which no resume writes"
    elif (staging / MANIFEST).exists():
        try:
            source = (read_manifest(staging).resumed_from or {}).get("manifest_sha256")
        except RunInputError:
            source = None
        if source != parent_hash:
            why = "its manifest is not that of a resume of this run"
    if why is not None:
        raise RunInputError(
            f"{staging} is in the way of the resume of {old} ({why}); move it away, or resume "
            "with --out DIR"
        )


def _take_stale_cache(
    staging: Path, scratch: Path, ours: bool, *, old: Path, parent_hash: str
) -> _Abandoned | None:
    """A previous, interrupted resume left ``staging``: keep a copy of its LLM cache (answers
    already paid for) and its manifest (what they cost), and remove the rest. Only our own
    staging folder is ever removed (:func:`_check_staging`)."""
    if not ours or not (staging.exists() or staging.is_symlink()):
        return None
    _check_staging(staging, old, parent_hash)
    cache = staging / LLM_CACHE_DB
    kept = snapshot(cache, scratch, name="stale-cache.db") if cache.is_file() else None
    try:
        manifest: Manifest | None = read_manifest(staging)
        manifest_bytes: bytes | None = (staging / MANIFEST).read_bytes()
    except Exception:  # killed before its first manifest, or not readable: nothing to count
        manifest, manifest_bytes = None, None
    shutil.rmtree(staging)
    return _Abandoned(cache=kept, manifest=manifest, manifest_bytes=manifest_bytes)


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (what creating
    ``folder`` with its parents creates), ``None`` when ``folder`` exists."""
    if folder.exists():
        return None
    top = folder
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    return top


def _undo_refused(
    staging: Path, *, created: Path | None, filled: bool, abandoned: _Abandoned | None
) -> None:
    """A resume refused before its re-execution recorded anything (no manifest of its own in
    ``staging``) leaves what was there before, and nothing else. An earlier interrupted resume's
    staging folder (``abandoned``, taken over) gets back its answers and its manifest, so the
    next resume still reuses and counts what it paid for. Otherwise what this call created goes:
    the folders it made (``created``), or, in an ``--out`` folder that was empty, what it put
    there (``filled``). Best effort: the refusal being raised matters more."""
    try:
        if abandoned is not None:
            staging.mkdir(exist_ok=True)
            if abandoned.cache is not None:
                merge_cache(abandoned.cache, staging / LLM_CACHE_DB)
            if abandoned.manifest_bytes is not None:
                (staging / MANIFEST).write_bytes(abandoned.manifest_bytes)
        elif created is not None:
            shutil.rmtree(created, ignore_errors=True)
        elif filled:
            empty_folder(staging)
    except Exception as exc:
        log.warning("resume_refusal_cleanup_failed", run_dir=str(staging), error=repr(exc))


def _accounted(m: Manifest, before: Manifest | None = None) -> Manifest:
    """``m`` with ``segments``, summed ``llm_usage``, ``wall_seconds`` and the first segment's
    ``config_file`` covering every segment its run directory stands for, each once: the base of
    the next segment's sums.

    Those are ``m``'s own when it has ``segments`` (a resume that finished, or stopped cleanly:
    :func:`_account_stopped`). A resume killed before that adds itself (its last checkpoint's
    usage) to the segments it recorded at its start (``resumed_from.accounting``); one written
    without that record (an older friendsim) to those of ``before``, the run it resumed, when
    known (an in-place resume's staging folder). Any other run is the original, alone.
    """
    earlier = (m.resumed_from or {}).get(ACCOUNTING)
    if earlier is None and before is not None:
        earlier = _accounting(_accounted(before))
    if m.segments:
        segments, usage, config_file = m.segments, m.llm_usage, m.config_file
    elif earlier is not None:
        segments = [*earlier["segments"], _segment(m, "resume")]
        usage = sum_usage([earlier["llm_usage"], m.llm_usage])
        config_file = earlier.get("config_file")
    else:
        segments, usage, config_file = [_segment(m, "original")], m.llm_usage, m.config_file
    walls = [seg.get("wall_seconds") or 0.0 for seg in segments]
    return m.model_copy(
        update={
            "segments": segments,
            "llm_usage": usage,
            "wall_seconds": round(sum(walls), 3),
            "config_file": config_file,
        }
    )


def _accounting(base: Manifest) -> dict[str, Any]:
    """What a resume records at its start (``resumed_from.accounting``) of an accounted
    :func:`_accounted` ``base``: the segments before it."""
    return {"segments": base.segments, "llm_usage": base.llm_usage, "config_file": base.config_file}


def _account_stopped(staging: Path, base: Manifest) -> None:
    """A resume that stopped early (interrupted, out of budget, failed) still records, in its own
    manifest, every segment so far and their summed usage: resumed again, it is the base of the
    next segment's sums, and nothing it or the segments before it spent is dropped."""
    try:
        segment = read_manifest(staging)
        if segment.segments:  # already amended
            return
        amend_manifest(staging, **accounting_over_segments(base, segment))
    except Exception as exc:  # the stop being raised matters more; the run dir stays as it is
        log.warning("resume_accounting_failed", run_dir=str(staging), error=repr(exc))


def merge_cache(src: Path, dest: Path) -> int:
    """Add the answers of the LLM cache ``src`` that ``dest`` lacks; returns how many."""
    if not dest.is_file():
        shutil.copyfile(src, dest)
        conn = sqlite3.connect(dest)
        try:
            return int(conn.execute("SELECT count(*) FROM llm_cache").fetchone()[0])
        finally:
            conn.close()
    conn = sqlite3.connect(dest, isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS stale", (str(src),))
        before = conn.total_changes
        conn.execute("INSERT OR IGNORE INTO main.llm_cache SELECT * FROM stale.llm_cache")
        return conn.total_changes - before
    finally:
        conn.close()


def _swap(run_dir: Path, staging: Path, lock: RunLock) -> Path:
    """Move the original ``run_dir`` aside, with ``lock`` (held on it), and ``staging`` in."""
    aside = _aside(run_dir)
    os.replace(run_dir, aside)
    lock.moved(aside)
    os.replace(staging, run_dir)
    return Path(os.path.abspath(aside))


def kept_until(db: Path, summary: LogSummary) -> int:
    """The last seq of the interrupted run's log ``db`` (``summary``: its shape) that a resume
    keeps, re-derived byte for byte (module docstring): the event before the first
    ``action_failed`` after the last ``WindowEnded``, else the last event. A failure of the
    unfinished window may be a request a provider failed (going down) that the resume asks again
    and gets answered: from there on, the unfinished window is re-run live."""
    conn = connect(db)
    try:
        row = conn.execute(
            "SELECT min(seq) FROM events WHERE seq > ? AND kind = 'action_failed'",
            (summary.last_window_end,),
        ).fetchone()
    finally:
        conn.close()
    return summary.last if row[0] is None else int(row[0]) - 1


def judged_until(manifest: Manifest, summary: LogSummary) -> int | None:
    """The seq of the last ``WindowEnded`` of the run being resumed (``manifest``, its log's
    ``summary``) whose window a segment already judged against the failure budget: a resume
    does not judge those again (:attr:`~friendsim.runtime.plan.RunPlan.judged_until_seq`).

    A run the budget stopped judged every complete window: the check is the last thing a window
    does and its stop ends the run, so its last ``WindowEnded`` is the window that spent the
    budget, and every one before it passed. So did a run a provider outage stopped
    (``provider_down``): mid-window, after its last window passed the check, or at the check of
    a window lost to the outage (kept as lost, like one that spent the budget). A resume records what it spares (``resumed_from``,
    :data:`JUDGED`, written when it starts), so a resume of it spares the same windows even if it
    was killed or stopped otherwise, capped at what its log holds (the rest is run anew). A
    fork's shared windows (up to ``fork.prefix_last_seq``) are its parent's history, which the
    fork does not judge either. Any other run: ``None``, every window is judged (one killed
    between a window's end and its check never judged that window)."""
    judged = [(manifest.resumed_from or {}).get(JUDGED), (manifest.fork or {}).get(FORK_PREFIX)]
    if manifest.stop_reason in ("failure_budget", "provider_down"):
        judged.append(summary.last_window_end)
    seqs = [s for s in judged if isinstance(s, int) and s > 0]
    return min(max(seqs), summary.last_window_end) if seqs else None


def _prefix_hash(db: Path, to_seq: int) -> str:
    conn = connect(db)
    try:
        return log_hash(conn, to_seq=to_seq)
    finally:
        conn.close()


def _segment(m: Manifest, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "status": m.status,
        "start_seq": m.start_seq,
        "end_seq": m.end_seq,
        "wall_seconds": m.wall_seconds,
        "llm_usage": m.llm_usage.get("total", {}),
    }


def accounting_over_segments(original: Manifest, resumed: Manifest) -> dict[str, Any]:
    """Manifest fields of a resumed run that cover every segment (original + resumes):
    ``segments``, summed ``llm_usage`` and ``wall_seconds``, and the original ``config_file``.
    ``original``: the manifest of the run resumed, whatever it is (its segments are read as
    :func:`_accounted` reads them); ``resumed``: the resume's own (its segment's usage)."""
    base = _accounted(original)
    earlier = base.segments or []
    segments = [*earlier, _segment(resumed, "resume")]
    walls = [s.get("wall_seconds") or 0.0 for s in segments]
    return {
        "segments": segments,
        "llm_usage": sum_usage([base.llm_usage, resumed.llm_usage]),
        "wall_seconds": round(sum(walls), 3),
        "config_file": base.config_file,
    }


async def resume(
    run_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    llm_factory: LLMFactory | None = None,
    listener: RunListener | None = None,
    budget_usd: float | None = None,
    stop: asyncio.Event | None = None,
) -> ResumeReport:
    """Continue the killed run ``run_dir`` (see the module docstring).

    The old run's lock is held for the whole resume: a run that is still being written is
    refused at once (:class:`~friendsim.rundir.errors.RunLockedError` naming its pid), and no
    second resume can race this one. Its lock file is restored on release: a resume, refused or
    not, leaves the source run byte-for-byte as it was; a refusal before the re-execution
    recorded anything leaves no staging or ``--out`` folder behind either (module docstring).
    ``budget_usd`` replaces the run's ``[llm].budget_usd`` (a run stopped by its budget resumes
    with a larger one); the replayed prefix counts against it at its recorded cost.
    """
    old = _named(Path(run_dir))
    lock = await in_thread(RunLock(old).acquire, create=False)
    try:
        return await _resume_locked(
            old,
            lock,
            out_dir=out_dir,
            llm_factory=llm_factory,
            listener=listener,
            budget_usd=budget_usd,
            stop=stop,
        )
    finally:
        lock.release(restore=True)  # the source run is never modified


async def _resume_locked(
    old: Path,
    lock: RunLock,
    *,
    out_dir: str | Path | None,
    llm_factory: LLMFactory | None,
    listener: RunListener | None,
    budget_usd: float | None = None,
    stop: asyncio.Event | None = None,
) -> ResumeReport:
    if out_dir is not None:
        target = Path(out_dir)
        staging = target
    else:
        target = old
        staging = old.with_name(old.name + STAGING_SUFFIX)
    with contextlib.ExitStack() as copies:
        tmp = copies.enter_context(working_folder(old, what="resume"))
        # Every check on the input first: a refusal here has touched nothing.
        manifest, old_copy, summary, _ = await in_thread(inspect_run, old, tmp)
        await in_thread(check_recorded_answers, old, manifest)
        if manifest.status in ("completed", "degraded"):
            raise RunInputError(
                f"{old}: the run is already {manifest.status} (every window ran); nothing to resume"
            )
        mode = manifest.config.get("llm", {}).get("cache", "off")
        cfg = config_from_manifest(
            old, manifest, cache="replay" if mode == "replay" else "read_through"
        )
        if budget_usd is not None:
            cfg = cfg.model_copy(
                update={"llm": cfg.llm.model_copy(update={"budget_usd": budget_usd})}
            )
        phases = recorded_phases(manifest, cfg, source=old / MANIFEST)
        if summary.last_window > 0:
            check_answers_kept(old, manifest, phases)
            await in_thread(
                check_failures_replayable,
                old,
                old_copy,
                until_seq=summary.last_window_end,
                scratch=tmp,
            )
        parent_hash = await in_thread(manifest_sha256, old)
        abandoned = await in_thread(
            _take_stale_cache, staging, tmp, out_dir is None, old=old, parent_hash=parent_hash
        )
        stale_cache = abandoned.cache if abandoned is not None else None
        base = _accounted(manifest)
        if abandoned is not None and abandoned.manifest is not None:
            base = _accounted(abandoned.manifest, before=base)
        created = await in_thread(_first_missing, staging)
        filled = False

        def fill() -> None:
            nonlocal filled
            new_run_dir(old, staging)
            filled = True  # even if a second signal came meanwhile: _undo_refused empties it

        try:
            await in_thread(fill)
            if abandoned is not None and stale_cache is not None:
                await in_thread(merge_cache, stale_cache, staging / LLM_CACHE_DB)
                abandoned = replace(abandoned, cache=None)  # its answers are in staging's now
            last_window = summary.last_window
            kept = await in_thread(kept_until, old_copy, summary)
            expected = await in_thread(_prefix_hash, old_copy, kept)
            judged = judged_until(manifest, summary)
            source = {
                "run_dir": await in_thread(os.path.abspath, old),
                "manifest_sha256": parent_hash,
                "recovered_events": kept,
                "last_complete_window": last_window,
                "last_complete_window_seq": summary.last_window_end,
                JUDGED: judged,
            }
            plan = RunPlan(
                phases=phases,
                recorded_until_seq=summary.last_window_end if last_window > 0 else None,
                judged_until_seq=judged,
                lineage={
                    **carried_lineage(manifest),
                    "resumed_from": {**source, ACCOUNTING: _accounting(base)},
                },
            )
            # the copies are not read again (the kept prefix is compared by its digest):
            # removed before the run, which may last hours, not after it
            await in_thread(copies.close)
            await run_plan(
                plan,
                out_dir=staging,
                config_path=staging / MANIFEST,
                listener=listener,
                llm_factory=llm_factory,
                stop=stop,
            )
        except BaseException:
            if filled and (staging / MANIFEST).is_file():  # it ran: the stop is on record
                await in_thread(_account_stopped, staging, base)
            else:  # refused before recording anything
                await in_thread(
                    _undo_refused, staging, created=created, filled=filled, abandoned=abandoned
                )
            raise
    prefix = await in_thread(_prefix_hash, staging / EVENTS_DB, kept)
    if prefix != expected:
        diff = await in_thread(first_difference, old, staging / EVENTS_DB, to_seq=kept)
        raise DivergenceError(
            f"resume of {old}: the re-executed log differs from the committed one at "
            f"{diff or f'a row up to seq {kept}'}; original untouched, re-execution kept in "
            f"{staging}",
            diff,
        )
    new_summary, new_hash = await in_thread(_summary_and_hash, staging / EVENTS_DB)
    resumed_from = {**source, "prefix_sha256": prefix}
    segment = await in_thread(read_manifest, staging)

    async def finish() -> tuple[Manifest, Path | None]:
        final = await in_thread(
            amend_manifest,
            staging,
            log_sha256=new_hash,
            resumed_from=resumed_from,
            **accounting_over_segments(base, segment),
        )
        if out_dir is None:
            aside = await in_thread(_swap, old, staging, lock)
            final = await in_thread(
                amend_manifest,
                target,
                resumed_from={**resumed_from, "original_moved_to": str(aside)},
            )
            return final, aside
        return final, None

    # once the resumed run's manifest is amended, the swap follows: a second signal waits for it
    final, aside = await to_the_end(finish())
    return ResumeReport(
        run_dir=target,
        original_kept_at=aside,
        recovered_events=kept,
        last_complete_window=last_window,
        events=new_summary.count,
        status=final.status,
    )
