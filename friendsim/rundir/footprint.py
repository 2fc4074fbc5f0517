"""A run's footprint in its directory: what a new run may write into, and what a run refused
before it began leaves behind (nothing of its own).

:func:`~friendsim.runtime.assembly.run_plan` calls these while it holds the directory's lock
(:mod:`.lock`), so no other writer is in the directory meanwhile:

* :func:`check_new_run_dir`: a new run refuses a directory holding files it would write over
  (:class:`~.errors.RunOccupiedError`); a ``llm_cache.db`` placed there is an input, not a clash.
* :func:`entries` before the run, then :func:`windows_began` and :func:`remove_new_files` when
  the run is refused as bad input (a provider without its key, a plug-in not installed): the
  files it wrote go, what was there before stays, so the same command works once the input is
  fixed.
* :func:`discard_if_untouched`: a directory the run created and left holding its lock file only
  is removed.

:func:`windows_began` opens the log in place, read-only: it is the refused run's own log, under
the lock this process holds, not a run of someone else's (those are read from snapshots,
:mod:`.log`). Each helper that removes swallows :class:`OSError`: tidying up never hides the
refusal being raised.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .errors import RunOccupiedError
from .layout import EVENTS_DB, LOCK, MANIFEST, PERSONAS


def entries(run_dir: Path) -> frozenset[str]:
    """The names in ``run_dir`` (none when it is not a directory)."""
    return frozenset(os.listdir(run_dir)) if run_dir.is_dir() else frozenset()


def windows_began(run_dir: Path) -> bool:
    """Whether the log in ``run_dir`` holds a ``window_started`` (``True`` when it cannot be
    read: then nothing is removed)."""
    path = run_dir / EVENTS_DB
    if not path.is_file():
        return False
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT 1 FROM events WHERE kind = 'window_started' LIMIT 1"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return True
    return row is not None


def remove_new_files(run_dir: Path, before: frozenset[str]) -> None:
    """A run refused before its first window (a provider without its key, a plug-in that is
    not installed: bad input, exit 2) leaves nothing behind: the files it wrote (the personas,
    the manifest, the log of its agents' registrations) go, so the same command works once the
    input is fixed; what was in the directory before stays (a resume's or a fork's copies of
    the personas and answers: their own refusal removes the folder they made)."""
    for name in sorted(entries(run_dir) - before):
        path = run_dir / name
        try:
            if path.is_file() or path.is_symlink():
                path.unlink()
        except OSError:
            pass


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse a directory that holds files a new run would write over (see
    :func:`~friendsim.runtime.assembly.run_experiment`; a file and a run's directory are named
    by :func:`~friendsim.runtime.assembly.prepare_run`). A ``llm_cache.db`` placed there is an
    input (a run replaying recorded answers), not a clash."""
    if not run_dir.is_dir() or (run_dir / EVENTS_DB).exists():
        return
    clash = sorted(n for n in (PERSONAS, MANIFEST) if (run_dir / n).exists())
    if clash:
        raise RunOccupiedError(
            f"{run_dir} holds {', '.join(clash)} but no run ({EVENTS_DB}); a new run would "
            "write over them; choose another --out"
        )


def discard_if_untouched(run_dir: Path) -> None:
    """Remove a run directory this call created when nothing but its lock file was written
    (bad input found before the run began): bad input leaves nothing behind."""
    try:
        names = {p.name for p in run_dir.iterdir()}
        if names <= {LOCK}:
            (run_dir / LOCK).unlink(missing_ok=True)
            run_dir.rmdir()
    except OSError:
        pass
