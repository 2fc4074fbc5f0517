"""``friendsim run`` as a user runs it: a subprocess, example configs, a real run directory."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from friendsim.analysis.rewards_params import RewardParams
from friendsim.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-DO-NOT-WRITE-0123456789"


def friendsim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "friendsim", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=full_env,
        timeout=240,
    )


def check_run_dir(run: Path) -> dict:
    assert {"manifest.json", "events.db", "personas.jsonl"} <= {p.name for p in run.iterdir()}
    manifest = json.loads((run / "manifest.json").read_text())
    with sqlite3.connect(run / "events.db") as con:
        first, last = con.execute("SELECT min(seq), max(seq) FROM events").fetchone()
    assert manifest["status"] == "completed"
    assert (manifest["start_seq"], manifest["end_seq"]) == (first, last)
    personas = [json.loads(line) for line in (run / "personas.jsonl").read_text().splitlines()]
    ids = sorted(p["id"] for p in personas)
    assert sorted(manifest["lambdas"]) == ids == sorted(manifest["models"])
    for lam in manifest["lambdas"].values():
        assert abs(sum(lam.values()) - 1) < 1e-9
    assert (
        RewardParams.from_dict(manifest["rewards"]).n_actions
        == manifest["config"]["experiment"]["n_actions"]
    )
    assert manifest["friendsim_version"] and manifest["packages"]["python"]
    assert "total" in manifest["llm_usage"]
    return manifest


def test_run_continuous_example(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = friendsim("run", "examples/continuous.toml", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["windows"] == 12
    manifest = check_run_dir(out)
    assert manifest["mode"] == "continuous" and set(manifest["models"].values()) == {"baseline"}
    with sqlite3.connect(out / "events.db") as con:
        kinds = dict(con.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
    assert kinds["window_started"] == kinds["window_ended"] == 12
    assert kinds["post_created"] > 0 and kinds["followed"] > 0 and kinds["feed_served"] > 0
    assert summary["actions"] == manifest["totals"]["actions"] > 0


def test_run_rounds_baseline_and_refuse_existing_dir(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "quickstart.toml").read_text()
    cfg = tmp_path / "q.toml"
    cfg.write_text(text.replace('policy = "llm"', 'policy = "baseline"'))
    out = tmp_path / "run"
    proc = friendsim("run", str(cfg), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    manifest = check_run_dir(out)
    with sqlite3.connect(out / "events.db") as con:
        n_posts_r1 = con.execute(
            "SELECT count(*) FROM events WHERE kind='post_created' AND t < ?",
            (manifest["config"]["experiment"]["window_length"],),
        ).fetchone()[0]
    assert n_posts_r1 == 4 * 2  # 4 agents x 2 actions, all POSTs in round 1
    again = friendsim("run", str(cfg), "--out", str(out), "--quiet")
    assert again.returncode == 2 and "already holds a run" in again.stderr


def test_config_error_exit_code_and_message(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[agents]\ncount = "many"\n')
    proc = friendsim("run", str(cfg), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "[agents].count" in proc.stderr and str(cfg) in proc.stderr
    assert not (tmp_path / "r").exists()


def test_non_finite_number_is_a_config_error_before_anything_is_written(tmp_path: Path) -> None:
    cfg = tmp_path / "nan.toml"
    cfg.write_text(
        '[experiment]\nrounds = 3\n[agents]\ncount = 4\npolicy = "baseline"\n'
        '[[interventions]]\nkind = "reward_mix"\nwindow = 2\n'
        "lambdas = { SOC = nan, EMO = 1.0 }\n"
    )
    proc = friendsim("run", str(cfg), "--out", str(tmp_path / "r"), "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "[interventions][0].lambdas.SOC: must be a finite number" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_api_keys_never_reach_the_run_dir(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        '[experiment]\nname="s"\nrounds=1\nn_actions=1\n[agents]\ncount=2\n'
        '[llm]\nprovider="scripted"\nretries=0\n'
    )
    out = tmp_path / "run"
    proc = friendsim("run", str(cfg), "--out", str(out), "--quiet",
                     env={"OPENAI_API_KEY": SECRET, "ANTHROPIC_API_KEY": SECRET})  # fmt: skip
    # the unscripted model answers nothing: every decision is lost, so the run must not say
    # "completed": the failure budget stops it as failed (exit 1) after window 1
    assert proc.returncode == 1, proc.stderr
    assert "max_failure_share" in proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["stop_reason"] == "failure_budget"
    assert manifest["totals"]["lost_actions"] == 2
    assert set(manifest["models"].values()) == {"scripted"}
    assert manifest["files"]["llm_cache"] == "llm_cache.db"
    for f in out.iterdir():
        assert SECRET.encode() not in f.read_bytes(), f.name
    assert SECRET not in proc.stdout + proc.stderr
    with sqlite3.connect(out / "events.db") as con:
        failed = con.execute("SELECT count(*) FROM events WHERE kind='action_failed'").fetchone()[0]
    assert failed == 2  # the unscripted model answers nothing: one plan failure per agent


def test_parser_has_run() -> None:
    args = build_parser().parse_args(["run", "x.toml", "--out", "d"])
    assert args.command == "run" and str(args.config) == "x.toml" and str(args.out) == "d"


def test_sigterm_stops_cleanly_and_keeps_the_log(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "continuous.toml").read_text()
    cfg = tmp_path / "long.toml"
    cfg.write_text(text.replace("duration = 43200.0", "duration = 4320000.0"))
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "friendsim", "run", str(cfg), "--out", str(out), "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (out / "events.db").exists() and _count(out / "events.db", "window_ended") >= 2:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    with sqlite3.connect(out / "events.db") as con:
        last = con.execute("SELECT max(seq) FROM events").fetchone()[0]
    assert manifest["end_seq"] == last and _count(out / "events.db", "window_ended") >= 2


def _count(db: Path, kind: str) -> int:
    try:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT count(*) FROM events WHERE kind=?", (kind,)).fetchone()[0]
    except sqlite3.Error:
        return 0


def test_run_resume_is_handed_to_replay(tmp_path: Path) -> None:
    proc = friendsim("run", "--resume", str(tmp_path / "no-such-run"))
    assert proc.returncode == 2
    assert "no-such-run" in proc.stderr
    missing = friendsim("run")
    assert missing.returncode == 2 and "CONFIG file is required" in missing.stderr


def test_progress_plain_lines_and_an_80_column_live_line(tmp_path: Path) -> None:
    """Not a terminal: one plain line per window with window k/K and the counts; on a terminal
    of 80 columns the live line keeps window k/K and the elapsed time, and shows retries/spend."""
    import io

    from rich.console import Console

    from friendsim.llm.accounting import Ledger
    from friendsim.runtime.engine import WindowTally
    from friendsim.runtime.progress import PlainProgress, RichProgress

    stream = io.StringIO()
    plain = PlainProgress(Ledger(), stream=stream)
    plain.run_started(windows=3, agents=4)
    tally = WindowTally(window=1, actions=4, votes=7, failures=1)
    plain.wake_applied(tally)
    plain.window_ended(tally)
    lines = stream.getvalue().splitlines()
    assert lines[1].startswith("friendsim run: window 1/3 act 4 vote 7 fail 1 llm 0 retry 0 $0.00")

    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    live = RichProgress(Ledger(), console=console)
    live.run_started(windows=15, agents=40)
    big = WindowTally(window=1, actions=12345, votes=4321, failures=12)
    live.wake_applied(big)
    console.print(live.progress.get_renderable())
    text = out.getvalue().strip()
    assert "W 0/15" in text and "act 12345" in text and "retry 0" in text and "$0.00" in text
    assert "0:00:0" in text and len(text) <= 80


def test_the_program_leaves_its_objects_to_the_os_at_exit_and_main_does_not(
    tmp_path: Path,
) -> None:
    """The installed ``friendsim`` program and ``python -m friendsim`` go through ``console``,
    which freezes the process's objects after the command (so exit does not collect a big
    run's garbage for seconds) and still returns the command's exit code and runs exit
    handlers; ``main`` alone, as an embedding process calls it, leaves collection alone."""
    import importlib.metadata

    (script,) = [e for e in importlib.metadata.entry_points(group="console_scripts")
                 if e.name == "friendsim"]  # fmt: skip
    assert script.value == "friendsim.cli:console"
    main_module = Path(__file__).resolve().parents[1] / "friendsim" / "__main__.py"
    assert "console()" in main_module.read_text()
    marker = tmp_path / "atexit-ran"
    code = f"""
import atexit, gc, pathlib, sys
from friendsim.cli import console, main
atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text("yes"))
missing = {str(tmp_path / "nothing-here")!r}
assert main(["log", "verify", missing]) == 2
assert gc.get_freeze_count() == 0
rc = console(["log", "verify", missing])
print(rc, gc.get_freeze_count() > 0)
sys.exit(rc)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.split()[-2:] == ["2", "True"]
    assert "Traceback" not in proc.stderr
    assert marker.read_text() == "yes"


def test_a_provider_without_its_key_is_refused_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """A run whose provider needs a key that is not set is bad input (exit 2, named). It left
    a ``failed`` run folder (personas, manifest, a log of registrations), so the same command
    with the key set was refused: "already holds a run; choose another --out". Now the folder
    it created is gone, a folder it was given is left as it was (an ``llm_cache.db`` of
    recorded answers placed there included), and that ``--out`` takes the next run."""
    cfg = tmp_path / "openai.toml"
    cfg.write_text(
        '[experiment]\nname="k"\nrounds=1\nn_actions=1\n[agents]\ncount=2\npolicy="llm"\n'
        '[llm]\nprovider="openai:gpt-4o-mini"\n'
    )
    fresh = tmp_path / "fresh"
    proc = friendsim("run", str(cfg), "--out", str(fresh), "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "OPENAI_API_KEY is not set" in proc.stderr and "Traceback" not in proc.stderr
    assert not fresh.exists()

    given = tmp_path / "given"
    given.mkdir()
    (given / "llm_cache.db").write_bytes(b"")  # a user's input: recorded answers
    proc = friendsim("run", str(cfg), "--out", str(given), "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert sorted(p.name for p in given.iterdir()) == ["llm_cache.db"]

    fixed = tmp_path / "baseline.toml"
    fixed.write_text(cfg.read_text().replace('policy="llm"', 'policy="baseline"'))
    (given / "llm_cache.db").unlink()
    proc = friendsim("run", str(fixed), "--out", str(given), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "completed"
