"""Full garbage collections are held off while a run or an analysis goes (:mod:`friendsim._heap`).

A full collection walks every long-lived object and stalls the event loop with model requests
in flight; during a run (and an analysis) none may start on its own, young collections go on,
and the process's thresholds are put back afterwards, also when runs overlap or fail."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from friendsim._heap import NO_FULL_COLLECTIONS, paced_collection
from friendsim.analysis import analyze as analyze_module
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import parse_config
from friendsim.runtime.engine import RunListener, WindowTally


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    """The process's thresholds, put back after the test whatever it did."""
    saved = gc.get_threshold()
    try:
        yield saved
    finally:
        gc.set_threshold(*saved)


def _collections_while(work: Any) -> list[int]:
    """The generations the collector collected on its own while ``work()`` ran."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(note)
    try:
        work()
    finally:
        gc.callbacks.remove(note)
    return seen


def _grow_long_lived() -> list[list[int]]:
    """Enough containers that live on to make the collector start a full collection: more than
    a quarter of what survived the last one (call after a ``gc.collect()``), over many young
    collections."""
    keep: list[list[int]] = []
    for i in range(len(gc.get_objects()) // 2 + 200_000):
        keep.append([i])
    return keep


def test_no_full_collection_starts_while_held_and_young_ones_go_on(
    thresholds: tuple[int, int, int],
) -> None:
    gc.set_threshold(700, 10, 10)
    kept: list[Any] = []
    gc.collect()
    unheld = _collections_while(lambda: kept.append(_grow_long_lived()))
    assert 2 in unheld  # the control: this much growth does start a full collection
    kept.clear()
    gc.collect()
    with paced_collection():
        assert gc.get_threshold() == (700, 10, NO_FULL_COLLECTIONS)
        held = _collections_while(lambda: kept.append(_grow_long_lived()))
    assert 2 not in held
    assert held.count(0) > 10 and 1 in held  # young collections still run
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_holders_restore_the_thresholds_once_the_last_leaves(
    thresholds: tuple[int, int, int],
) -> None:
    gc.set_threshold(500, 7, 9)
    first, second = paced_collection(), paced_collection()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first holder leaves while the second still runs
    assert gc.get_threshold() == (500, 7, NO_FULL_COLLECTIONS)
    second.__exit__(None, None, None)
    assert gc.get_threshold() == (500, 7, 9)


def test_thresholds_changed_meanwhile_are_kept(thresholds: tuple[int, int, int]) -> None:
    gc.set_threshold(500, 7, 9)
    with paced_collection():
        gc.set_threshold(900, 5, 3)  # the host's own choice, made during the run
    assert gc.get_threshold() == (900, 5, 3)


def test_a_failing_block_puts_the_thresholds_back(thresholds: tuple[int, int, int]) -> None:
    gc.set_threshold(600, 8, 11)
    with pytest.raises(RuntimeError), paced_collection():
        raise RuntimeError("boom")
    assert gc.get_threshold() == (600, 8, 11)


async def test_a_run_and_its_analysis_hold_off_full_collections(
    tmp_path: Path, thresholds: tuple[int, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    gc.set_threshold(700, 10, 10)
    during: list[int] = []

    class Watch(RunListener):
        def run_started(self, *, windows: int, agents: int) -> None:
            during.append(gc.get_threshold()[2])

        def window_ended(self, tally: WindowTally) -> None:
            during.append(gc.get_threshold()[2])

    cfg = parse_config(
        {
            "experiment": {"name": "heap", "seed": 2, "rounds": 2, "n_actions": 1},
            "agents": {"count": 4, "policy": "baseline"},
        }
    )
    result = await run_experiment(cfg, out_dir=tmp_path / "run", listener=Watch())
    assert result.manifest.status == "completed"
    assert during == [NO_FULL_COLLECTIONS] * 3
    assert gc.get_threshold() == (700, 10, 10)

    seen: list[int] = []
    real = analyze_module.run_manifest

    def run_manifest(run_dir: Path) -> Any:
        seen.append(gc.get_threshold()[2])
        return real(run_dir)

    monkeypatch.setattr(analyze_module, "run_manifest", run_manifest)
    analysis = analyze_module.analyze_run(tmp_path / "run")
    assert analysis["manifest"]["status"] == "completed"
    assert seen == [NO_FULL_COLLECTIONS]
    assert gc.get_threshold() == (700, 10, 10)
