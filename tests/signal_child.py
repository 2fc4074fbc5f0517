"""``friendsim`` (the program, :func:`friendsim.cli.console`) signalling itself at chosen moments,
for the tests of a second signal arriving while a stopped run's command ends
(``tests/test_second_signal.py``).

Environment: ``CHILD_SIGNAL`` (``SIGINT`` or ``SIGTERM``) is raised at the end of window 1 (the
first: stop after the window) and again at ``CHILD_POINT``: ``stop-line`` while the command
writes its stop line (the run stopped, its outcome recorded), ``exit`` in an exit handler (while
the interpreter exits). The arguments are the command line.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from typing import Any

import friendsim.commands.run as run_command
from friendsim.cli import console
from friendsim.runtime.engine import WindowTally
from friendsim.runtime.signals import WindowWatch

SIG = signal.Signals[os.environ["CHILD_SIGNAL"]]
POINT = os.environ["CHILD_POINT"]
window_ended = WindowWatch.window_ended
stopped_line = run_command.stopped_line


def first_at_window_1(self: WindowWatch, tally: WindowTally) -> None:
    window_ended(self, tally)
    if tally.window == 1:
        signal.raise_signal(SIG)


def second_while_reporting(*args: Any) -> str:
    signal.raise_signal(SIG)
    return stopped_line(*args)


WindowWatch.window_ended = first_at_window_1  # type: ignore[method-assign]
if POINT == "stop-line":
    run_command.stopped_line = second_while_reporting
elif POINT == "exit":
    atexit.register(signal.raise_signal, SIG)
else:
    raise SystemExit(f"CHILD_POINT={POINT!r}")
raise SystemExit(console(sys.argv[1:]))
