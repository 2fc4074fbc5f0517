"""Work carried to its end through a cancellation of the task awaiting it.

A second Ctrl-C or SIGTERM (stop now) cancels the run's task wherever it awaits. Some awaits
must not be cut short by that: a commit (the platform would take a half-done commit for a failed
one), a run's close or a resume's swap into place (the manifest would keep saying ``running``), a
worker thread copying a run (the clean-up would race the copy). Each waits with :func:`carried`
and then decides what the cancellation means for it: consumed (:func:`to_the_end`, a close), or
raised once the work is done (:func:`in_thread`, a thread's file work).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


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


async def to_the_end(closing: Awaitable[T]) -> T:
    """Await ``closing`` (the run's close: the database, the clients, the final manifest; a
    resume's swap into place) to its end even when this task is cancelled meanwhile (a second
    Ctrl-C or SIGTERM arriving while a stopped run closes): an interrupted close would leave the
    manifest saying ``running`` and the database's thread alive, holding the process open. The
    cancellation is then consumed: the run's own outcome (its status, or the exception being
    raised) is what the caller sees, since the close it asked to cut short has already ended."""
    task = asyncio.ensure_future(closing)
    cancelled = await carried(task)
    current = asyncio.current_task()
    if current is not None:
        for _ in range(cancelled):
            current.uncancel()
    return task.result()


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread(fn, *args, **kwargs)`` that a cancellation does not outrun: a second
    Ctrl-C or SIGTERM arriving while ``fn`` copies or removes files (a resume's or fork's
    set-up) cancels the await, not the thread, and the caller's clean-up would then remove a
    folder the thread goes on filling. The cancellation is honoured once ``fn`` has ended
    (its result or error dropped), so whatever handles it sees the files as ``fn`` left them."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    cancelled = await carried(work)
    if not cancelled:
        return work.result()
    work.exception()  # retrieved: the cancellation is what the caller sees
    current = asyncio.current_task()
    if current is not None:
        for _ in range(cancelled - 1):
            current.uncancel()
    raise asyncio.CancelledError
