"""Where a command may write an output file: never over a run's own files.

Every command that writes a file the user names (``report --out``, ``log export``, ``log
import``'s new database, ``replay --redrive --out``, ``personas generate --out``) checks it with
:func:`check_output_file` before it reads or computes anything, so a bad path costs nothing and
changes nothing. Refused, each with an :class:`~.errors.OutputPathError` naming the path:

* a file of a run directory (a directory holding ``events.db`` or ``manifest.json``) that the run
  itself holds: its log, model cache and batch journal with their SQLite side files, its
  manifest, personas and lock, and its stored text-based tie scores (made by asking a model;
  written only by the scoring itself) (symbolic links are followed: a link to a run's file is
  that file);
* a path that is a directory;
* a path whose folder does not exist (unless ``parents``: the command makes the missing folders)
  or is not a folder.

What the check cannot foresee (a read-only or special file system) fails when written; the
commands report that :class:`OSError` with :func:`os_error_message`, in one line.
"""

from __future__ import annotations

from pathlib import Path

from .errors import OutputPathError
from .layout import (
    EVENTS_DB,
    LLM_BATCHES_DB,
    LLM_CACHE_DB,
    LOCK,
    MANIFEST,
    PERSONAS,
    TIE_SCORES,
    RunLayout,
)

_SQLITE_SIDES = ("-wal", "-shm", "-journal")
_DATABASES = (EVENTS_DB, LLM_CACHE_DB, LLM_BATCHES_DB)
RUN_FILES = frozenset(
    {
        *(db + side for db in _DATABASES for side in ("", *_SQLITE_SIDES)),
        MANIFEST,
        MANIFEST + ".tmp",
        PERSONAS,
        LOCK,
        TIE_SCORES,
    }
)


def check_output_file(path: str | Path, *, what: str, parents: bool = False) -> Path:
    """``path`` as a :class:`Path` when a command may write its ``what`` there (see the module
    docstring); else :class:`~.errors.OutputPathError` naming the path and the reason.

    ``parents``: the command creates missing folders, so only an existing ancestor that is not
    a folder is refused. Nothing is created or changed here.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputPathError(f"{p} is a directory; give a file name for the {what}")
    real = p.resolve()
    if real.name in RUN_FILES and RunLayout(real.parent).holds_run():
        raise OutputPathError(
            f"{p} is the file {real.name} of the run in {real.parent}; refusing to overwrite "
            f"a run's own files with the {what}"
        )
    folder = real.parent
    while parents and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.exists():
        raise OutputPathError(f"{p}: the folder {p.parent} does not exist (for the {what})")
    if not folder.is_dir():
        raise OutputPathError(f"{p}: {folder} is not a folder (for the {what})")
    return p


def os_error_message(exc: OSError) -> str:
    """One line for an :class:`OSError` met while writing: the file and the system's reason."""
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return f"{where}{exc.strerror or exc}"


def plain_name(name: str) -> bool:
    """True when ``name`` is one path component, so a default directory made from it
    (``runs/NAME``, ``runs/sweep-NAME``) stays inside ``runs/``."""
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name
