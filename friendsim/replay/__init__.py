"""Replay tools: verify a log, re-run a run from recorded answers, re-drive subscribers over an
old log, resume a killed run and fork a run at a window boundary. See :mod:`.cli_replay`.

Submodules are imported lazily by their users (they pull in the runtime); this package itself
only re-exports the errors.
"""

from __future__ import annotations

from .errors import (
    CorruptLogError,
    DivergenceError,
    ForeignLogError,
    ManifestMismatchError,
    MissingFileError,
    ReplayError,
    ReplayInputError,
)

__all__ = [
    "CorruptLogError",
    "DivergenceError",
    "ForeignLogError",
    "ManifestMismatchError",
    "MissingFileError",
    "ReplayError",
    "ReplayInputError",
]
