"""Every run whose final manifest was written (every status but ``running``) is held to it:
a log truncated or extended since is refused by ``replay --verify`` and the replay tools,
whatever the status (``degraded`` and ``interrupted`` too, not only ``completed`` and
``failed``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_replay_support import checksums, config, mind_factory

from friendsim.llm.base import LLM, LLMRequest
from friendsim.llm.errors import PermanentLLMError
from friendsim.llm.scripted import Reply, ScriptedLLM
from friendsim.rundir.errors import ManifestMismatchError
from friendsim.rundir.verify import verify_run
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.scripted_mind import plausible_responder
from friendsim.runtime.status import RunInterrupted
from friendsim.testing import stop_after_window

ROOT = Path(__file__).resolve().parents[1]


def one_plan_rejected(spec: str) -> LLM:
    """The scripted mind, but the first plan request is rejected (a 409: lost, not fatal)."""
    mind = plausible_responder(0)
    seen: list[str] = []

    def respond(request: LLMRequest) -> Reply:
        if request.label == "plan" and not seen:
            seen.append(request.label)
            return PermanentLLMError("stub: 409 conflict", status=409)
        return mind(request)

    return ScriptedLLM(respond, model="mind")


def degraded_run(out: Path) -> None:
    cfg = config(rounds=3)
    cfg = cfg.model_copy(update={"llm": cfg.llm.model_copy(update={"max_failure_share": 1.0})})
    done = asyncio.run(run_experiment(cfg, out_dir=out, llm_factory=one_plan_rejected))
    assert done.manifest.status == "degraded"


def interrupted_run(out: Path) -> None:
    stop, listener = stop_after_window(2)
    with pytest.raises(RunInterrupted):
        asyncio.run(
            run_experiment(
                config(rounds=3),
                out_dir=out,
                llm_factory=mind_factory,
                stop=stop,
                listener=listener,
            )
        )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("statuses")
    degraded_run(root / "degraded")
    interrupted_run(root / "interrupted")
    return {"degraded": root / "degraded", "interrupted": root / "interrupted"}


def truncated(run: Path, tmp_path: Path, *, drop: int) -> Path:
    """A copy of ``run`` whose log lost its last ``drop`` events after the run ended."""
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    conn = sqlite3.connect(copy / "events.db", isolation_level=None)
    try:
        last = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        conn.execute("DELETE FROM events WHERE seq > ?", (last - drop,))
    finally:
        conn.close()
    return copy


@pytest.mark.parametrize("status", ["degraded", "interrupted"])
def test_a_finished_run_whose_log_was_truncated_is_refused(
    runs: dict[str, Path], tmp_path: Path, status: str
) -> None:
    run = runs[status]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == status
    assert verify_run(run).ok  # as recorded, it verifies
    copy = truncated(run, tmp_path, drop=5)
    before = checksums(copy)
    with pytest.raises(
        ManifestMismatchError, match=rf"end_seq={manifest['end_seq']} \(status {status}\)"
    ):
        verify_run(copy)
    proc = subprocess.run(
        [sys.executable, "-m", "friendsim", "replay", str(copy), "--verify"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "end_seq" in proc.stderr and "Traceback" not in proc.stderr
    assert checksums(copy) == before
