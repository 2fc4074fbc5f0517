"""The event loop a run's process drives: uvloop where it is installed, else the stdlib's.

A model-bound run does its simulation and all its model traffic on one event loop, and the
loop's own work (reading and writing sockets, waking tasks, timers, the database thread's
call-backs) is a good part of its CPU. uvloop does that work in C: in same-moment pairs over
real HTTP, the 1,000-agent continuous setting spent 0.84–0.97 of the stdlib loop's CPU per
request; the 200-agent rounds setting, where the simulation's own work dominates, showed no
difference beyond the machine's noise (``bench/llm_bound.py --loop both``; BENCHMARKS.md).
Which loop runs never changes what a run records: the log does not depend on when answers
arrive (decisions are applied in agent order, :mod:`friendsim.runtime.engine`), and the
example configs' digests are checked on both loops.

``FRIENDSIM_LOOP`` chooses: ``auto`` (the default: uvloop when it can be imported, the stdlib
loop otherwise, as on Windows), ``uvloop`` (an error with the install command when it is
missing) or ``asyncio`` (the stdlib loop).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

LOOP_ENV = "FRIENDSIM_LOOP"
LOOP_CHOICES = ("auto", "uvloop", "asyncio")
_MISSING = (
    f"{LOOP_ENV}=uvloop but uvloop is not installed: pip install uvloop "
    f"(or unset {LOOP_ENV} to use the stdlib loop)"
)


class LoopChoiceError(ValueError):
    """``FRIENDSIM_LOOP`` names no loop, or names uvloop where it is not installed."""


def loop_choice(env: Mapping[str, str] | None = None) -> str:
    """The loop ``FRIENDSIM_LOOP`` asks for (``auto`` when unset or empty)."""
    raw = (os.environ if env is None else env).get(LOOP_ENV, "")
    choice = raw.strip().lower() or "auto"
    if choice not in LOOP_CHOICES:
        raise LoopChoiceError(
            f"{LOOP_ENV}={raw!r} names no event loop; use one of {', '.join(LOOP_CHOICES)}"
        )
    return choice


def check_loop_choice(env: Mapping[str, str] | None = None) -> None:
    """Raise :class:`LoopChoiceError` for a ``FRIENDSIM_LOOP`` that :func:`run` would refuse,
    without importing uvloop (a command checks before it starts anything)."""
    if loop_choice(env) == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise LoopChoiceError(_MISSING)


def loop_factory(
    env: Mapping[str, str] | None = None,
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the loop (``None``: the stdlib's default), from ``FRIENDSIM_LOOP``."""
    choice = loop_choice(env)
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise LoopChoiceError(_MISSING) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], *, env: Mapping[str, str] | None = None) -> T:
    """``asyncio.run(main)`` on the loop ``FRIENDSIM_LOOP`` chooses (same Ctrl-C handling:
    the main task is cancelled)."""
    try:
        factory = loop_factory(env)
    except LoopChoiceError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``"uvloop"`` or ``"asyncio"``: which loop ``loop`` (default: the running one) is."""
    loop = loop if loop is not None else asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.split(".")[0] == "uvloop" else "asyncio"
