"""Text-based tie evidence: the scoring step asks an LLM through the LLM layer and stores the
scores in the run directory; analysis only reads them; the run's cache makes scoring again
replay the recorded answers; ``friendsim analyze`` runs the step, then the analysis."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_analyze_fixture import build_run_dir

from friendsim.analysis.analyze import RunDirectoryError, analyze_run
from friendsim.analysis.tie_evidence import TIE_SCORES_FILE, TieScoresError, read_tie_scores
from friendsim.llm.base import LLMRequest
from friendsim.llm.scripted import ScriptedLLM
from friendsim.runtime.tie_scoring import score_run_ties


def _text_run(tmp_path: Path) -> Path:
    rd = build_run_dir(tmp_path / "run", seed=3, n_agents=6, windows=3)
    manifest = json.loads((rd / "manifest.json").read_text(encoding="utf-8"))
    manifest["ties"]["evidence"] = "text"
    (rd / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return rd


def _score_all(value: int) -> Any:
    def answer(req: LLMRequest) -> Any:
        line = next(
            x for x in req.messages[-1].content.splitlines() if x.startswith("Peers to rate:")
        )
        peers = [p.strip() for p in line.split(":", 1)[1].split(",") if p.strip()]
        return {"scores": [{"peer": p, "score": value} for p in peers]}

    return answer


def test_scores_are_stored_as_data_and_replayed_from_the_run_cache(tmp_path: Path) -> None:
    rd = _text_run(tmp_path)
    high = ScriptedLLM(_score_all(5))
    stored = score_run_ties(rd, llm=high)
    assert stored is not None and high.calls
    assert all(c.label == "tie_score" for c in high.calls)
    assert stored.evidence.calls == len(high.calls)
    assert read_tie_scores(rd) == stored  # the file holds exactly what was scored
    assert all(e == 1.0 for pairs in stored.evidence.per_window.values() for e in pairs.values())
    first = analyze_run(rd)
    assert any(f"{len(high.calls)} LLM scoring calls" in n for n in first["notes"])

    # Fresh stored scores are used as they are: no model at all is built.
    assert score_run_ties(rd, llm=ScriptedLLM([])) == stored

    # Scoring again from scratch: the same requests are answered from llm_cache.db.
    (rd / TIE_SCORES_FILE).unlink()
    silent = ScriptedLLM([])
    again = score_run_ties(rd, llm=silent)
    assert silent.calls == []
    assert again is not None and again.evidence == stored.evidence
    assert analyze_run(rd)["network"] == first["network"]


def test_text_scores_drive_the_tie_strengths(tmp_path: Path) -> None:
    strong_dir, weak_dir = _text_run(tmp_path / "a"), _text_run(tmp_path / "b")
    score_run_ties(strong_dir, llm=ScriptedLLM(_score_all(5)))
    score_run_ties(weak_dir, llm=ScriptedLLM(_score_all(0)))
    strong, weak = analyze_run(strong_dir), analyze_run(weak_dir)

    def mean_evidence(result: dict[str, Any]) -> float:
        rows = result["network"]["ties"]["per_window"]
        return sum(r["mean_evidence"] for r in rows) / len(rows)

    assert mean_evidence(weak) == 0.0  # score 0 => evidence 0 for every active pair
    assert mean_evidence(strong) > mean_evidence(weak)


def test_analysis_never_asks_a_model_and_rejects_missing_or_stale_scores(tmp_path: Path) -> None:
    rd = _text_run(tmp_path)
    with pytest.raises(RunDirectoryError, match=f"not scored yet \\(no {TIE_SCORES_FILE}\\)"):
        analyze_run(rd)
    score_run_ties(rd, llm=ScriptedLLM(_score_all(3)))
    analyze_run(rd)
    # The log grows (say, a resumed run): the stored scores no longer describe it.
    with sqlite3.connect(rd / "events.db") as conn:
        seq, t = conn.execute("SELECT max(seq), max(t) FROM events").fetchone()
        conn.execute(
            "INSERT INTO events(seq, t, kind, actor, payload) VALUES (?, ?, ?, ?, ?)",
            (seq + 1, t, "window_started", None, '{"t_end":1e9,"v":1,"window":99}'),
        )
    with pytest.raises(RunDirectoryError, match="another log or other tie parameters"):
        analyze_run(rd)
    (rd / TIE_SCORES_FILE).write_text('{"format": 1, "log": 3}', encoding="utf-8")
    with pytest.raises(RunDirectoryError, match=f"{TIE_SCORES_FILE}: malformed"):
        analyze_run(rd)
    with pytest.raises(TieScoresError, match="malformed"):
        score_run_ties(rd, llm=ScriptedLLM(_score_all(3)))
    # refresh replaces a broken or stale file: answers come from the run's cache
    silent = ScriptedLLM([])
    score_run_ties(rd, llm=silent, refresh=True)
    assert silent.calls == [] and analyze_run(rd)["kind"] == "run"


def test_signal_runs_have_no_scoring_step(tmp_path: Path) -> None:
    rd = build_run_dir(tmp_path / "run", seed=1, n_agents=4, windows=2)
    llm = ScriptedLLM([])
    assert score_run_ties(rd, llm=llm) is None
    assert llm.calls == [] and not (rd / TIE_SCORES_FILE).exists()


def _analyze_command(rd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "friendsim", "analyze", str(rd), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_analyze_command_scores_then_analyses(tmp_path: Path) -> None:
    rd = _text_run(tmp_path)
    manifest = json.loads((rd / "manifest.json").read_text(encoding="utf-8"))
    manifest.setdefault("config", {}).setdefault("llm", {})["provider"] = "scripted"
    (rd / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    # The run's provider ("scripted", no replies) cannot score: a clear error, exit 2.
    failed = _analyze_command(rd)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "scoring text-based tie evidence" in failed.stderr
    assert not (rd / TIE_SCORES_FILE).exists()

    # Record answers in the run's cache, then drop the stored scores: the command's scoring
    # step replays the cache, stores the scores, and the analysis reads them.
    score_run_ties(rd, llm=ScriptedLLM(_score_all(4)))
    (rd / TIE_SCORES_FILE).unlink()
    proc = _analyze_command(rd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stored = read_tie_scores(rd)
    assert stored is not None and stored.model == "scripted" and stored.evidence.calls > 0
    assert all(e == 0.8 for pairs in stored.evidence.per_window.values() for e in pairs.values())
    data = json.loads(proc.stdout)
    assert any(f"{stored.evidence.calls} LLM scoring calls" in n for n in data["notes"])


def test_a_run_being_written_is_not_scored_into_its_directory(tmp_path: Path) -> None:
    """Scoring writes ``tie_scores.json`` and the run's cache: while another process holds the
    run's lock (a run still being written), ``friendsim analyze`` used to score the partial log
    into the live run's directory, then fail on the scores it had just stored. Now it is refused
    naming the writer, exit 2, with the directory unchanged; once the writer is gone it scores."""
    import hashlib
    import os
    import signal

    rd = _text_run(tmp_path)

    def files() -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(rd.iterdir())
            if p.is_file()
        }

    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom friendsim.rundir.lock import RunLock\n"
         f"RunLock({str(rd)!r}).acquire()\nprint('held', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "held"
        before = files()
        with pytest.raises(RunDirectoryError, match=f"run in progress \\(process {writer.pid}\\)"):
            score_run_ties(rd, llm=ScriptedLLM(_score_all(4)))
        proc = _analyze_command(rd)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert f"run in progress (process {writer.pid})" in proc.stderr
        assert files() == before and not (rd / TIE_SCORES_FILE).exists()
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    stored = score_run_ties(rd, llm=ScriptedLLM(_score_all(4)))
    assert stored is not None and read_tie_scores(rd) == stored
    assert (rd / "run.lock").read_bytes() == str(writer.pid).encode() + b"\n"


def test_analysing_a_text_run_leaves_its_log_as_it_was(tmp_path: Path) -> None:
    """Stamping the log to match it with its stored scores opened ``events.db`` in place, which
    left ``events.db-wal`` and ``-shm`` beside it; it reads a snapshot now."""
    import hashlib

    rd = _text_run(tmp_path)
    con = sqlite3.connect(rd / "events.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()  # the last connection: SQLite removes the side files
    score_run_ties(rd, llm=ScriptedLLM(_score_all(4)))

    def logs() -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(rd.iterdir())
            if p.name.startswith("events.db")
        }

    before = logs()
    assert analyze_run(rd)["kind"] == "run"
    assert score_run_ties(rd) is not None  # stored scores match: read, not scored again
    assert logs() == before and list(before) == ["events.db"]
