"""Simulation overhead of the runtime, excluding the LLM.

Runs whole experiments through ``run_experiment`` (real SQLite run directory, real platform,
reward scoring and rule coach) with either the seeded baseline policy or the LLM policy driven by
an instant scripted model (``plausible_responder``: exercises prompt building, schema validation
and memory, answers in ~0 s). Figures:

* ``rounds_*``: 1,000 agents x 10 rounds (quick: 150 x 3), CPU (``time.process_time``, all
  threads) per agent action. An *action* is one of the N plan slots (applied, NOT or failed);
  votes are reported separately and also folded into ``cpu_ms_per_action_or_vote``. Votes are
  offered on a seeded sample of ``vote_limit`` items per agent (all items = O(agents^2) votes per
  round; the paper's 30 agents are far below the limit). ``cpu_ms_per_*`` count the schedule
  only (from the first window to the last window's scoring: platform, feeds, policies, reward
  scoring, coach); set-up (personas, policies, registration) is ``setup_cpu_s``, and
  ``total_cpu_ms_per_action_or_vote`` includes it. The scripted model's own CPU (it parses every
  prompt) is measured by a wrapper (``llm_cpu_s``) and subtracted in
  ``cpu_ms_per_action_excl_llm`` (all vote work still charged to the plan actions).
* ``continuous_baseline``: 10,000 agents (quick: 1,500), chrono timelines, 2 windows.
* ``prompt_tokens``: mean estimated prompt tokens per plan call, per round, over 15 rounds
  (30 agents; quick 8), and the ratio round 15 / round 3 (target <= 1.3: bounded prompts).
* ``memory``: tracemalloc peak of the Python heap for 3 rounds at several population sizes,
  with a least-squares line (KiB per agent) and its R^2 (linear growth).

Usage: ``.venv/bin/python bench/sim_overhead.py [--quick] [--profile]``. The last line printed is
one JSON object with every figure.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE]  # bench/platform.py

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import structlog  # noqa: E402

from friendsim.llm.scripted import ScriptedLLM  # noqa: E402
from friendsim.runtime.assembly import run_experiment  # noqa: E402
from friendsim.runtime.config import parse_config  # noqa: E402
from friendsim.runtime.engine import RunListener, WindowTally  # noqa: E402
from friendsim.runtime.scripted_mind import plausible_responder  # noqa: E402


def _config(
    *,
    agents: int,
    rounds: int,
    policy: str,
    mode: str = "rounds",
    vote_limit: int | None = 30,
    n_actions: int = 3,
    ranker: str = "full",
    feed_limit: int = 50,
    duration: float | None = None,
    wake_rate: float = 1.0,
) -> Any:
    exp: dict[str, Any] = {
        "name": "bench",
        "seed": 1,
        "mode": mode,
        "rounds": rounds,
        "n_actions": n_actions,
        "window_length": 3600.0,
        "tick": 60.0,
        "wake_rate": wake_rate,
    }
    if vote_limit is not None:
        exp["vote_limit"] = vote_limit
    if duration is not None:
        exp["duration"] = duration
    return parse_config(
        {
            "experiment": exp,
            "agents": {"count": agents, "policy": policy},
            "llm": {"provider": "scripted", "cache": "off", "retries": 0, "concurrency": 64},
            "coach": {"enabled": True, "kind": "rule"},
            "rewards": {"sentiment": "vader"},
            "feed": {"ranker": ranker, "limit": feed_limit},
        }
    )


class CpuMarks(RunListener):
    """Process CPU time when the schedule starts and when the last window ends."""

    def __init__(self) -> None:
        self.start = self.end = 0.0

    def run_started(self, *, windows: int, agents: int) -> None:
        self.start = time.process_time()

    def window_ended(self, tally: WindowTally) -> None:
        self.end = time.process_time()


class TimedLLM:
    """Wraps the instant scripted model and adds up the CPU spent inside it (the "LLM" part)."""

    def __init__(self, inner: ScriptedLLM) -> None:
        self.inner = inner
        self.cpu_s = 0.0

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: Any) -> Any:
        t0 = time.process_time()
        try:
            return await self.inner.complete(request)
        finally:
            self.cpu_s += time.process_time() - t0

    async def aclose(self) -> None:
        await self.inner.aclose()


def _run(cfg: Any) -> tuple[dict[str, Any], Any]:
    scripted = ScriptedLLM(plausible_responder(0))
    llm = TimedLLM(scripted)
    marks = CpuMarks()
    with tempfile.TemporaryDirectory() as tmp:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = asyncio.run(
            run_experiment(
                cfg, out_dir=Path(tmp) / "run", llm_factory=lambda spec: llm, listener=marks
            )
        )
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    totals = result.manifest.totals
    actions = totals["actions"] + totals["failures"]
    votes = totals["votes"]
    run_cpu = marks.end - marks.start
    fig = {
        "agents": cfg.agents.count,
        "windows": len(result.windows),
        "policy": cfg.agents.policy,
        "actions": actions,
        "votes": votes,
        "events": result.manifest.end_seq,
        "cpu_s": round(cpu, 3),
        "setup_cpu_s": round(marks.start - cpu0, 3),
        "run_cpu_s": round(run_cpu, 3),
        "wall_s": round(wall, 3),
        "cpu_ms_per_action": round(1000 * run_cpu / max(1, actions), 4),
        "llm_cpu_s": round(llm.cpu_s, 3),
        "cpu_ms_per_action_excl_llm": round(1000 * (run_cpu - llm.cpu_s) / max(1, actions), 4),
        "cpu_ms_per_action_or_vote": round(1000 * run_cpu / max(1, actions + votes), 4),
        "total_cpu_ms_per_action_or_vote": round(1000 * cpu / max(1, actions + votes), 4),
        "llm_calls": len(scripted.calls),
    }
    return fig, result


def prompt_tokens(agents: int) -> dict[str, Any]:
    cfg = _config(agents=agents, rounds=15, policy="llm", vote_limit=None)
    _, result = _run(cfg)
    per_round = [round(statistics.fmean(w.prompt_tokens), 1) for w in result.windows]
    return {
        "agents": agents,
        "rounds": 15,
        "mean_per_round": per_round,
        "r15_over_r3": round(per_round[14] / per_round[2], 3),
    }


def memory(sizes: list[int]) -> dict[str, Any]:
    peaks = []
    for n in sizes:
        tracemalloc.start()
        _run(_config(agents=n, rounds=3, policy="baseline"))
        peaks.append(tracemalloc.get_traced_memory()[1] / 1024)
        tracemalloc.stop()
    x, y = np.array(sizes, dtype=float), np.array(peaks)
    slope, intercept = np.polyfit(x, y, 1)
    fit = slope * x + intercept
    r2 = 1 - float(((y - fit) ** 2).sum() / max(1e-9, ((y - y.mean()) ** 2).sum()))
    return {
        "sizes": sizes,
        "rounds": 3,
        "peak_kib": [round(p) for p in peaks],
        "kib_per_agent": round(float(slope), 2),
        "intercept_kib": round(float(intercept)),
        "r2": round(r2, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, under 60 s")
    ap.add_argument("--profile", action="store_true", help="pyinstrument profile of the rounds run")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

    n_rounds_agents, n_rounds = (150, 3) if args.quick else (1000, 10)
    n_cont = 1500 if args.quick else 10_000
    out: dict[str, Any] = {"bench": "sim_overhead", "quick": args.quick, "vote_limit": 30}

    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled")
        profiler.start()
    out["rounds_baseline"], _ = _run(
        _config(agents=n_rounds_agents, rounds=n_rounds, policy="baseline")
    )
    if args.profile:
        profiler.stop()
        sys.stderr.write(profiler.output_text(unicode=False, color=False, show_all=False) + "\n")
    print(json.dumps({"rounds_baseline": out["rounds_baseline"]}), flush=True)
    out["rounds_llm_scripted"], _ = _run(
        _config(agents=n_rounds_agents, rounds=n_rounds, policy="llm")
    )
    print(json.dumps({"rounds_llm_scripted": out["rounds_llm_scripted"]}), flush=True)
    out["continuous_baseline"], _ = _run(
        _config(
            agents=n_cont,
            rounds=2,
            policy="baseline",
            mode="continuous",
            n_actions=1,
            ranker="chrono",
            feed_limit=20,
            duration=7200.0,
            wake_rate=1.0,
        )
    )
    print(json.dumps({"continuous_baseline": out["continuous_baseline"]}), flush=True)
    out["prompt_tokens"] = prompt_tokens(8 if args.quick else 30)
    print(json.dumps({"prompt_tokens": out["prompt_tokens"]}), flush=True)
    out["memory"] = memory([40, 80, 160] if args.quick else [250, 500, 1000])
    worst = max(
        out[k]["cpu_ms_per_action_or_vote"]
        for k in ("rounds_baseline", "rounds_llm_scripted", "continuous_baseline")
    )
    out["max_cpu_ms_per_action_or_vote"] = worst
    worst_excl = max(
        out[k]["cpu_ms_per_action_excl_llm"]
        for k in ("rounds_baseline", "rounds_llm_scripted", "continuous_baseline")
    )
    out["max_cpu_ms_per_action_excl_llm"] = worst_excl
    out["target_cpu_ms_per_action"] = 1.0
    out["meets_cpu_target"] = worst <= 1.0
    out["meets_cpu_target_per_plan_action"] = worst_excl <= 1.0
    out["meets_prompt_target"] = out["prompt_tokens"]["r15_over_r3"] <= 1.3
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
