"""Resume after SIGKILL: a run killed at several points and resumed ends with exactly the log of
an uninterrupted run (nothing committed lost, nothing duplicated), the original kept untouched."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_replay_support import checksums, config, make_run, mind_factory, rows

from friendsim.llm.base import LLM, LLMRequest
from friendsim.llm.errors import PermanentLLMError, ProviderStoppedError
from friendsim.llm.scripted import Reply, ScriptedLLM
from friendsim.replay.rerun import rerun
from friendsim.replay.resume import resume
from friendsim.rundir.errors import DivergenceError, RunInputError
from friendsim.runtime.assembly import RunResult, run_experiment
from friendsim.runtime.scripted_mind import plausible_responder
from friendsim.runtime.status import RunFailed, RunInterrupted, exit_code
from friendsim.testing import stop_after_window

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
    from friendsim.llm.base import Completion

    answered: list[int] = []

    class Counted(ScriptedLLM):
        async def complete(self, request: LLMRequest) -> Completion:
            out = await super().complete(request)
            answered.append(out.usage.input_tokens)
            return out

    def counted(spec: str) -> LLM:
        return Counted(plausible_responder(0), model="mind")

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
    stop, listener = stop_after_window(1)
    with pytest.raises(RunInterrupted):
        await run_experiment(cfg, out_dir=run, llm_factory=counted, stop=stop, listener=listener)
    stop, listener = stop_after_window(3)
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


def plan_of(request: LLMRequest) -> tuple[str, int] | None:
    """``(agent, window)`` of an agent's plan request (its prompt names the agent and starts
    ``Window N.``), else None."""
    if request.label != "plan":
        return None
    agent = re.search(r'\(user id "(a\d+)"\)', request.system)
    window = next(
        (re.match(r"Window (\d+)\.", m.content) for m in request.messages if m.role == "user"),
        None,
    )
    assert agent is not None and window is not None, request
    return agent.group(1), int(window.group(1))


def failing_mind(
    fails: Callable[[tuple[str, int] | None], bool], asked: list[tuple[str, int] | None]
) -> Callable[[str], LLM]:
    """An LLM factory answering through the scripted mind, except the plan requests ``fails``
    picks, rejected (a 409: permanent, not fatal, not retried); every plan asked is appended
    to ``asked``."""
    mind = plausible_responder(0)

    def respond(request: LLMRequest) -> Reply:
        plan = plan_of(request)
        asked.append(plan)
        if fails(plan):
            return PermanentLLMError("stub: 409 conflict", status=409)
        return mind(request)

    return lambda spec: ScriptedLLM(respond, model="mind")


def a02_from(window: int) -> Callable[[tuple[str, int] | None], bool]:
    """A provider rejecting agent a02's plan in every window from ``window`` on."""
    return lambda plan: plan is not None and plan[0] == "a02" and plan[1] >= window


def budget_stopped_run(run: Path, mode: str, rounds: int = 3) -> list[tuple[str, int] | None]:
    """A run of ``rounds`` windows in ``mode`` whose window 2 loses a02's plans (1 of 7 model-backed
    decisions in rounds mode, 3 of 7 in continuous mode: over the default
    ``max_failure_share`` of 5%): it stops ``failed`` (``failure_budget``) at window 2's end,
    ``WindowEnded(2)`` committed. Returns the plans it asked."""
    asked: list[tuple[str, int] | None] = []
    with pytest.raises(RunFailed) as stopped:
        asyncio.run(
            run_experiment(
                config(rounds=rounds, mode=mode),
                out_dir=run,
                llm_factory=failing_mind(a02_from(2), asked),
            )
        )
    assert stopped.value.reason == "failure_budget" and "window 2:" in stopped.value.message
    m = json.loads((run / "manifest.json").read_text())
    assert m["status"] == "failed" and m["stop_reason"] == "failure_budget"
    # The window that spent the budget is complete, so the manifest counts it with its failures.
    assert m["windows"] == 2
    assert m["totals"]["failures"] >= m["totals"]["lost_actions"] >= 1
    return asked


def tolerant_run(out: Path, *, rounds: int, mode: str = "rounds") -> RunResult:
    """An uninterrupted run of ``rounds`` windows in ``mode`` that loses a02's window-2 plans,
    as :func:`budget_stopped_run`'s does, with ``max_failure_share = 1`` (so it is not
    stopped): what a resume of that run must come to once the provider works."""
    cfg = config(rounds=rounds, mode=mode)
    cfg = cfg.model_copy(update={"llm": cfg.llm.model_copy(update={"max_failure_share": 1.0})})
    fails = failing_mind(lambda p: p == ("a02", 2), [])
    done = asyncio.run(run_experiment(cfg, out_dir=out, llm_factory=fails))
    assert done.manifest.status == "degraded"
    return done


def failures(db: Path) -> list[tuple[str | None, int, str]]:
    """``(actor, window, detail)`` of every ``action_failed`` of the log ``db``."""
    out = []
    for _, _, kind, actor, payload in rows(db):
        if kind == "action_failed":
            p = json.loads(payload)
            out.append((actor, p["window"], p["detail"]))
    return out


@pytest.mark.parametrize("mode", ["rounds", "continuous"])
def test_a_run_stopped_by_its_failure_budget_resumes_to_the_end_once_the_provider_works(
    tmp_path: Path, mode: str
) -> None:
    """The window that spent the failure budget is complete (its ``WindowEnded`` is committed
    before the check): the resume keeps it byte for byte, its recorded failure replayed, and
    does not judge it again (it used to re-trip the budget there and stop where the original
    stopped). The provider now answers: window 3 runs, and the run ends ``degraded`` (exit 3),
    its lost decisions counted, with the log of an uninterrupted run that tolerated the
    failures."""
    run = tmp_path / "run"
    first_asked = budget_stopped_run(run, mode)
    assert ("a02", 2) in first_asked and not any(p and p[1] == 3 for p in first_asked)
    original = rows(run / "events.db")
    ended = [json.loads(p)["window"] for _, _, k, _, p in original if k == "window_ended"]
    assert ended == [1, 2]
    end_of_2 = max(seq for seq, _, k, _, _ in original if k == "window_ended")

    asked: list[tuple[str, int] | None] = []
    report = asyncio.run(resume(run, llm_factory=failing_mind(lambda plan: False, asked)))

    assert report.status == "degraded" and exit_code(report.status) == 3
    assert report.last_complete_window == 2 and report.recovered_events == len(original)
    assert ("a02", 2) not in asked  # the recorded failure is replayed, not asked again
    resumed = rows(run / "events.db")
    assert resumed[: len(original)] == original
    done = tolerant_run(tmp_path / "expected", rounds=3, mode=mode)
    assert resumed == rows(done.run_dir / "events.db")
    lost = failures(run / "events.db")
    assert lost and set(lost) == {("a02", 2, "PermanentLLMError: stub: 409 conflict")}
    final = json.loads((run / "manifest.json").read_text())
    assert final["status"] == "degraded" and "stop_reason" not in final
    assert final["windows"] == 3 and final["totals"] == done.manifest.totals
    assert final["totals"]["lost_actions"] == len(lost)
    assert [(s["kind"], s["status"]) for s in final["segments"]] == [
        ("original", "failed"),
        ("resume", "degraded"),
    ]
    assert final["resumed_from"]["judged_until_seq"] == end_of_2
    total = final["llm_usage"]["total"]
    for key in ("attempts", "calls", "cache_hits"):
        assert total[key] == sum(s["llm_usage"][key] for s in final["segments"]), key


@pytest.mark.parametrize("mode", ["rounds", "continuous"])
def test_a_resumed_run_whose_provider_still_fails_stops_at_its_failure_budget_again(
    tmp_path: Path, mode: str
) -> None:
    """Resumed against a provider that still rejects a02's plans, the recorded window 2 is
    kept (not judged again), and window 3, run anew, spends the budget: the resume stops
    ``failed`` (``failure_budget``) at window 3, recording both segments."""
    run = tmp_path / "run"
    budget_stopped_run(run, mode)
    original = rows(run / "events.db")

    asked: list[tuple[str, int] | None] = []
    with pytest.raises(RunFailed) as stopped:
        asyncio.run(resume(run, llm_factory=failing_mind(a02_from(2), asked)))

    assert stopped.value.reason == "failure_budget" and "window 3:" in stopped.value.message
    assert ("a02", 2) not in asked and ("a02", 3) in asked
    staging = tmp_path / "run.resuming"
    assert rows(staging / "events.db")[: len(original)] == original
    assert rows(run / "events.db") == original  # the original is untouched
    m = json.loads((staging / "manifest.json").read_text())
    assert m["status"] == "failed" and m["stop_reason"] == "failure_budget"
    assert [(s["kind"], s["status"]) for s in m["segments"]] == [
        ("original", "failed"),
        ("resume", "failed"),
    ]
    lost = {f[:2] for f in failures(staging / "events.db") if "LLMError" in f[2]}
    assert sorted(lost) == [("a02", 2), ("a02", 3)]  # the other failures: refused commands


def test_a_window_that_spent_the_budget_unjudged_is_judged_by_the_resume(tmp_path: Path) -> None:
    """A run killed after window 2's end was committed but before the budget was checked leaves
    the very log of a run the budget stopped, and a manifest saying ``running``: that window was
    never judged, so the resume judges it and stops at window 2 (``failure_budget``), although
    the provider now answers. Only a run that was stopped by the budget is spared the check."""
    run = tmp_path / "run"
    budget_stopped_run(run, "rounds")
    path = run / "manifest.json"
    m = json.loads(path.read_text())
    m.update(status="running", stop_reason=None, stop_detail=None)
    path.write_text(json.dumps(m))

    with pytest.raises(RunFailed) as stopped:
        asyncio.run(resume(run, llm_factory=failing_mind(lambda plan: False, [])))

    assert stopped.value.reason == "failure_budget" and "window 2:" in stopped.value.message
    staging = json.loads((tmp_path / "run.resuming" / "manifest.json").read_text())
    assert staging["resumed_from"]["judged_until_seq"] is None


def test_a_resume_of_a_resume_keeps_sparing_the_window_that_spent_the_budget(
    tmp_path: Path,
) -> None:
    """Stopped by the budget at window 2, resumed into a new directory and interrupted after
    window 3 (a stop request), then that directory resumed: window 2 is spared there too (the
    first resume recorded it in ``resumed_from.judged_until_seq`` when it started), and the run
    ends ``degraded`` with the log of an uninterrupted run that tolerated the failure."""
    run, first, second = tmp_path / "run", tmp_path / "first", tmp_path / "second"
    budget_stopped_run(run, "rounds", rounds=4)
    end_of_2 = max(seq for seq, _, k, _, _ in rows(run / "events.db") if k == "window_ended")
    works = failing_mind(lambda plan: False, [])
    stop, after_3 = stop_after_window(3)
    with pytest.raises(RunInterrupted):
        asyncio.run(resume(run, out_dir=first, llm_factory=works, stop=stop, listener=after_3))
    m = json.loads((first / "manifest.json").read_text())
    assert m["status"] == "interrupted" and m["resumed_from"]["judged_until_seq"] == end_of_2

    report = asyncio.run(resume(first, out_dir=second, llm_factory=works))

    assert report.status == "degraded"
    done = tolerant_run(tmp_path / "expected", rounds=4)
    assert rows(second / "events.db") == rows(done.run_dir / "events.db")
    final = json.loads((second / "manifest.json").read_text())
    assert final["windows"] == 4 and final["totals"]["lost_actions"] == 1
    assert final["resumed_from"]["judged_until_seq"] == end_of_2
    assert [(s["kind"], s["status"]) for s in final["segments"]] == [
        ("original", "failed"),
        ("resume", "interrupted"),
        ("resume", "degraded"),
    ]


@pytest.mark.parametrize("mode", ["rounds", "continuous"])
def test_a_degraded_run_is_re_run_to_the_same_log_its_failures_replayed(
    tmp_path: Path, mode: str
) -> None:
    """``replay --rerun`` of a ``degraded`` run (it used to be refused as unfinished): each lost
    request fails again from its recorded failure, without reaching a provider, and the re-run
    is ``degraded`` with the same log, its ``action_failed`` events included."""
    done = tolerant_run(tmp_path / "run", rounds=3, mode=mode)
    asked: list[tuple[str, int] | None] = []
    report = asyncio.run(
        rerun(done.run_dir, tmp_path / "again", llm_factory=failing_mind(lambda p: False, asked))
    )
    assert report.identical and report.diff is None and asked == []
    again = tmp_path / "again" / "events.db"
    assert rows(again) == rows(done.run_dir / "events.db")
    assert set(failures(again)) == {("a02", 2, "PermanentLLMError: stub: 409 conflict")}
    m = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert m["status"] == "degraded" and m["rerun_of"]["identical"] is True


def test_a_resumed_budget_stopped_run_is_re_run_without_judging_its_spent_window_again(
    tmp_path: Path,
) -> None:
    """A run resumed past the window that spent its failure budget is ``degraded``; its re-run
    replays that window's failures and does not stop at the budget there."""
    run = tmp_path / "run"
    budget_stopped_run(run, "continuous")
    works = failing_mind(lambda plan: False, [])
    assert asyncio.run(resume(run, llm_factory=works)).status == "degraded"
    report = asyncio.run(rerun(run, tmp_path / "again", llm_factory=works))
    assert report.identical
    assert json.loads((tmp_path / "again" / "manifest.json").read_text())["status"] == "degraded"


@pytest.mark.parametrize("mode", ["rounds", "continuous"])
def test_a_fork_of_a_resumed_budget_stopped_run_does_not_judge_the_shared_windows_again(
    tmp_path: Path, mode: str
) -> None:
    """Windows 1..W of a fork are the parent's history, replayed from its cache: judging them
    against the failure budget again stopped a fork of a run resumed past its spent window 2
    right there, at a window the parent had already gone beyond. The fork at window 2, one
    window longer, re-derives window 3 from the parent's cache, runs window 4 live and ends
    ``degraded`` like its parent, its prefix the parent's byte for byte; a window after the
    fork is judged as any new window is."""
    from friendsim.replay.fork import fork

    run = tmp_path / "run"
    budget_stopped_run(run, mode)
    works = failing_mind(lambda plan: False, [])
    assert asyncio.run(resume(run, llm_factory=works)).status == "degraded"
    parent = rows(run / "events.db")
    end_of_2 = [seq for seq, _, k, _, p in parent if k == "window_ended"][1]

    asked: list[tuple[str, int] | None] = []
    out = tmp_path / "fork"
    report = asyncio.run(
        fork(run, config(rounds=4, mode=mode), at_window=2, out_dir=out,
             llm_factory=failing_mind(lambda plan: False, asked))
    )  # fmt: skip
    assert report.status == "degraded" and report.prefix_last_seq == end_of_2
    assert asked and all(p is None or p[1] == 4 for p in asked)
    forked = rows(out / "events.db")
    assert forked[: len([r for r in parent if r[0] <= end_of_2])] == [
        r for r in parent if r[0] <= end_of_2
    ]
    assert [json.loads(p)["window"] for _, _, k, _, p in forked if k == "window_ended"] == [
        1,
        2,
        3,
        4,
    ]

    # A new window over the budget still stops the fork: window 4 losing every plan.
    failing = tmp_path / "failing-fork"
    with pytest.raises(RunFailed) as stopped:
        asyncio.run(
            fork(run, config(rounds=4, mode=mode), at_window=2, out_dir=failing,
                 llm_factory=failing_mind(lambda p: p is not None and p[1] == 4, []))
        )  # fmt: skip
    assert stopped.value.reason == "failure_budget" and "window 4:" in stopped.value.message

    # A fork stopped by an outage in window 4 resumes with a working provider: windows 1-2 are
    # still the parent's history and not judged again (the fork's lineage says where they end).
    outage = tmp_path / "outage-fork"
    mind = plausible_responder(0)

    def down_from_4(request: LLMRequest) -> Reply:
        plan = plan_of(request)
        if plan is not None and plan[1] >= 4:
            raise ProviderStoppedError("stub: provider down", fatal=False, cause="outage")
        return mind(request)

    with pytest.raises(RunInterrupted):
        asyncio.run(
            fork(run, config(rounds=5, mode=mode), at_window=2, out_dir=outage,
                 llm_factory=lambda spec: ScriptedLLM(down_from_4, model="mind"))
        )  # fmt: skip
    report = asyncio.run(resume(outage, llm_factory=works))
    assert report.status == "degraded" and report.last_complete_window == 3
    ends = [json.loads(p)["window"] for _, _, k, _, p in rows(outage / "events.db")
            if k == "window_ended"]  # fmt: skip
    assert ends == [1, 2, 3, 4, 5]


def _forget_failures(run: Path) -> None:
    """Make ``run`` look recorded by a friendsim that kept no failed requests in its cache."""
    import sqlite3

    db = sqlite3.connect(run / "llm_cache.db")
    try:
        db.execute("DROP TABLE llm_failures")
        db.commit()
    finally:
        db.close()


def test_a_run_recorded_without_its_failed_requests_is_refused_by_name(tmp_path: Path) -> None:
    """Runs recorded before the cache kept failed requests cannot re-derive a window that lost
    decisions: resume, re-run and a fork past that window are refused up front (exit 2 from the
    CLI, nothing created, the run untouched), saying why and where a fork still works, instead
    of re-running the prefix to a cache miss there (exit 1, "LLM error")."""
    from friendsim.replay.fork import fork

    run = tmp_path / "run"
    budget_stopped_run(run, "rounds")
    _forget_failures(run)
    before = checksums(run)
    with pytest.raises(RunInputError, match=r"window 2\), and its llm_cache.db keeps no failed"):
        asyncio.run(resume(run, llm_factory=failing_mind(lambda plan: False, [])))
    with pytest.raises(RunInputError, match="fork it at window 1 instead"):
        asyncio.run(fork(run, config(rounds=4), at_window=2, out_dir=tmp_path / "f",
                         llm_factory=failing_mind(lambda plan: False, [])))  # fmt: skip
    assert checksums(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]

    forked = asyncio.run(fork(run, config(rounds=4), at_window=1, out_dir=tmp_path / "f1",
                              llm_factory=failing_mind(lambda plan: False, [])))  # fmt: skip
    assert forked.status == "completed"

    degraded = tolerant_run(tmp_path / "degraded", rounds=3)
    _forget_failures(degraded.run_dir)
    done = subprocess.run(
        [sys.executable, "-m", "friendsim", "replay", str(degraded.run_dir), "--rerun",
         "--out", str(tmp_path / "again")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "keeps no failed requests" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "again").exists()
