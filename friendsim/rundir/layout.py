"""The layout of a run directory: every file name a run holds, spelled once.

A run directory holds the event log (``events.db``), the LLM record/replay cache
(``llm_cache.db``, when a model was used with caching on), the journal of provider batches
(``llm_batches.db``, with ``[llm] batch``), the personas the run used (``personas.jsonl``), the
typed manifest (``manifest.json``, see :mod:`.manifest`) and the lock file its writer holds
(``run.lock``, see :mod:`.lock`). Derived outputs are written by the commands that make them and
are never read back as run inputs: the report (``report.html``, its figures in the folder
:data:`friendsim.report.common.FIGURES_DIR` beside it) and the stored text-based tie scores
(``tie_scores.json``). A sweep directory holds its runs' directories (each with its analysis,
:data:`friendsim.analysis.analyze.ANALYSIS_FILE`), ``sweep.json`` and the lock file of the sweep
command running it (``sweep.lock``). docs/run-directory.md describes every file and who writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EVENTS_DB = "events.db"
LLM_CACHE_DB = "llm_cache.db"
LLM_BATCHES_DB = "llm_batches.db"
"""The journal of a run's provider batches (:class:`~friendsim.llm.batch.BatchJournal`)."""
PERSONAS = "personas.jsonl"
MANIFEST = "manifest.json"
LOCK = "run.lock"
REPORT = "report.html"
TIE_SCORES = "tie_scores.json"
SWEEP_FILE = "sweep.json"
"""A sweep directory's record of its grid and runs (beside the runs' own directories)."""
SWEEP_LOCK = "sweep.lock"
"""The lock a sweep command holds on its sweep directory (:class:`~.lock.RunLock`)."""


@dataclass(frozen=True, slots=True)
class RunLayout:
    """The paths of one run directory ``root``."""

    root: Path

    @classmethod
    def of(cls, root: str | Path) -> RunLayout:
        return cls(Path(root))

    @property
    def events(self) -> Path:
        return self.root / EVENTS_DB

    @property
    def llm_cache(self) -> Path:
        return self.root / LLM_CACHE_DB

    @property
    def llm_batches(self) -> Path:
        return self.root / LLM_BATCHES_DB

    @property
    def personas(self) -> Path:
        return self.root / PERSONAS

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def report(self) -> Path:
        return self.root / REPORT

    def holds_run(self) -> bool:
        """True when the directory already holds a run's log or manifest."""
        return self.events.exists() or self.manifest.exists()
