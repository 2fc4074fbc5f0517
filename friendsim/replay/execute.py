"""Re-executing a run: new run directories, the live-call guard, manifest lineage.

Rerun, resume and fork all re-execute a run with :func:`friendsim.runtime.experiment.run_experiment`
and the old run's LLM cache; this module holds what they share.

* :func:`new_run_dir` creates the target (refusing a non-empty one) and copies the old run's
  ``personas.jsonl`` and a snapshot of its ``llm_cache.db`` into it.
* :class:`LiveCallGuard` / :class:`GuardedLLM`: while the guard is *closed*, a request that reaches
  the provider (i.e. missed the cache) raises :class:`~friendsim.llm.errors.CacheMissError`,
  which the runtime treats as fatal. Re-executing a recorded prefix therefore can never silently
  call a live model: a miss means the re-execution asked something the old run never asked.
* :class:`WindowWatch` forwards run progress to an optional listener and reports each finished
  window (the guard opens after the last recorded window).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.llm.errors import CacheMissError
from friendsim.runtime.engine import RunListener, WindowTally
from friendsim.runtime.manifest import read_manifest as runtime_read_manifest
from friendsim.runtime.manifest import write_manifest

from .errors import ReplayInputError
from .rundir import LLM_CACHE_DB, MANIFEST, PERSONAS, require_file, snapshot

LLMFactory = Callable[[str], LLM]


class LiveCallGuard:
    """Open/closed switch shared by every :class:`GuardedLLM` of one re-execution.

    Closed while ``closed`` is set and ``until`` (when given) still returns True.
    """

    def __init__(
        self, *, closed: bool, reason: str, until: Callable[[], bool] | None = None
    ) -> None:
        self._closed = closed
        self.until = until
        self.reason = reason
        self.refused = 0

    @property
    def closed(self) -> bool:
        return self._closed and (self.until is None or self.until())

    def open(self) -> None:
        self._closed = False


class GuardedLLM:
    """A provider that refuses to be called while its guard is closed (see module docstring)."""

    def __init__(self, inner: LLM, guard: LiveCallGuard) -> None:
        self.inner = inner
        self.guard = guard

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: LLMRequest) -> Completion:
        if self.guard.closed:
            self.guard.refused += 1
            last = request.messages[-1].content if request.messages else request.system
            raise CacheMissError(
                request.cache_key(self.model), request.label, f"{self.guard.reason}: {last[:60]}"
            )
        return await self.inner.complete(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def guarded_factory(factory: LLMFactory | None, guard: LiveCallGuard) -> LLMFactory:
    """An ``llm_factory`` for ``run_experiment`` whose providers go through ``guard``."""

    def make(spec: str) -> LLM:
        if factory is not None:
            inner = factory(spec)
        else:
            from friendsim.llm import create_llm

            inner = create_llm(spec)
        return GuardedLLM(inner, guard)

    return make


class WindowWatch(RunListener):
    """Forwards to ``inner`` and calls ``on_window(w)`` after each window is scored."""

    def __init__(self, inner: RunListener | None, on_window: Callable[[int], None]) -> None:
        self.inner = inner or RunListener()
        self.on_window = on_window

    def run_started(self, *, windows: int, agents: int) -> None:
        self.inner.run_started(windows=windows, agents=agents)

    def wake_applied(self, tally: WindowTally) -> None:
        self.inner.wake_applied(tally)

    def window_ended(self, tally: WindowTally) -> None:
        self.on_window(tally.window)
        self.inner.window_ended(tally)


def new_run_dir(old: Path, new: Path) -> Path:
    """Create ``new`` (absent or empty) with the old run's personas and a copy of its LLM cache."""
    if new.resolve() == old.resolve():
        raise ReplayInputError(f"the new run directory must differ from the old one ({old})")
    if new.exists() and (not new.is_dir() or any(new.iterdir())):
        raise ReplayInputError(f"{new} exists and is not an empty directory; choose another --out")
    require_file(old / PERSONAS, "persona file of the run")
    new.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(old / PERSONAS, new / PERSONAS)
    if (old / LLM_CACHE_DB).is_file():
        snapshot(old / LLM_CACHE_DB, new)
    return new


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def manifest_sha256(run_dir: Path) -> str:
    """sha256 of ``manifest.json``'s bytes (lineage: which parent manifest a run came from)."""
    return file_sha256(require_file(run_dir / MANIFEST, "run manifest"))


def amend_manifest(run_dir: Path, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Add ``fields`` to ``run_dir``'s manifest (atomic rewrite); returns the new manifest."""
    manifest = runtime_read_manifest(run_dir)
    manifest.update(json.loads(json.dumps(fields)))
    write_manifest(run_dir, manifest)
    return manifest
