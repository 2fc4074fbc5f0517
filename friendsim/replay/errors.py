"""Typed errors of the replay tools. Every message names the file (and seq/table/key) at fault.

:class:`ReplayInputError` covers corrupt or foreign input: a missing file, a truncated or
malformed database, a log written by a newer friendsim, a manifest that does not describe the
log. Raising one never changes the input: the tools work on snapshots (copies) of a run's files.
"""

from __future__ import annotations

from typing import Any


class ReplayError(Exception):
    """Base class of the replay tools' errors."""


class ReplayInputError(ReplayError):
    """A run directory or database cannot be replayed; nothing was modified."""


class MissingFileError(ReplayInputError):
    """A file the run directory must hold is absent."""


class CorruptLogError(ReplayInputError):
    """The event log is unreadable, truncated or structurally broken (gaps, bad rows)."""


class ForeignLogError(ReplayInputError):
    """The log was written by a newer friendsim (schema or payload version) or is not a log."""


class ManifestMismatchError(ReplayInputError):
    """``manifest.json`` does not describe the log next to it (seq range, hash, lineage)."""


class DivergenceError(ReplayError):
    """A re-executed or rebuilt log differs from the original; ``diff`` says where."""

    def __init__(self, message: str, diff: Any = None) -> None:
        super().__init__(message)
        self.diff = diff
