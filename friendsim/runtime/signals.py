"""Prompt, visible stops for the commands that write a run (``run``, ``run --resume``).

The first SIGINT or SIGTERM prints what happens ("stopping after window W; Ctrl-C again to stop
now", or "stopping before the first window completed" while none has: a window is complete once
its coach has advised on it, as the manifest's ``windows`` counts) and sets the run's stop event:
the engine cancels the model calls in flight at once, applies nothing of the unfinished wake,
stops waiting for a coach still advising on a window's end (that window's advice is dropped and
asked again on resume), and the run ends ``interrupted`` with everything committed kept
(resumable). A second signal cancels the run task itself: it stops now, still resumable (the
log is append-only and committed in transactions). Either way the process ends within seconds,
never after the model answers. Once the run has ended (its outcome recorded), further signals
change nothing: the command reports that outcome and exits (:mod:`friendsim._signals`, which
holds the signals for the whole command).

:class:`WindowWatch` is the run listener that knows which window last ended (it forwards every
hook to the listener it wraps, e.g. the progress display).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TextIO, TypeVar

from friendsim._signals import routed
from friendsim.runtime.engine import RunListener, WindowTally

if TYPE_CHECKING:
    from friendsim.runtime.wakes import ExpectedWakes

T = TypeVar("T")


class WindowWatch(RunListener):
    """Remembers the last window that ended; forwards every hook to ``inner`` (if any), and
    hands a continuous run's expected wakes per window to ``on_wakes`` (if any)."""

    def __init__(
        self,
        inner: RunListener | None = None,
        *,
        on_wakes: Callable[[ExpectedWakes], None] | None = None,
    ) -> None:
        self.inner = inner
        self.on_wakes = on_wakes
        self.last_window = 0

    def run_started(self, *, windows: int, agents: int) -> None:
        if self.inner is not None:
            self.inner.run_started(windows=windows, agents=agents)

    def wakes_expected(self, *, window: ExpectedWakes, run: ExpectedWakes) -> None:
        if self.on_wakes is not None:
            self.on_wakes(window)
        if self.inner is not None:
            self.inner.wakes_expected(window=window, run=run)

    def wake_applied(self, tally: WindowTally) -> None:
        if self.inner is not None:
            self.inner.wake_applied(tally)

    def window_ended(self, tally: WindowTally) -> None:
        self.last_window = tally.window
        if self.inner is not None:
            self.inner.window_ended(tally)


async def stoppable(
    run: Callable[[asyncio.Event], Awaitable[T]],
    *,
    what: str,
    resume_hint: str,
    watch: WindowWatch | None = None,
    stream: TextIO | None = None,
) -> T:
    """Await ``run(stop)`` with SIGINT/SIGTERM wired to ``stop`` (see the module docstring)."""
    out = stream if stream is not None else sys.stderr
    stop = asyncio.Event()
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    over = False

    def on_signal(sig: signal.Signals) -> None:
        if over:
            return
        if stop.is_set():
            out.write(f"\n{what}: {sig.name} again: stopping now; {resume_hint}\n")
            out.flush()
            task.cancel()
            return
        window = watch.last_window if watch is not None else 0
        when = f"after window {window}" if window else "before the first window completed"
        out.write(
            f"\n{what}: {sig.name}: stopping {when}; Ctrl-C again to stop now "
            f"(model calls in flight are cancelled, everything committed is kept; {resume_hint})\n"
        )
        out.flush()
        stop.set()

    with routed(lambda sig: loop.call_soon_threadsafe(on_signal, sig)):
        try:
            return await run(stop)
        finally:
            over = True
