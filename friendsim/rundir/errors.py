"""Typed errors about run directories and event logs. Every message names the file (and the
seq, table or key) at fault.

:class:`RunInputError` covers damaged or foreign input: a missing file, a truncated or malformed
database, a log written by a newer friendsim, a manifest that does not describe the log. Raising
one never changes the input: readers work on snapshots (copies) of a run's files.
"""

from __future__ import annotations

from typing import Any


class RunDirError(Exception):
    """Base class of the run directory's errors."""


class RunInputError(RunDirError, ValueError):
    """A run directory or database cannot be read as a friendsim run; nothing was modified."""


class MissingFileError(RunInputError):
    """A file the run directory must hold is absent."""


class CorruptLogError(RunInputError):
    """The event log is unreadable, truncated or structurally broken (gaps, bad rows)."""


class ForeignLogError(RunInputError):
    """The log was written by a newer friendsim (schema or payload version) or is not a log."""


class ManifestError(RunInputError):
    """``manifest.json`` is missing, not JSON, or not a manifest this friendsim can read."""


class ManifestMismatchError(RunInputError):
    """``manifest.json`` does not describe the log next to it (seq range, hash, lineage)."""


class RunOccupiedError(RunDirError, ValueError):
    """The output directory cannot take a new run: it already holds one, or it is not a folder."""


class OutputPathError(RunDirError, ValueError):
    """An output file cannot be written at the path given: it is a file of a run, a directory,
    or its folder is missing (:func:`~.outputs.check_output_file`); nothing was written."""


class RunLockedError(RunDirError):
    """Another process holds the run's lock (it is writing the run right now)."""

    def __init__(self, message: str, *, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class DivergenceError(RunDirError):
    """A re-executed or rebuilt log differs from the original; ``diff`` says where."""

    def __init__(self, message: str, diff: Any = None) -> None:
        super().__init__(message)
        self.diff = diff
