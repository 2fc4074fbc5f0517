"""Resume after SIGKILL: a run killed at several points and resumed ends with exactly the log of
an uninterrupted run (nothing committed lost, nothing duplicated), the original kept untouched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_replay_support import checksums, config, make_run, mind_factory, rows

from friendsim.replay.resume import resume
from friendsim.rundir.errors import DivergenceError, RunInputError

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

CHILD = """
import asyncio, sys
sys.path.insert(0, {tests!r})
from test_replay_support import config
from friendsim.llm.scripted import ScriptedLLM
from friendsim.runtime.engine import RunListener
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.scripted_mind import plausible_responder

def slow_mind(spec):
    return ScriptedLLM(plausible_responder(0), model="mind", latency_s=0.004)

class Progress(RunListener):
    def wake_applied(self, tally):
        print("wake", tally.window, flush=True)
    def window_ended(self, tally):
        print("end", tally.window, flush=True)

cfg = config(**{kwargs})
asyncio.run(run_experiment(cfg, out_dir=sys.argv[1], llm_factory=slow_mind, listener=Progress()))
print("done", flush=True)
"""

SETTINGS = {
    "llm": {"rounds": 5, "agents": 4, "policy": "llm", "coach": True},
    "baseline": {
        "rounds": 6,
        "agents": 12,
        "policy": "baseline",
        "coach": True,
        "mode": "continuous",
        "n_actions": 1,
    },
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    import asyncio

    out = {}
    for name, kw in SETTINGS.items():
        run = tmp_path_factory.mktemp("full") / name
        asyncio.run(make_run(run, config(**kw)))
        out[name] = rows(run / "events.db")
    return out


def start_and_kill(run: Path, setting: str, after_lines: int) -> list[str]:
    """Start a run in a child process and SIGKILL it right after its ``after_lines``-th progress
    line (0: as soon as it has started); returns the lines read."""
    code = CHILD.format(tests=str(TESTS), kwargs=repr(SETTINGS[setting]))
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        while len(seen) < after_lines:
            line = proc.stdout.readline()
            assert line, f"child ended early after {seen}"
            assert line.strip() != "done", "the run finished before the kill point"
            seen.append(line.strip())
        if after_lines == 0:
            while not (run / "events.db").exists():
                line = proc.stdout.readline()
                assert line, "child ended before creating its log"
                seen.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return seen


@pytest.mark.parametrize("after_lines", [1, 4, 9, 14])
async def test_resume_after_sigkill_equals_uninterrupted(
    tmp_path: Path, uninterrupted: dict[str, list], after_lines: int
) -> None:
    run = tmp_path / "run"
    start_and_kill(run, "llm", after_lines)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "running"  # killed: the final manifest was never written
    killed = rows(run / "events.db")
    full = uninterrupted["llm"]
    assert 0 < len(killed) < len(full)
    assert killed == full[: len(killed)]  # what was committed is a prefix of the full log
    before = checksums(run)

    report = await resume(run, llm_factory=mind_factory)

    assert report.status == "completed" and report.run_dir == run
    assert report.recovered_events == len(killed)
    assert rows(run / "events.db") == full
    kept = report.original_kept_at
    assert kept is not None and kept.name == "run.interrupted"
    assert checksums(kept) == before  # the killed original, byte for byte
    resumed = json.loads((run / "manifest.json").read_text())
    assert resumed["status"] == "completed" and resumed["end_seq"] == len(full)
    assert resumed["resumed_from"]["recovered_events"] == len(killed)
    assert resumed["resumed_from"]["original_moved_to"] == str(kept)


def test_cli_resume_of_a_killed_baseline_continuous_run(
    tmp_path: Path, uninterrupted: dict[str, list]
) -> None:
    run = tmp_path / "run"
    start_and_kill(run, "baseline", 3)
    killed = rows(run / "events.db")
    out = tmp_path / "resumed"
    proc = subprocess.run(
        [sys.executable, "-m", "friendsim", "replay", str(run), "--resume", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["status"] == "completed" and summary["recovered_events"] == len(killed)
    assert rows(out / "events.db") == uninterrupted["baseline"]
    assert rows(run / "events.db") == killed  # --out given: the original stays where it was


async def test_resume_refuses_a_completed_run_and_detects_divergence(tmp_path: Path) -> None:
    run = tmp_path / "run"
    await make_run(run, config(rounds=2, agents=3))
    with pytest.raises(RunInputError, match="already completed"):
        await resume(run, llm_factory=mind_factory)
    # pretend it was killed, and that its log was tampered with in the last window
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["status"] = "running"
    (run / "manifest.json").write_text(json.dumps(manifest))
    import sqlite3

    conn = sqlite3.connect(run / "events.db", isolation_level=None)
    last = conn.execute("SELECT max(seq) FROM events WHERE kind = 'post_created'").fetchone()[0]
    conn.execute(
        "UPDATE events SET payload = json_set(payload, '$.text', 'tampered') WHERE seq = ?", (last,)
    )
    conn.close()
    before = checksums(run)
    with pytest.raises(DivergenceError, match=f"seq {last}"):
        await resume(run, llm_factory=mind_factory)
    assert checksums(run) == before
    assert (tmp_path / "run.resuming" / "events.db").is_file()  # kept for inspection


async def test_an_interrupted_resume_keeps_the_answers_it_paid_for(tmp_path: Path) -> None:
    run = tmp_path / "run"
    start_and_kill(run, "llm", 4)
    staging = tmp_path / "run.resuming"  # what a resume killed half-way leaves behind
    staging.mkdir()
    import shutil
    import sqlite3

    shutil.copyfile(run / "llm_cache.db", staging / "llm_cache.db")
    if (run / "llm_cache.db-wal").exists():
        shutil.copyfile(run / "llm_cache.db-wal", staging / "llm_cache.db-wal")
    conn = sqlite3.connect(staging / "llm_cache.db", isolation_level=None)
    row = list(conn.execute("SELECT * FROM llm_cache LIMIT 1").fetchone())
    row[0] = "paid-for-key"
    conn.execute(f"INSERT INTO llm_cache VALUES ({','.join('?' * len(row))})", row)
    conn.close()
    (staging / "events.db").write_bytes(b"partial")

    report = await resume(run, llm_factory=mind_factory)

    assert report.status == "completed" and not staging.exists()
    conn = sqlite3.connect(run / "llm_cache.db")
    assert (
        conn.execute("SELECT count(*) FROM llm_cache WHERE key = 'paid-for-key'").fetchone()[0] == 1
    )
    conn.close()


async def test_what_interrupted_resumes_spent_stays_in_the_accounting(tmp_path: Path) -> None:
    """Interrupted, resumed and interrupted again, then resumed to the end: the manifest's
    segments list every one of them, and the usage summed over them is every call the model
    answered, the same as an uninterrupted run's (each answer is paid once, cache reused)."""
    import asyncio

    from friendsim.llm.base import LLM, Completion, LLMRequest
    from friendsim.llm.scripted import ScriptedLLM
    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.engine import RunInterrupted, RunListener, WindowTally
    from friendsim.runtime.scripted_mind import plausible_responder

    answered: list[int] = []

    class Counted(ScriptedLLM):
        async def complete(self, request: LLMRequest) -> Completion:
            out = await super().complete(request)
            answered.append(out.usage.input_tokens)
            return out

    def counted(spec: str) -> LLM:
        return Counted(plausible_responder(0), model="mind")

    def stop_after(window: int) -> tuple[asyncio.Event, RunListener]:
        stop = asyncio.Event()

        class Stop(RunListener):
            def window_ended(self, tally: WindowTally) -> None:
                if tally.window == window:
                    stop.set()

        return stop, Stop()

    cfg = config(rounds=4)
    cfg = cfg.model_copy(
        update={
            "llm": cfg.llm.model_copy(update={"prices": {"mind": {"input": 1.0, "output": 2.0}}})
        }
    )
    clean = await run_experiment(cfg, out_dir=tmp_path / "clean", llm_factory=counted)
    clean_calls, clean_tokens = len(answered), sum(answered)
    answered.clear()

    run = tmp_path / "run"
    stop, listener = stop_after(1)
    with pytest.raises(RunInterrupted):
        await run_experiment(cfg, out_dir=run, llm_factory=counted, stop=stop, listener=listener)
    stop, listener = stop_after(3)
    with pytest.raises(RunInterrupted):
        await resume(run, llm_factory=counted, stop=stop, listener=listener)
    assert (tmp_path / "run.resuming").is_dir()  # the interrupted resume, original untouched
    report = await resume(run, llm_factory=counted)

    assert report.status == "completed"
    assert rows(run / "events.db") == rows(tmp_path / "clean" / "events.db")
    final = json.loads((run / "manifest.json").read_text())
    assert [s["kind"] for s in final["segments"]] == ["original", "resume", "resume"]
    assert [s["status"] for s in final["segments"]] == ["interrupted", "interrupted", "completed"]
    total, clean_total = final["llm_usage"]["total"], clean.manifest.llm_usage["total"]
    assert len(answered) == clean_calls and sum(answered) == clean_tokens  # each paid once
    assert total["attempts"] == clean_calls == clean_total["attempts"]  # the answered calls
    assert total["cost_usd"] == pytest.approx(clean_total["cost_usd"]) and total["cost_usd"] > 0
    for key in ("attempts", "cost_usd", "cache_hits"):
        assert total[key] == pytest.approx(sum(s["llm_usage"][key] for s in final["segments"]))


@pytest.mark.parametrize("lock_file", [True, False], ids=["with-lock-file", "without-lock-file"])
async def test_an_in_place_resume_leaves_the_original_lock_file_as_it_was(
    tmp_path: Path, lock_file: bool
) -> None:
    """The original moved aside keeps its ``run.lock`` byte for byte, or, copied without one,
    gets none: the lock the resume held on it while it ran is not left behind there."""
    run = tmp_path / "run"
    start_and_kill(run, "llm", 4)
    lock = run / "run.lock"
    if not lock_file:
        lock.unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}

    report = await resume(run, llm_factory=mind_factory)

    kept = report.original_kept_at
    assert report.status == "completed" and kept is not None
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == before
    assert (kept / "run.lock").exists() == lock_file
