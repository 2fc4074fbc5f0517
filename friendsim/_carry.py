"""Work carried to its end through a cancellation of the task awaiting it.

A second Ctrl-C or SIGTERM (stop now) cancels the run's task wherever it awaits. Some awaits
must not be cut short by that: a commit (the platform would take a half-done commit for a failed
one), a run's close or a resume's swap into place (the manifest would keep saying ``running``), a
worker thread copying a run (the clean-up would race the copy). Each waits with :func:`carried`
and then decides what the cancellation means for it: consumed, or raised once the work is done.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def carried(work: asyncio.Future[Any]) -> int:
    """Wait until ``work`` is done, even when the awaiting task is cancelled meanwhile; how many
    times it was (each still counted by :meth:`asyncio.Task.cancelling`: the caller uncancels
    them or raises :class:`asyncio.CancelledError`). ``work`` itself is never cancelled here;
    one that was cancelled elsewhere raises :class:`asyncio.CancelledError`. Its result or
    error is left in ``work``."""
    cancelled = 0
    while not work.done():
        try:
            await asyncio.wait([work])
        except asyncio.CancelledError:
            cancelled += 1
    if work.cancelled():
        raise asyncio.CancelledError
    return cancelled
