"""The lost-wakes warning that every command running continuous windows prints (``run``,
``run --resume``, ``run --fork``). It lives here, below both :mod:`.run` and :mod:`.replay`, so
that neither command module imports the other for it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from friendsim.runtime.wakes import ExpectedWakes


def lost_wakes_warning(prog: str) -> Callable[[ExpectedWakes], None]:
    """The ``on_wakes`` of a command's :class:`~friendsim.runtime.signals.WindowWatch`: warn
    (one line on stderr, prefixed with ``prog``) when a continuous run's slices lose a
    noticeable share of the configured wakes, or of its most active agents'
    (:func:`~friendsim.runtime.wakes.loses_wakes`). Every command that runs windows uses
    it (``run``, ``run --resume``, ``run --fork``): a resumed or forked run's windows run
    under a ``tick`` as lossy as a new run's."""

    def warn(window: ExpectedWakes) -> None:
        from friendsim.runtime.wakes import loses_wakes, lost_wakes_line

        if loses_wakes(window):
            sys.stderr.write(f"{prog}: warning: {lost_wakes_line(window)}\n")

    return warn
