"""The run directory's owner: its layout, the typed manifest, the run lock and the log verifier.

Everything that creates, writes or reads a run directory goes through this package: file names
(:mod:`.layout`), the versioned :class:`~.manifest.Manifest` with its one reader and writer
(:mod:`.manifest`), the exclusive writer lock (:mod:`.lock`), safe read-only access to the log
(:mod:`.log`), the verifier that rebuilds the platform from the log (:mod:`.verify`), the
locked working folders beside a run where re-executing commands keep their copies
(:mod:`.scratch`) and a run's footprint in its directory (:mod:`.footprint`: what a new run may
write into, and what a run refused before it began takes back). It sits above the platform (it
decodes events) and below every component that runs or analyses a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from friendsim._lazy import lazy_exports

if TYPE_CHECKING:
    from .errors import (
        CorruptLogError,
        DivergenceError,
        ForeignLogError,
        ManifestError,
        ManifestMismatchError,
        MissingFileError,
        OutputPathError,
        RunDirError,
        RunInputError,
        RunLockedError,
        RunOccupiedError,
    )
    from .layout import EVENTS_DB, LLM_CACHE_DB, LOCK, MANIFEST, PERSONAS, RunLayout
    from .lock import RunLock, holder
    from .manifest import Manifest, amend_manifest, new_manifest, read_manifest, write_manifest
    from .outputs import check_output_file

__getattr__ = lazy_exports(
    __name__,
    {
        "CorruptLogError": "friendsim.rundir.errors",
        "DivergenceError": "friendsim.rundir.errors",
        "ForeignLogError": "friendsim.rundir.errors",
        "ManifestError": "friendsim.rundir.errors",
        "ManifestMismatchError": "friendsim.rundir.errors",
        "MissingFileError": "friendsim.rundir.errors",
        "OutputPathError": "friendsim.rundir.errors",
        "RunDirError": "friendsim.rundir.errors",
        "RunInputError": "friendsim.rundir.errors",
        "RunLockedError": "friendsim.rundir.errors",
        "RunOccupiedError": "friendsim.rundir.errors",
        "EVENTS_DB": "friendsim.rundir.layout",
        "LLM_CACHE_DB": "friendsim.rundir.layout",
        "LOCK": "friendsim.rundir.layout",
        "MANIFEST": "friendsim.rundir.layout",
        "PERSONAS": "friendsim.rundir.layout",
        "RunLayout": "friendsim.rundir.layout",
        "RunLock": "friendsim.rundir.lock",
        "holder": "friendsim.rundir.lock",
        "Manifest": "friendsim.rundir.manifest",
        "amend_manifest": "friendsim.rundir.manifest",
        "new_manifest": "friendsim.rundir.manifest",
        "read_manifest": "friendsim.rundir.manifest",
        "write_manifest": "friendsim.rundir.manifest",
        "check_output_file": "friendsim.rundir.outputs",
    },
)

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
    "OutputPathError",
    "RunDirError",
    "RunInputError",
    "RunLayout",
    "RunLock",
    "RunLockedError",
    "RunOccupiedError",
    "amend_manifest",
    "check_output_file",
    "holder",
    "new_manifest",
    "read_manifest",
    "write_manifest",
]
