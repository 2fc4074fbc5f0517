"""Ending a sweep's replications when the sweep is interrupted, and recording them as such.

Ctrl-C reaches the sweep process and, from a terminal, its workers too; ``kill -INT`` reaches
the sweep alone. Either way the sweep decides: its local workers ignore SIGINT, and the sweep
sets a stop flag they share (:func:`run_until_stopped` turns it into the run's stop event). A
running replication then stops as a run stops on Ctrl-C (``interrupted``, everything committed
kept, resumable by a re-run of the sweep) and a queued one does not start
(:func:`not_started`). Before this, a worker ran its replication to the end, and then the one
queued behind it, while ``sweep.json`` already said ``interrupted`` with every replication
``pending``.

SIGTERM to the sweep command ends it the same way (:func:`terminate_as_interrupt`), as it stops
``friendsim run``; it used to kill the sweep at once, leaving ``sweep.json`` saying ``running``.
A second signal may cut short the wait for the workers (they die with the sweep), never the
record: ``sweep.json`` is written in full (:func:`friendsim._signals.settling`).

Every replication the sweep did not see finish is recorded with :func:`unfinished`:
``interrupted`` when the sweep was interrupted, ``failed`` when it ended on an error, never
left ``pending``; but ``completed`` when its run's manifest says so (it finished while the sweep
stopped its workers, or was kept from an earlier sweep and not reached): the record never calls
interrupted a run that completed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from friendsim._signals import held
from friendsim.rundir.errors import RunInputError
from friendsim.rundir.manifest import read_manifest

T = TypeVar("T")

STOP_POLL_S = 0.1
"""How often a replication looks at the sweep's stop flag (a cross-process event)."""


class StopFlag(Protocol):
    """What a worker reads of the sweep's stop flag (a ``multiprocessing`` or ``threading``
    event)."""

    def is_set(self) -> bool: ...


async def run_until_stopped(
    run: Callable[[asyncio.Event | None], Awaitable[T]], stop: StopFlag | None
) -> T:
    """Await ``run(event)`` where ``event`` is set once ``stop`` is (``None`` without a flag):
    the run ends at its next stop point as on Ctrl-C."""
    if stop is None:
        return await run(None)
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    pending: asyncio.TimerHandle

    def look() -> None:
        nonlocal pending
        if stop.is_set():
            event.set()
        else:
            pending = loop.call_later(STOP_POLL_S, look)

    pending = loop.call_later(STOP_POLL_S, look)
    try:
        return await run(event)
    finally:
        pending.cancel()


def not_started() -> dict[str, Any]:
    """The outcome of a queued replication a worker takes after the sweep was interrupted:
    nothing written, run by the next sweep."""
    return {
        "status": "interrupted",
        "resumed": False,
        "wall_seconds": 0.0,
        "error": "stop: the sweep was interrupted before this replication started",
    }


def unfinished(exc: BaseException, run_dir: Path) -> dict[str, Any]:
    """What ``sweep.json`` records of a replication the sweep did not see finish because it
    ended on ``exc``, once its executor is closed: ``completed`` when the run in ``run_dir``
    says it completed (its manifest; the run is this replication, foreign runs were refused
    before any ran), else ``interrupted`` or ``failed``."""
    try:
        status = read_manifest(run_dir).status
    except RunInputError:  # no run there, or not readable: it did not complete
        status = None
    if status == "completed":
        return {
            "status": "completed",
            "error": None,
            "note": "completed (its manifest says so) while the sweep was stopping; the sweep "
            "did not see its outcome",
        }
    if isinstance(exc, KeyboardInterrupt):
        return {
            "status": "interrupted",
            "error": "stop: the sweep was interrupted before this replication finished "
            "(re-run the sweep to resume)",
        }
    return {
        "status": "failed",
        "error": f"the sweep stopped on {type(exc).__name__} before this replication finished",
    }


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`KeyboardInterrupt` in the main thread as SIGINT
    does, so the sweep stops and records its replications as on Ctrl-C; once the sweep records
    its outcome (:func:`friendsim._signals.settling`), further signals change nothing. The
    signals are held as a run's command holds them (:func:`friendsim._signals.held`): the
    previous handlers are restored after (in the program, at its exit). Outside the main thread
    (where handlers cannot be set) it does nothing."""
    with held():
        yield
