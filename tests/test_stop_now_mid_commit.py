"""A second Ctrl-C (stop now: the run's task is cancelled) landing while the platform commits a
batch: the run ends ``interrupted`` (exit 130) and resumes to the log an uninterrupted run writes.

Before, the cancellation cut the commit short and the platform took it for a failed commit: it
refused every further command, and the run ended ``failed`` (exit 1) on a
``PlatformClosedError`` naming a ``CancelledError``. The signals are raised by the process itself
at chosen moments: the first at window 1's end, the second as the next commit begins (before its
first statement reaches the database, so the cancellation lands inside the commit every time).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from signal_support import CONFIG, digest, manifest

from friendsim.cli import main as cli_main
from friendsim.platform.store import Store
from friendsim.runtime.engine import Engine, WindowTally


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stop_now_during_a_commit_ends_interrupted_and_resumes_to_the_same_log(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sig: signal.Signals,
) -> None:
    cfg = tmp_path / "sig.toml"
    cfg.write_text(CONFIG)
    window_ended, commit = Engine.window_ended, Store.commit
    armed = {"second": False}

    def first(self: Engine, tally: WindowTally) -> None:
        window_ended(self, tally)
        if tally.window == 1:
            signal.raise_signal(sig)
            armed["second"] = True

    async def second(self: Store, events: Any) -> None:
        if armed["second"]:
            armed["second"] = False
            signal.raise_signal(sig)
        await commit(self, events)

    monkeypatch.setattr(Engine, "window_ended", first)
    monkeypatch.setattr(Store, "commit", second)
    run = tmp_path / "r"
    code = cli_main(["run", str(cfg), "--out", str(run), "--quiet"])
    err = capsys.readouterr().err
    assert "again: stopping now" in err, err
    assert code == 130, err
    assert "Traceback" not in err and "PlatformClosedError" not in err, err
    m = manifest(run)
    assert (m["status"], m["stop_reason"]) == ("interrupted", "stop"), m
    monkeypatch.undo()
    assert cli_main(["run", "--resume", str(run), "--quiet"]) == 0
    assert cli_main(["run", str(cfg), "--out", str(tmp_path / "whole"), "--quiet"]) == 0
    assert manifest(run)["status"] == "completed"
    assert digest(run) == digest(tmp_path / "whole")
