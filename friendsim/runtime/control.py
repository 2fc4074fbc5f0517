"""Pause, resume and step a running experiment between windows.

:class:`PauseGate` is awaited by the schedulers before each window (``Engine.before_window``).
Pausing only delays the start of the next window: nothing is recorded while paused, and the
model's clock is virtual, so a paused run writes exactly the log it would have written anyway.
``step()`` lets exactly one more window run, then pauses again. A stop request (SIGTERM, Ctrl-C)
ends the wait, so a paused run can still be interrupted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from friendsim.platform.service import Platform


class PauseGate:
    """Between-window gate; methods are called from the event loop that runs the experiment."""

    def __init__(self, *, paused: bool = False) -> None:
        self._open = asyncio.Event()
        if not paused:
            self._open.set()
        self._steps = 0
        self.waiting_before: int | None = None
        """The window the run is held before (None while running)."""
        self.windows_started = 0

    @property
    def paused(self) -> bool:
        return not self._open.is_set()

    def pause(self) -> None:
        self._steps = 0
        self._open.clear()

    def resume(self) -> None:
        self._steps = 0
        self._open.set()

    def step(self) -> None:
        """Run one more window, then pause (from a running run: pause after the current one)."""
        self._steps = 1
        self._open.set()

    def state(self) -> dict[str, Any]:
        return {
            "paused": self.paused or self._steps > 0,
            "waiting_before": self.waiting_before,
            "windows_started": self.windows_started,
        }

    async def wait(self, window: int, stop: asyncio.Event | None = None) -> None:
        """Return when window ``window`` may start (or when ``stop`` is set)."""
        if not self._open.is_set():
            self.waiting_before = window
            waits = [asyncio.ensure_future(self._open.wait())]
            if stop is not None:
                waits.append(asyncio.ensure_future(stop.wait()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
                self.waiting_before = None
        if self._steps > 0:
            self._steps -= 1
            self._open.clear()
        self.windows_started = window


@dataclass(frozen=True, kw_only=True, slots=True)
class RunControl:
    """What a live view hands to a run: the gate awaited before each window, and a hook awaited
    with the platform once it is open and the agents are registered (to follow its bus)."""

    gate: PauseGate | None = None
    on_open: Callable[[Platform], Awaitable[None]] | None = None
