"""Sweep executors on this machine: the same 16 baseline runs with ``local`` and ``ray``.

The paper's configuration (``examples/paper.toml``: 30 agents x 15 rounds x 3 actions) on the
baseline policy (no model), 16 replications, run twice end to end through the CLI
(``friendsim sweep``, a fresh process each: Ray's start-up is part of the figure): with the local
process pool and with the Ray executor (a local Ray of ``--jobs`` CPUs started by the sweep;
each run shipped back as an archive and verified). Figures: wall time of each, runs per minute,
the Ray/local ratio, and whether every run's event log (all ``events`` rows) is identical between
the two. ``--quick``: 2 replications of 1 round.

Usage: ``.venv/bin/python bench/sweep.py [--quick] [--jobs N]``. The last line printed is one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def sweep_file(dest: Path, *, reps: int, rounds: int) -> Path:
    text = (ROOT / "examples" / "paper.toml").read_text(encoding="utf-8")
    for old, new in (
        ('policy = "llm"', 'policy = "baseline"'),
        ("rounds = 15", f"rounds = {rounds}"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    text += f"\n[sweep]\nreplications = {reps}\n"
    path = dest / "bench_sweep.toml"
    path.write_text(text, encoding="utf-8")
    return path


def log_digest(db: Path) -> str:
    h = hashlib.sha256()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        for row in conn.execute("SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"):
            h.update(repr(row).encode())
    return h.hexdigest()


def run(cfg: Path, out: Path, executor: str, jobs: int) -> dict[str, Any]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "friendsim", "sweep", str(cfg), "--out", str(out),
         "--jobs", str(jobs), "--executor", executor, "--json"],
        env=env, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{executor} sweep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    sweep = json.loads((out / "sweep.json").read_text())
    return {
        "wall_s": round(wall, 2),
        "sweep_wall_s": sweep["wall_seconds"],
        "runs": len(sweep["runs"]),
        "completed": sum(r["status"] == "completed" for r in sweep["runs"]),
        "runs_per_min": round(60 * len(sweep["runs"]) / wall, 2),
        "digests": {r["dir"]: log_digest(out / r["dir"] / "events.db") for r in sweep["runs"]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    reps, rounds = (2, 1) if args.quick else (16, 15)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        cfg = sweep_file(Path(tmp), reps=reps, rounds=rounds)
        local = run(cfg, Path(tmp) / "local", "local", args.jobs)
        print(f"local: {local['wall_s']} s for {local['runs']} runs", flush=True)
        ray = run(cfg, Path(tmp) / "ray", "ray", args.jobs)
        print(f"ray:   {ray['wall_s']} s for {ray['runs']} runs", flush=True)
    identical = local["digests"] == ray["digests"]
    distinct = len(set(local["digests"].values()))
    result = {
        "bench": "sweep",
        "quick": args.quick,
        "runs": reps,
        "agents": 30,
        "rounds": rounds,
        "jobs": args.jobs,
        "local_wall_s": local["wall_s"],
        "ray_wall_s": ray["wall_s"],
        "ray_over_local": round(ray["wall_s"] / local["wall_s"], 3),
        "local_runs_per_min": local["runs_per_min"],
        "ray_runs_per_min": ray["runs_per_min"],
        "completed": {"local": local["completed"], "ray": ray["completed"]},
        "logs_identical": identical,
        "distinct_logs": distinct,
        "load_avg": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
