"""A run's close: its parts shut down in order, and the final manifest records the outcome.

The assembly (:mod:`friendsim.runtime.assembly`) calls these from its ``finally``, whatever the
run's outcome, through :func:`~friendsim._carry.to_the_end` (a second Ctrl-C does not cut the
close short). :func:`shutdown` goes on past a part that fails to close, so the database is
always closed and its thread ends; :func:`write_outcome` rewrites the manifest with the status,
the stop's reason and detail (redacted), the totals (:func:`totals`, and :func:`losses`: what
the run lost, as :data:`~friendsim.runtime.status.LOSSES` counts it), the LLM usage, the wall
time and the budget, and, for a run that ran every window, the log's hash.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from friendsim.coach.service import CoachService
from friendsim.llm.accounting import Ledger
from friendsim.llm.budget import Budget
from friendsim.llm.redact import redact_text
from friendsim.llm.stack import LLMStack
from friendsim.platform.service import Platform
from friendsim.rundir.layout import RunLayout
from friendsim.rundir.log import connect, log_hash
from friendsim.rundir.manifest import Manifest, write_manifest
from friendsim.runtime.engine import Engine, WindowTally
from friendsim.runtime.instruments import Instruments
from friendsim.runtime.status import StopKind

log = structlog.get_logger(__name__)


def log_sha256(db: Path) -> str:
    """The hash of the log in ``db`` (:func:`~friendsim.rundir.log.log_hash`)."""
    conn = connect(db)
    try:
        return log_hash(conn)
    finally:
        conn.close()


async def shutdown(
    service: CoachService | None,
    stacks: Mapping[str, LLMStack],
    platform: Platform,
    *,
    abandon: bool = False,
) -> None:
    """Stop the coach, close the LLM stacks, then close (flush) the platform — each step even
    when an earlier one fails, so the database is always closed and its thread ends. A run that
    did not complete (``abandon``) does not wait for the coach advice still being asked."""
    try:
        if service is not None:
            await service.stop(abandon=abandon)
    except Exception as exc:
        log.error("coach_service_stop_failed", error=repr(exc))
    for stack in stacks.values():
        try:
            await stack.aclose()
        except Exception as exc:
            log.error("llm_close_failed", model=stack.model, error=repr(exc))
    try:
        await platform.close()
    except Exception as exc:
        log.error("platform_close_failed", error=repr(exc))


def losses(
    engine: Engine, service: CoachService | None, instruments: Instruments | None
) -> dict[str, int]:
    """What the run lost so far, as the manifest's ``totals`` count it
    (:data:`~friendsim.runtime.status.LOSSES`)."""
    moderation = instruments.moderation if instruments is not None else None
    return {
        "lost_actions": engine.lost_actions,
        "policy_errors": engine.policy_errors,
        "lost_guidance": service.lost_guidance if service is not None else 0,
        "lost_reviews": moderation.lost_reviews if moderation is not None else 0,
        "lost_answers": instruments.lost_answers if instruments is not None else 0,
    }


def totals(windows: Sequence[WindowTally]) -> dict[str, int]:
    """The manifest's ``totals`` of the windows run (before :func:`losses` is added)."""
    return {
        "wakes": sum(w.wakes for w in windows),
        "actions": sum(w.actions for w in windows),
        "events": sum(w.events for w in windows),
        "nots": sum(w.nots for w in windows),
        "failures": sum(w.failures for w in windows),
        "votes": sum(w.votes for w in windows),
    }


async def write_outcome(
    run_dir: Path,
    manifest: Manifest,
    *,
    status: str,
    platform: Platform,
    windows: Sequence[WindowTally],
    engine: Engine | None,
    service: CoachService | None,
    instruments: Instruments | None,
    ledger: Ledger,
    started: float,
    stop_reason: StopKind | None,
    stop_detail: str | None,
    budget: Budget | None,
) -> None:
    """Record the run's outcome in ``manifest`` and write it into ``run_dir`` (after
    :func:`shutdown`: the platform's ``committed_seq`` is final). ``started``: the run's start,
    by ``time.perf_counter``. The log's hash is recorded for a ``completed`` or ``degraded``
    run only (the platform's own, or read from the log)."""
    manifest.status = status  # type: ignore[assignment]
    manifest.end_seq = platform.committed_seq
    manifest.windows = len(windows)
    manifest.totals = totals(windows)
    if engine is not None:
        manifest.totals.update(losses(engine, service, instruments))
    manifest.llm_usage = ledger.to_json()
    manifest.wall_seconds = round(time.perf_counter() - started, 3)
    manifest.stop_reason = stop_reason
    manifest.stop_detail = None if stop_detail is None else redact_text(stop_detail)[:1000]
    manifest.budget = None if budget is None else budget.status().to_json()
    if status in ("completed", "degraded"):
        manifest.log_sha256 = platform.log_sha256 or await asyncio.to_thread(
            log_sha256, RunLayout.of(run_dir).events
        )
    await asyncio.to_thread(write_manifest, run_dir, manifest)
