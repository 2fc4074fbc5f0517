"""``friendsim`` (the program, :func:`friendsim.cli.console`) signalling itself at chosen moments,
for the tests of Ctrl-C and SIGTERM in the commands of ``friendsim replay`` that write
(``tests/test_replay_signals.py``).

Environment: ``CHILD_SIGNAL`` (``SIGINT`` or ``SIGTERM``) is raised ``CHILD_COUNT`` times (default
1) at ``CHILD_POINT``: ``window-W`` at the end of window W, ``before`` while the recorded run is
being read (nothing written yet), ``redrive`` while ``--redrive`` scores window 1,
``setup-copy`` while a resume's set-up copies the run's files into its staging or ``--out``
folder (in a worker thread, which then waits for the command's clean-up, up to 3 s). The
arguments are the command line.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import friendsim.replay.redrive as redrive_module
import friendsim.replay.rerun as rerun_module
from friendsim.cli import console
from friendsim.runtime.engine import Engine, WindowTally

SIG = signal.Signals[os.environ["CHILD_SIGNAL"]]
COUNT = int(os.environ.get("CHILD_COUNT", "1"))
POINT = os.environ["CHILD_POINT"]


def raise_them() -> None:
    for _ in range(COUNT):
        signal.raise_signal(SIG)


if POINT.startswith("window-"):
    window_ended, at = Engine.window_ended, int(POINT.removeprefix("window-"))

    def signalled_window_end(self: Engine, tally: WindowTally) -> None:
        window_ended(self, tally)
        if tally.window == at:
            raise_them()

    Engine.window_ended = signalled_window_end  # type: ignore[method-assign]
elif POINT == "before":
    config_from_manifest = rerun_module.config_from_manifest

    def signalled_config(*args: Any, **kwargs: Any) -> Any:
        raise_them()
        return config_from_manifest(*args, **kwargs)

    rerun_module.config_from_manifest = signalled_config
elif POINT == "redrive":
    scored_window = redrive_module._window

    async def signalled_scoring(w: int, *args: Any) -> Any:
        if w == 1:
            raise_them()
        return await scored_window(w, *args)

    redrive_module._window = signalled_scoring
elif POINT == "setup-copy":
    import asyncio
    import threading

    import friendsim.replay.resume as resume_module

    copy_run_dir, undo_refused = resume_module.new_run_dir, resume_module._undo_refused
    cleaned = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    def signalled_copy(old: Any, new: Any) -> Any:
        loops[0].call_soon_threadsafe(raise_them)
        cleaned.wait(3)  # old code: the clean-up ran meanwhile; fixed: it waits for the copy
        return copy_run_dir(old, new)

    def noted_undo(*args: Any, **kwargs: Any) -> None:
        undo_refused(*args, **kwargs)
        cleaned.set()

    resume_locked = resume_module._resume_locked

    async def signalled_resume(*args: Any, **kwargs: Any) -> Any:
        loops.append(asyncio.get_running_loop())
        return await resume_locked(*args, **kwargs)

    resume_module.new_run_dir = signalled_copy
    resume_module._undo_refused = noted_undo
    resume_module._resume_locked = signalled_resume
else:
    raise SystemExit(f"CHILD_POINT={POINT!r}")

if __name__ == "__main__":
    raise SystemExit(console(sys.argv[1:]))
