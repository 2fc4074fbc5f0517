"""Scale: wall, CPU, peak RSS per agent, events/s and analysis time at 1k / 10k / 100k agents.

Each run is a separate ``python -m friendsim run`` process (baseline policy, rule coach, chrono
feed), so its figures are the whole process's, read from the OS (``os.wait4``: user + system CPU,
``ru_maxrss``), not the Python heap. Then ``python -m friendsim analyze --json`` runs on the same
run directory, measured the same way. Continuous runs take ``--hours`` virtual hours (default 1:
3 wake-ups per agent); rounds runs take ``--rounds`` rounds (default 3), 3 actions and at most
10 votes per agent per round (``vote_limit``: without it every agent votes on every item, which is
quadratic by design).

The load average (``os.getloadavg``) is recorded before and after every run: the machine is shared
and CPU-bound figures depend on it. The final line is one JSON object::

    .venv/bin/python bench/scale.py --quick              # 500 agents, both modes, < 60 s idle
    .venv/bin/python bench/scale.py --sizes 1000 10000 --modes continuous rounds
    .venv/bin/python bench/scale.py --sizes 100000 --modes continuous --no-analyze

``rss_ratio`` compares the largest size's peak RSS with the next smaller one's (same mode);
``<mode>_analyze_cpu_over_sim_cpu_<n>`` is the analysis's CPU ÷ the run's CPU at the largest size
analysed, and ``analyze_target_met`` says whether the rounds run at 10,000 agents meets the
target (analysis CPU ≤ ½ of the run's)::

    .venv/bin/python bench/scale.py --sizes 10000 --modes rounds
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ANALYZE_TARGET = 0.5
"""``friendsim analyze`` CPU ÷ the run's CPU at 10,000 agents in rounds mode (issue target)."""


def _config(mode: str, n: int, *, hours: float, rounds: int) -> str:
    if mode == "continuous":
        return f"""
[experiment]
name = "scale-continuous-{n}"
seed = 1
theme = "climate change"
mode = "continuous"
n_actions = 1
window_length = 3600.0
duration = {3600.0 * hours}
tick = 60.0
wake_rate = 3.0
activity_sigma = 0.5

[agents]
count = {n}
personas = "synthetic"
policy = "baseline"

[coach]
enabled = true
kind = "rule"

[feed]
ranker = "chrono"
limit = 20
"""
    return f"""
[experiment]
name = "scale-rounds-{n}"
seed = 2025
theme = "climate change"
mode = "rounds"
rounds = {rounds}
n_actions = 3
vote_limit = 10

[agents]
count = {n}
personas = "synthetic"
policy = "baseline"

[coach]
enabled = true
kind = "rule"

[feed]
ranker = "chrono"
limit = 20
"""


def _measure(cmd: list[str], *, stdout: Any = subprocess.DEVNULL) -> dict[str, Any]:
    """Run ``cmd``; its wall time, CPU and peak RSS from the OS, and the load around it."""
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {rc}):\n{err[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
        "peak_rss_mib": round(ru.ru_maxrss / 1024, 1),
        "load_before": [round(x, 2) for x in load0],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def _events(run_dir: Path) -> int:
    with sqlite3.connect(run_dir / "events.db") as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def run_one(
    mode: str, n: int, *, work: Path, hours: float, rounds: int, analyze: bool
) -> dict[str, Any]:
    """One run (and optionally its analysis) at ``n`` agents in ``mode``."""
    cfg = work / f"{mode}-{n}.toml"
    cfg.write_text(_config(mode, n, hours=hours, rounds=rounds))
    out = work / f"{mode}-{n}"
    py = sys.executable
    sim = _measure([py, "-m", "friendsim", "run", str(cfg), "--out", str(out), "--quiet"])
    manifest = json.loads((out / "manifest.json").read_text())
    if manifest.get("status") != "completed":
        raise SystemExit(f"{out}: status {manifest.get('status')!r}")
    events = _events(out)
    row: dict[str, Any] = {
        "mode": mode,
        "agents": n,
        "events": events,
        "sim": sim,
        "rss_kib_per_agent": round(sim["peak_rss_mib"] * 1024 / n, 2),
        "events_per_s": round(events / sim["wall_s"], 1),
        "events_per_cpu_s": round(events / sim["cpu_s"], 1),
    }
    if analyze:
        ana = _measure([py, "-m", "friendsim", "analyze", str(out), "--json", "--refresh"])
        row["analyze"] = ana
        row["analyze_cpu_over_sim_cpu"] = round(ana["cpu_s"] / sim["cpu_s"], 3)
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500 agents, both modes (< 60 s idle)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--modes", nargs="+", default=["continuous", "rounds"])
    ap.add_argument("--hours", type=float, default=1.0, help="continuous: virtual hours")
    ap.add_argument("--rounds", type=int, default=3, help="rounds mode: rounds")
    ap.add_argument("--no-analyze", action="store_true", help="skip `friendsim analyze`")
    ap.add_argument("--keep", type=Path, default=None, help="keep run directories here")
    args = ap.parse_args(argv)
    sizes = [500] if args.quick else args.sizes
    rounds = 2 if args.quick else args.rounds
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="friendsim-scale-") as tmp:
        work = args.keep if args.keep is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for mode in args.modes:
            for n in sorted(sizes):
                rows.append(
                    run_one(
                        mode,
                        n,
                        work=work,
                        hours=args.hours,
                        rounds=rounds,
                        analyze=not args.no_analyze,
                    )
                )
    summary: dict[str, Any] = {"bench": "scale", "runs": rows}
    for mode in args.modes:
        mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["agents"])
        if len(mine) >= 2:
            a, b = mine[-2], mine[-1]
            summary[f"{mode}_rss_ratio_{b['agents']}_over_{a['agents']}"] = round(
                b["sim"]["peak_rss_mib"] / a["sim"]["peak_rss_mib"], 3
            )
        analyzed = [r for r in mine if "analyze_cpu_over_sim_cpu" in r]
        if analyzed:
            top = analyzed[-1]
            summary[f"{mode}_analyze_cpu_over_sim_cpu_{top['agents']}"] = top[
                "analyze_cpu_over_sim_cpu"
            ]
    target = next(
        (r for r in rows if r["mode"] == "rounds" and r["agents"] == 10_000 and "analyze" in r),
        None,
    )
    if target is not None:
        summary["analyze_target"] = "rounds, 10,000 agents: analyze CPU <= 0.5 x the run's CPU"
        summary["analyze_target_met"] = target["analyze_cpu_over_sim_cpu"] <= ANALYZE_TARGET
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
