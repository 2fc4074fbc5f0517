"""The usage checkpoint: a running run's LLM usage and wall time reach its manifest as it goes.

The assembly (:mod:`friendsim.runtime.assembly`) starts one once the initial manifest
(``status="running"``) is written and closes it before the final manifest is written, so the
manifest of a run killed with SIGKILL still says what the run spent and how long it ran, up to a
moment before it died; a resume sums that in. Writes are paced: every
:data:`USAGE_CHECKPOINT_S` seconds at most, and at least :data:`USAGE_CHECKPOINT_DUTY` times as
long apart as the last write took (a large population's manifest is slow to write).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from friendsim.llm.accounting import Ledger
from friendsim.rundir.manifest import Manifest, write_manifest

USAGE_CHECKPOINT_S = 1.0
"""How often a running run writes its LLM usage so far into its manifest (seconds)."""
USAGE_CHECKPOINT_DUTY = 50
"""The usage checkpoint waits at least this many times as long as its last write took: the
manifest of 100,000 agents (16 MB) takes about half a second to write, so a write every second
would keep half a core busy, in a thread that competes with the run's event loop."""


class UsageCheckpoint:
    """Writes the ledger into the manifest (``status="running"``) every ``interval`` seconds while
    the run goes (or ``duty`` times as long as the last write took, if that is longer: a large
    population's manifest is slow to write), with the wall time since ``started`` (the run's
    start), so the manifest of a run killed with SIGKILL still holds what it spent, and how long
    it ran, up to a moment before it died, and a resume sums it in (the answers themselves are in
    the record/replay cache and are not paid again). :meth:`close` stops it before the final
    manifest is written; a write already in progress finishes first (one lock), never after."""

    def __init__(
        self,
        run_dir: Path,
        manifest: Manifest,
        ledger: Ledger,
        interval: float,
        *,
        duty: float = USAGE_CHECKPOINT_DUTY,
        started: float | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.started = time.perf_counter() if started is None else started
        self.manifest = manifest
        self.ledger = ledger
        self.interval = interval
        self.duty = duty
        self.writes = 0
        self._lock = threading.Lock()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        last: dict[str, Any] | None = None
        delay = self.interval
        while True:
            await asyncio.sleep(delay)
            usage = self.ledger.to_json()
            if usage != last:
                last = usage
                started = time.perf_counter()
                await asyncio.to_thread(self._write, usage)
                delay = max(self.interval, (time.perf_counter() - started) * self.duty)

    def _write(self, usage: dict[str, Any]) -> None:
        with self._lock:
            if not self._closed:
                wall = round(time.perf_counter() - self.started, 3)
                update = {"llm_usage": usage, "wall_seconds": wall}
                write_manifest(self.run_dir, self.manifest.model_copy(update=update))
                self.writes += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self._closing)

    def _closing(self) -> None:
        with self._lock:
            self._closed = True
