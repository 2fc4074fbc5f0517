"""Working folders beside a run: where a command that re-executes a run keeps its copies.

``run --resume``, ``run --fork`` and ``replay --rerun`` read the old run from copies (a
:func:`~.log.snapshot` of its log, of its answers for a check, of an interrupted resume's
answers): opening a run's database in place would touch it. A folder in the system's temporary
directory is never removed when the process is killed (SIGKILL, out of memory, a container
restarted), and a log copy can weigh gigabytes on what is often a small tmpfs. So
:func:`working_folder` makes the folder in the run's own parent directory, as the hidden
``.friendsim-work-<what>-<random>``, on the file system that holds the run, and locks it
(:class:`~.lock.RunLock`, ``work.lock``, an ``flock`` the kernel drops when its process dies).
Each such command first removes the working folders there whose lock nobody holds: those a
killed process left (:func:`remove_stale`). A folder still locked is in use and left alone; a
folder is made under another name (``.friendsim-new-<random>``) and renamed only once locked,
so it is never seen unlocked while in use. A process killed in the instant between leaves that
folder, holding its lock file only: :func:`remove_stale` removes it too once it is older than
:data:`NEW_STALE_S` and unlocked (a younger one may be another process's, about to lock it). Where the run's parent directory cannot take a
folder (read-only), the system's temporary directory is used, the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import RunDirError
from .lock import RunLock

WORK_PREFIX = ".friendsim-work-"
"""The name of every working folder starts so (:func:`remove_stale` removes only those)."""
NEW_PREFIX = ".friendsim-new-"
"""A working folder's name while it is made, before its lock is held."""
NEW_STALE_S = 600.0
"""A ``.friendsim-new-*`` folder this many seconds old whose lock no process holds was left by a
killed process (one in use is locked within milliseconds of being made)."""
WORK_LOCK = "work.lock"
"""The lock file inside a working folder, held by the process using it."""


@contextlib.contextmanager
def working_folder(beside: Path, *, what: str) -> Iterator[Path]:
    """A new, locked working folder next to the run ``beside`` (the module docstring), removed
    when the block ends; stale ones a killed process left there are removed first. ``what``
    (``resume``, ``fork``...) is part of its name, so a person listing the folder knows it."""
    home = Path(os.path.abspath(beside)).parent
    try:
        folder, lock = _made(home, what)
    except (OSError, RunDirError):  # a parent directory that takes no folder (read-only)
        folder, lock = _made(Path(tempfile.gettempdir()), what)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # still locked: no one else removes it meanwhile
        lock.release()


def _made(home: Path, what: str) -> tuple[Path, RunLock]:
    remove_stale(home)
    new = Path(tempfile.mkdtemp(prefix=NEW_PREFIX, dir=home))
    try:
        lock = RunLock(new, name=WORK_LOCK, what="working folder").acquire(create=False)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    folder = home / f"{WORK_PREFIX}{what}-{new.name.removeprefix(NEW_PREFIX)}"
    try:
        os.rename(new, folder)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        lock.release()
        raise
    lock.moved(folder)
    return folder, lock


def remove_stale(home: Path) -> list[Path]:
    """Remove the working folders in ``home`` whose lock no process holds (their process was
    killed), and the half-made ones (``.friendsim-new-*``) among them older than
    :data:`NEW_STALE_S`; returns them. One in use, or that cannot be locked, is left as it is."""
    try:
        names = sorted(
            n for n in os.listdir(home) if n.startswith(WORK_PREFIX) or n.startswith(NEW_PREFIX)
        )
    except OSError:
        return []
    removed = []
    now = time.time()
    for name in names:
        folder = home / name
        if folder.is_symlink() or not folder.is_dir():
            continue
        if name.startswith(NEW_PREFIX):
            try:
                if now - folder.stat().st_mtime < NEW_STALE_S:
                    continue
            except OSError:
                continue
        lock = RunLock(folder, name=WORK_LOCK, what="working folder")
        try:
            lock.acquire(create=False)
        except RunDirError:  # in use (RunLockedError), gone meanwhile, or not ours to lock
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            lock.release()
        removed.append(folder)
    return removed
