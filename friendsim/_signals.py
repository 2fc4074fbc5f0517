"""One SIGINT/SIGTERM handler for the whole of a command that writes a run, never the defaults.

A command that writes a run (``friendsim run``, ``run --resume``, ``run --fork``,
``friendsim sweep``) holds the
signals (:func:`held`) from its start to its end; the program (:func:`exit_on_signal`) keeps
them held through the interpreter's exit. Where a signal goes depends on the moment, never on
which handler happens to be installed:

* before the run began (its set-up: reading the config, checking the run directory, nothing
  written): :class:`KeyboardInterrupt` in the main thread, which the command turns into one
  line and exit 130;
* while a run goes (:func:`routed`, what :func:`friendsim.runtime.signals.stoppable` opens):
  to that run's callback, on its event loop (first signal: stop after the window; second: stop
  now);
* once it has ended (its outcome is recorded, the command is only reporting it and exiting),
  or while a stopped command records its outcome (:func:`settling`): nothing; and after the
  command returned its exit code, the process ends at once with that code.

Before, the event loop's handlers were removed when the run ended, which put back the defaults:
a second Ctrl-C arriving while a stopped run's command was reporting or exiting raised
``KeyboardInterrupt`` out of the command (a traceback, and the process killed by SIGINT instead
of exiting 130), and a second SIGTERM killed the process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Route:
    """The handler installed for :data:`SIGNALS` (see the module docstring)."""

    def __init__(self) -> None:
        self.to: Callable[[signal.Signals], object] | None = None
        self.ended = False
        self.exit_code: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.exit_code is not None:
            os._exit(self.exit_code)
        if self.to is not None:
            self.to(signal.Signals(signum))
        elif not self.ended:
            raise KeyboardInterrupt


_route: Route | None = None
_keep = False


def current() -> Route | None:
    """The route the signals are held by, or ``None``."""
    return _route


@contextlib.contextmanager
def held() -> Iterator[Route | None]:
    """Hold :data:`SIGNALS` for the block (the route already holding them, if any: nested
    blocks share it). The previous handlers are restored after the block, except in the
    program (:func:`keep`), whose route stays until the process ends. Outside the main thread,
    where handlers cannot be set, it holds nothing (``None``)."""
    global _route
    if _route is not None or threading.current_thread() is not threading.main_thread():
        yield _route
        return
    route = Route()
    previous: dict[signal.Signals, Any] = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, route)
    _route = route
    try:
        yield route
    finally:
        route.to = None
        route.ended = True
        if not _keep:
            _route = None
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@contextlib.contextmanager
def routed(to: Callable[[signal.Signals], object]) -> Iterator[None]:
    """Within the block, send :data:`SIGNALS` to ``to`` (called in the main thread, from the
    signal handler: it should only schedule work, e.g. ``loop.call_soon_threadsafe``); after
    it, they are ignored until the signals are released (:func:`held`)."""
    with held() as route:
        if route is None:
            yield
            return
        route.to, route.ended = to, False
        try:
            yield
        finally:
            route.to, route.ended = None, True


def keep() -> None:
    """This process is the program: a route installed from now on stays until the process
    ends (:func:`exit_on_signal` then decides), instead of restoring the default handlers
    while the command returns and the interpreter exits."""
    global _keep
    _keep = True


def exit_on_signal(code: int) -> None:
    """The command returned ``code``: a signal from now on ends the process at once with it
    (nothing is left to do but exit; stdout and stderr should be flushed before). Nothing
    changes where no route holds the signals (a command that writes no run)."""
    if _route is not None:
        _route.exit_code = code


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A signal while an outcome is being recorded (:func:`settling`): nothing to do."""


@contextlib.contextmanager
def settling() -> Iterator[None]:
    """Within the block, a stopped command records its outcome (which runs were interrupted,
    the file that says so): SIGINT and SIGTERM are ignored, so that a second Ctrl-C cannot
    leave the record half-written. Under a route (:func:`held`) they stay ignored after the
    block (the command only reports and exits); otherwise the previous handlers come back.
    Outside the main thread it does nothing."""
    route = _route
    if route is not None:
        if route.to is None:
            route.ended = True
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[signal.Signals, Any] = {sig: signal.signal(sig, _ignore) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
