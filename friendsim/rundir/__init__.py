"""The run directory's owner: its layout, the typed manifest, the run lock and the log verifier.

Everything that creates, writes or reads a run directory goes through this package: file names
(:mod:`.layout`), the versioned :class:`~.manifest.Manifest` with its one reader and writer
(:mod:`.manifest`), the exclusive writer lock (:mod:`.lock`), safe read-only access to the log
(:mod:`.log`) and the verifier that rebuilds the platform from the log (:mod:`.verify`). It sits
above the platform (it decodes events) and below every component that runs or analyses a run.
"""

from __future__ import annotations

from .errors import (
    CorruptLogError,
    DivergenceError,
    ForeignLogError,
    ManifestError,
    ManifestMismatchError,
    MissingFileError,
    RunDirError,
    RunInputError,
    RunLockedError,
    RunOccupiedError,
)
from .layout import EVENTS_DB, LLM_CACHE_DB, LOCK, MANIFEST, PERSONAS, RunLayout
from .lock import RunLock, holder
from .manifest import Manifest, amend_manifest, new_manifest, read_manifest, write_manifest

__all__ = [
    "EVENTS_DB",
    "LLM_CACHE_DB",
    "LOCK",
    "MANIFEST",
    "PERSONAS",
    "CorruptLogError",
    "DivergenceError",
    "ForeignLogError",
    "Manifest",
    "ManifestError",
    "ManifestMismatchError",
    "MissingFileError",
    "RunDirError",
    "RunInputError",
    "RunLayout",
    "RunLock",
    "RunLockedError",
    "RunOccupiedError",
    "amend_manifest",
    "holder",
    "new_manifest",
    "read_manifest",
    "write_manifest",
]
