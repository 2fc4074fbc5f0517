"""Re-executing a run: new run directories and manifest lineage.

Rerun, resume and fork all re-execute a run through the assembly
(:func:`friendsim.runtime.assembly.run_plan`) with the old run's LLM cache; this module holds
what they share. :func:`new_run_dir` creates the target (refusing a non-empty one) and copies
the old run's ``personas.jsonl`` and a snapshot of its ``llm_cache.db`` into it. A recorded
prefix is re-derived with :attr:`~friendsim.runtime.assembly.RunPlan.recorded_until_seq` set, so
a request that misses the cache there raises :class:`~friendsim.llm.errors.CacheMissError`
(fatal to the run) instead of silently calling a live model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from friendsim.llm.batch import BATCHES_DB
from friendsim.rundir.errors import RunInputError
from friendsim.rundir.layout import LLM_CACHE_DB, MANIFEST, PERSONAS
from friendsim.rundir.log import require_file, sha256_file, snapshot


def new_run_dir(old: Path, new: Path) -> Path:
    """Create ``new`` (absent or empty) with the old run's personas and a copy of its LLM cache
    and batch journal (a pending batch is then collected, not submitted again)."""
    if new.resolve() == old.resolve():
        raise RunInputError(f"the new run directory must differ from the old one ({old})")
    if new.exists() and (not new.is_dir() or any(new.iterdir())):
        raise RunInputError(f"{new} exists and is not an empty directory; choose another --out")
    require_file(old / PERSONAS, "persona file of the run")
    new.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(old / PERSONAS, new / PERSONAS)
    if (old / LLM_CACHE_DB).is_file():
        snapshot(old / LLM_CACHE_DB, new)
    if (old / BATCHES_DB).is_file():
        snapshot(old / BATCHES_DB, new)
    return new


def manifest_sha256(run_dir: Path) -> str:
    """sha256 of ``manifest.json``'s bytes (lineage: which parent manifest a run came from)."""
    return sha256_file(require_file(run_dir / MANIFEST, "run manifest"))
