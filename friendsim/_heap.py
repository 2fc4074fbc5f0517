"""Keep the garbage collector's full collections off a run's critical path (and an analysis's).

CPython's cyclic collector walks every tracked object of its oldest generation on a full
collection. A run holds hundreds of thousands of long-lived objects (the platform's state, the
agents' memories, the coach's context) and makes a hundred thousand more a round (votes), so
a full collection comes every second or two, stalls the event loop for 40–80 ms at 200 agents
and finds nothing to collect (0–10 objects in every one we traced), while every model request
in flight waits for its answer to be read. An analysis builds graphs of the same size and pays
the same collections for nothing.

While a :func:`paced_collection` is held, full collections do not start on their own; young
collections go on as before, so the short-lived cycles a run makes (futures, tasks, tracebacks)
are reclaimed as they were. A cycle that outlives two young collections and then becomes
garbage waits for the first full collection after the run. The collector's timing never
changes what a run records: nothing in the model runs in a finaliser.

The thresholds are process-wide: the first holder saves them and the last one to leave puts
them back, so runs that overlap in one process (a sweep) leave the process as they found it.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

NO_FULL_COLLECTIONS = 1 << 30
"""The oldest generation's threshold while held: young collections between two full ones."""

_lock = threading.Lock()
_holders = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def paced_collection() -> Iterator[None]:
    """Hold off full collections (see the module docstring) until the block ends."""
    _enter()
    try:
        yield
    finally:
        _leave()


def _enter() -> None:
    global _holders, _saved
    with _lock:
        _holders += 1
        if _holders == 1:
            _saved = gc.get_threshold()
            young, middle, _ = _saved
            gc.set_threshold(young, middle, NO_FULL_COLLECTIONS)


def _leave() -> None:
    global _holders, _saved
    with _lock:
        _holders -= 1
        if _holders == 0 and _saved is not None:
            current = gc.get_threshold()
            if current[2] == NO_FULL_COLLECTIONS:  # nobody else changed them meanwhile
                gc.set_threshold(current[0], current[1], _saved[2])
            _saved = None
