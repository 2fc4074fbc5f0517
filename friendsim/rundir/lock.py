"""The run lock: one writer per run directory, released by the kernel when the writer dies.

``run``, ``--resume``, ``--fork`` and every sweep replication hold an exclusive ``flock`` on
``RUN_DIR/run.lock`` for as long as they write the run. A second writer fails at once with
:class:`~.errors.RunLockedError` naming the holder's pid (written into the lock file after the
lock is taken). Because the kernel drops an ``flock`` when its process exits, however it exits
(SIGKILL included), a stale lock file never blocks anyone: the file may stay, the lock does not.

A command that locks a run it does not write (``--resume`` holds its source run's lock so that no
second writer can start; a new run refused because its directory already holds a run) releases
with ``restore=True``: the lock file gets back its bytes and times (or is removed when the lock
made it), so such a run stays byte-for-byte as it was.

Readers never take the lock and never create the file; :func:`holder` tells them whether the run
is being written right now (so ``log verify`` can say "run in progress" instead of reporting a
corruption that is only a run still being written).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from .errors import MissingFileError, RunLockedError, RunOccupiedError
from .layout import LOCK


def _try_exclusive(fd: int, *, attempts: int = 25, pause: float = 0.01) -> bool:
    """Take an exclusive lock, retrying briefly: a reader's probe (:func:`holder`) holds a shared
    lock for microseconds and must not make a writer fail."""
    for i in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if i + 1 < attempts:
                time.sleep(pause)
    return False


def _read_holder(path: Path) -> tuple[int | None, str | None]:
    """The pid a lock file names (its first line) and, for a reader's lock, the command that
    reads (its second line, :func:`reading_locked`)."""
    try:
        lines = path.read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return None, None
    first = lines[0].strip() if lines else ""
    reader = lines[1].strip() if len(lines) > 1 and lines[1].strip() else None
    return (int(first) if first.isdigit() else None), reader


def _read_pid(path: Path) -> int | None:
    return _read_holder(path)[0]


class RunLock:
    """An exclusive lock on one run directory (a context manager; also :meth:`acquire`).

    ``name`` and ``what``: the lock file and what messages call the directory; a sweep command
    locks its sweep directory with ``sweep.lock``, ``"sweep"``, so that a second sweep into it
    is refused instead of setting aside, as unfinished, the runs the first is writing.

    ``reader``: the holder reads the directory rather than writes it (the command, such as
    ``friendsim analyze``); it is written into the lock file after the pid, so that a command
    refused by this lock says the directory is being read, and by what, not written."""

    def __init__(
        self, run_dir: str | Path, *, name: str = LOCK, what: str = "run", reader: str | None = None
    ) -> None:
        self.run_dir = Path(run_dir)
        self.name = name
        self.what = what
        self.reader = reader
        self.path = self.run_dir / name
        self._fd: int | None = None
        self._previous: tuple[bytes, os.stat_result] | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, create: bool = True) -> RunLock:
        """Take the lock now or raise :class:`RunLockedError` (never waits long).

        ``create``: make the run directory when it does not exist (a new run); otherwise a
        missing directory is :class:`~.errors.MissingFileError`. A path that is a file, or a
        directory that cannot be made or locked (a file on its path, a read-only or special file
        system), is :class:`~.errors.RunOccupiedError` naming it and the system's reason.
        """
        if self._fd is not None:
            return self
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise RunOccupiedError(
                f"{self.run_dir} is a file, not a directory; choose another --out"
                if create
                else f"{self.run_dir} is a file, not a {self.what} directory"
            )
        if not create and not self.run_dir.is_dir():
            raise MissingFileError(f"run directory not found: {self.run_dir}")
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            existed = self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise RunOccupiedError(
                f"{self.run_dir}: cannot make or lock the run directory "
                f"({exc.strerror or exc}); choose another --out"
            ) from None
        if not _try_exclusive(fd):
            os.close(fd)
            pid, reader = _read_holder(self.path)
            doing = "written" if reader is None else "read"
            by = writer_name(pid) + ("" if reader is None else f" ({reader})")
            raise RunLockedError(
                f"{self.run_dir}: the {self.what} is being {doing} by {by} (lock {self.path}); "
                "wait for it to finish or stop it first",
                pid=pid,
            ) from None
        if existed:
            st = os.fstat(fd)
            self._previous = (os.pread(fd, st.st_size, 0), st)
        os.ftruncate(fd, 0)
        note = "" if self.reader is None else f"{self.reader}\n"
        os.write(fd, f"{os.getpid()}\n{note}".encode())
        self._fd = fd
        return self

    def moved(self, run_dir: str | Path) -> None:
        """The locked directory was renamed to ``run_dir`` while held (a resume moving the original
        aside): :meth:`release` restores, or removes, the lock file there, not at the old path."""
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / self.name

    def release(self, *, restore: bool = False) -> None:
        """Drop the lock (the file stays: it is harmless once unlocked).

        ``restore``: this holder did not write the run; the lock file gets back the bytes and
        times it had before :meth:`acquire` (a file the lock created is removed), so the run
        directory is left byte-for-byte as it was."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        previous, self._previous = self._previous, None
        if restore:
            with contextlib.suppress(OSError):
                self._restore(fd, previous)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def _restore(self, fd: int, previous: tuple[bytes, os.stat_result] | None) -> None:
        if previous is None:  # the lock made the file; remove it if it is still at its path
            if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                self.path.unlink()
            return
        data, st = previous
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@contextlib.contextmanager
def reading_locked(
    run_dir: str | Path, *, name: str = LOCK, what: str = "run", reader: str = "a reader"
) -> Iterator[None]:
    """Hold the lock of a directory this process reads whole and writes derived files into (a
    sweep's aggregate and report) for the duration of the block. ``reader`` names the command
    (``friendsim analyze``): a command this lock refuses says the directory is being read by it.

    A writer holding it is :class:`~.errors.RunLockedError` naming its pid (what was found would
    be a part of it); a writer that starts meanwhile is refused. A directory whose lock file
    cannot be made (a read-only copy, which nobody writes) is read without it. The lock file is
    left as it was found (:meth:`RunLock.release` with ``restore``).
    """
    lock = RunLock(run_dir, name=name, what=what, reader=reader)
    with contextlib.suppress(RunOccupiedError):
        lock.acquire(create=False)
    try:
        yield
    finally:
        lock.release(restore=True)  # nothing to do when not taken


def writer_name(pid: int | None) -> str:
    """How messages name the process holding a run's lock: ``process P``, or ``another
    process`` when its pid is unknown (``None``, or :func:`holder`'s ``-1``)."""
    return f"process {pid}" if pid is not None and pid > 0 else "another process"


def holder(run_dir: str | Path) -> int | None:
    """The pid writing ``run_dir`` right now, or ``None`` when nobody holds its lock.

    Probes with a shared non-blocking lock on an existing lock file only (never creates it), so
    a reader leaves the directory as it found it.
    """
    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(path)
        return pid if pid is not None else -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
