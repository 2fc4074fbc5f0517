"""A second SIGINT or SIGTERM arriving while a stopped run's command ends: exit 130, the manifest
``interrupted``, no traceback, and the run resumes to the log an uninterrupted run writes.

The signals are raised by the process itself at chosen moments (``tests/signal_child.py``), so
each case hits its moment every time, however loaded the machine. Before, the event loop's
handlers were removed when the run ended, putting the defaults back: a second Ctrl-C while the
command wrote its stop line raised ``KeyboardInterrupt`` out of it (a traceback; killed by
SIGINT), and a second SIGTERM killed the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from signal_support import CONFIG, digest

from friendsim.cli import main as cli_main

TESTS = Path(__file__).resolve().parent


def status(run: Path) -> str:
    return str(json.loads((run / "manifest.json").read_text())["status"])


@pytest.mark.parametrize("point", ["stop-line", "exit"])
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_second_signal_while_the_stopped_run_s_command_ends_exits_130_and_resumes(
    tmp_path: Path, sig: str, point: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "sig.toml"
    cfg.write_text(CONFIG)
    run = tmp_path / "r"
    env = {
        **os.environ,
        "CHILD_SIGNAL": sig,
        "CHILD_POINT": point,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, str(TESTS / "signal_child.py"), "run", str(cfg), "--out", str(run),
         "--quiet"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"{sig}: stopping after window 1" in proc.stderr
    assert status(run) == "interrupted"
    assert cli_main(["run", "--resume", str(run), "--quiet"]) == 0
    assert cli_main(["run", str(cfg), "--out", str(tmp_path / "whole"), "--quiet"]) == 0
    assert status(run) == "completed"
    assert digest(run) == digest(tmp_path / "whole")


def test_in_process_a_second_ctrl_c_while_reporting_the_stop_is_absorbed_and_handlers_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``main`` in a caller's process: the same, and the caller's handlers are back after."""
    import friendsim.commands.run as run_command
    from friendsim.runtime.signals import WindowWatch

    cfg = tmp_path / "sig.toml"
    cfg.write_text(CONFIG)
    window_ended = WindowWatch.window_ended
    stopped_line = run_command.stopped_line

    def first(self: WindowWatch, tally: object) -> None:
        window_ended(self, tally)  # type: ignore[arg-type]
        if getattr(tally, "window", 0) == 1:
            signal.raise_signal(signal.SIGINT)

    def second(*args: object) -> str:
        signal.raise_signal(signal.SIGINT)
        return stopped_line(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(WindowWatch, "window_ended", first)
    monkeypatch.setattr(run_command, "stopped_line", second)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        code = cli_main(["run", str(cfg), "--out", str(tmp_path / "r"), "--quiet"])
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C escaped the command as KeyboardInterrupt")
    assert code == 130
    assert status(tmp_path / "r") == "interrupted"
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_second_signal_during_a_finished_resume_s_swap_lets_the_swap_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume whose run completed is being moved into place (the original aside, the resumed
    run in) when the second signal cancels it (what :func:`~friendsim.runtime.signals.stoppable`
    does). The move happens in a worker thread, which a cancellation does not stop: the resume
    reported ``interrupted`` (exit 130, "can be resumed") while the completed run was swapped
    in behind its back, without ``original_moved_to``, and the lock was released while the
    swap was still moving it. Now the swap and its manifest are carried to their end and the
    resume reports the truth: completed, the original aside."""
    import asyncio
    import threading

    import friendsim.replay.resume as resume_module
    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.config import load_config
    from friendsim.runtime.engine import RunListener, WindowTally
    from friendsim.runtime.status import RunStopped

    cfg = tmp_path / "sig.toml"
    cfg.write_text(CONFIG)
    run = tmp_path / "r"

    async def interrupted_run() -> None:
        stop = asyncio.Event()

        class AfterWindow1(RunListener):
            def window_ended(self, tally: WindowTally) -> None:
                if tally.window == 1:
                    stop.set()

        with pytest.raises(RunStopped):
            await run_experiment(load_config(cfg), out_dir=run, stop=stop, listener=AfterWindow1())

    asyncio.run(interrupted_run())
    assert status(run) == "interrupted"

    async def resume_cancelled_during_the_swap() -> asyncio.Task[resume_module.ResumeReport]:
        loop = asyncio.get_running_loop()
        cancelled = threading.Event()
        swap = resume_module._swap

        def cancelled_while_swapping(*args: object) -> Path:
            loop.call_soon_threadsafe(task.cancel)
            loop.call_soon_threadsafe(cancelled.set)  # runs after the cancel
            assert cancelled.wait(60)
            return swap(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(resume_module, "_swap", cancelled_while_swapping)
        task = asyncio.ensure_future(resume_module.resume(run))
        await asyncio.wait([task])
        return task

    task = asyncio.run(resume_cancelled_during_the_swap())
    assert not task.cancelled(), "the resume reported interrupted after swapping its run in"
    report = task.result()
    assert report.status == "completed" and report.original_kept_at is not None
    final = json.loads((run / "manifest.json").read_text())
    assert final["status"] == "completed"
    assert final["resumed_from"]["original_moved_to"] == str(report.original_kept_at)
    assert status(report.original_kept_at) == "interrupted"
    assert not (tmp_path / "r.resuming").exists()
    assert cli_main(["run", str(cfg), "--out", str(tmp_path / "whole"), "--quiet"]) == 0
    assert digest(run) == digest(tmp_path / "whole")


def test_a_second_ctrl_c_while_a_stopped_sweep_records_its_runs_leaves_no_run_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``friendsim sweep``: Ctrl-C once the first replication is done, and again while the
    sweep records which replications did not finish. The second used to raise
    ``KeyboardInterrupt`` out of that record, so ``sweep.json`` kept saying ``running``, the
    replications not run ``pending``; now it says ``interrupted`` for each, and exit 130."""
    from friendsim.sweep import runner
    from friendsim.sweep.runner import SWEEP_FILE

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG + "[sweep]\nreplications = 3\n")
    out = tmp_path / "out"
    unfinished = runner.unfinished

    def pool(plans, out_dir, source, *, jobs, log_level):  # type: ignore[no-untyped-def]
        first = plans[0]
        yield first, runner.execute_plan(first.data, str(out_dir / first.rel_dir), source)
        signal.raise_signal(signal.SIGINT)  # Ctrl-C once the first replication is done

    def second(exc: BaseException, run_dir: Path) -> dict[str, object]:
        signal.raise_signal(signal.SIGINT)
        return unfinished(exc, run_dir)

    monkeypatch.setattr(runner, "local_outcomes", pool)
    monkeypatch.setattr(runner, "unfinished", second)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        code = cli_main(["sweep", str(cfg), "--out", str(out), "--jobs", "1"])
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C escaped the sweep command as KeyboardInterrupt")
    assert code == 130
    recorded = json.loads((out / SWEEP_FILE).read_text())
    assert recorded["status"] == "interrupted"
    assert [r["status"] for r in recorded["runs"]] == ["completed", "interrupted", "interrupted"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_run_stopped_before_its_first_window_ended_is_not_said_to_stop_after_window_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C during window 1: the stop line and the analysis' note said "window 0" /
    "after 0 complete windows"; they now say it stopped before its first window completed. The
    log is as before: the run resumes to the log of an uninterrupted run."""
    from friendsim.analysis.analyze import analyze_run
    from friendsim.runtime.signals import WindowWatch

    cfg = tmp_path / "sig.toml"
    cfg.write_text(CONFIG)
    run = tmp_path / "r"
    wake_applied = WindowWatch.wake_applied

    def first_wake(self: WindowWatch, tally: object) -> None:
        wake_applied(self, tally)  # type: ignore[arg-type]
        if getattr(tally, "window", 0) == 1 and not self.last_window:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(WindowWatch, "wake_applied", first_wake)
    assert cli_main(["run", str(cfg), "--out", str(run), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "SIGINT: stopping before the first window completed; Ctrl-C again" in err, err
    assert "window 0" not in err
    manifest = json.loads((run / "manifest.json").read_text())
    assert (manifest["status"], manifest["windows"]) == ("interrupted", 0)
    notes = analyze_run(run)["notes"]
    assert "interrupted run (stop): it stopped before its first window completed; the figures " \
        "cover what its log holds" in notes, notes  # fmt: skip

    monkeypatch.setattr(WindowWatch, "wake_applied", wake_applied)
    assert cli_main(["run", "--resume", str(run), "--quiet"]) == 0
    assert cli_main(["run", str(cfg), "--out", str(tmp_path / "whole"), "--quiet"]) == 0
    assert digest(run) == digest(tmp_path / "whole")
