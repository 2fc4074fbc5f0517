"""Resume after SIGKILL with the newer features on: interventions (inject, two broadcasts,
add_agents, a ranker switch), surveys, rule and LLM moderation, the LLM coach, rounds and
continuous mode, a fork, and the registry's ``scripted`` provider (which answers nothing). A run
is killed in a child process at a chosen point (right after an intervention, mid-survey,
mid-moderation, after a window) and resumed: its log is the uninterrupted run's, row for row,
and its manifest's status and totals are the uninterrupted run's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_replay_support import mind_factory, rows

from friendsim.replay.fork import fork
from friendsim.replay.resume import resume
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

CHILD = """
import asyncio, json, sys, time
sys.path.insert(0, {tests!r})
from test_replay_support import mind_factory
from friendsim.llm.scripted import ScriptedLLM
from friendsim.replay.fork import fork
from friendsim.replay.resume import resume
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import parse_config
from friendsim.runtime.engine import RunListener
from friendsim.runtime.scripted_mind import plausible_responder

spec = json.loads(sys.argv[2])
block = spec["block"]

def hold(where):
    print("held", where, flush=True)
    time.sleep(600)  # the loop is held here until the parent kills the process

mind = plausible_responder(0)
asked = {{}}

def respond(request):
    asked[request.label] = asked.get(request.label, 0) + 1
    if block.get("label") == request.label and asked[request.label] == block["nth"]:
        hold(request.label)
    return mind(request)

class Hold(RunListener):
    def window_ended(self, tally):
        if tally.window == block.get("window_ended"):
            hold(tally.window)

factory = (lambda s: ScriptedLLM(respond, model="mind")) if spec["mind"] else None
cfg = parse_config(spec["config"]) if "config" in spec else None
if spec.get("resume"):
    run = resume(sys.argv[1], llm_factory=factory, listener=Hold())
elif spec.get("fork"):
    run = fork(spec["fork"]["parent"], cfg, at_window=spec["fork"]["at"], out_dir=sys.argv[1],
               llm_factory=factory, listener=Hold())
else:
    run = run_experiment(cfg, out_dir=sys.argv[1], llm_factory=factory, listener=Hold())
try:
    asyncio.run(run)
finally:
    print("done", flush=True)
"""

ITEMS = [
    {
        "id": "f1",
        "text": "Leaked memo: the climate levy doubles every energy bill.",
        "topic": "energy",
        "source": "DailyBuzz",
        "truth": "false",
    },
    {
        "id": "t1",
        "text": "The weather service reports the warmest summer on record.",
        "topic": "climate science",
        "source": "Weather Service",
        "truth": "true",
    },
]
INTERVENTIONS = [
    {"kind": "inject", "window": 2, "items": ITEMS, "by": "newsdesk"},
    {"kind": "broadcast", "window": 2, "text": "Please be civil.", "sender": "ops"},
    {"kind": "add_agents", "window": 2, "count": 2},
    {"kind": "broadcast", "window": 3, "text": "Second notice.", "sender": "ops"},
    {"kind": "ranker", "window": 3, "ranker": "chrono", "limit": 10},
]
RULE = {
    "enabled": True,
    "kind": "rule",
    "params": {
        "false_action": "label",
        "toxic_action": "remove",
        "toxicity": 0.3,
        "keywords": ["carbon", "tax"],
        "strikes_to_suspend": 2,
        "suspend_windows": 1,
    },
}


def config(mode: str, *, coach: str, moderation: dict[str, Any], **llm: Any) -> dict[str, Any]:
    """4 agents (6 from window 2), 4 windows, every instrument on."""
    experiment: dict[str, Any] = {"name": "kill", "seed": 5, "rounds": 4, "n_actions": 2}
    experiment.update(mode=mode, window_length=600.0, tick=60.0)
    if mode == "continuous":
        experiment.update(duration=2400.0, wake_rate=2.0, n_actions=1)
    return {
        "experiment": experiment,
        "agents": {"count": 4, "policy": "llm"},
        "llm": {"provider": "scripted", "cache": "read_through", "concurrency": 4, **llm},
        "coach": {"enabled": True, "kind": coach},
        "feed": {"ranker": "full", "limit": 40},
        "moderation": moderation,
        "interventions": INTERVENTIONS,
        "surveys": [{"name": "panel", "windows": [2, 3, 4], "questions": ["stance", "belief"]}],
    }


CONFIGS = {
    "rounds": config("rounds", coach="llm", moderation=RULE),
    "continuous": config("continuous", coach="rule", moderation={"enabled": True, "kind": "llm"}),
    "nothing-answers": config(
        "rounds", coach="llm", moderation={"enabled": True, "kind": "llm"}, max_failure_share=1.0
    ),
    "nothing-answers-continuous": config(
        "continuous",
        coach="llm",
        moderation={"enabled": True, "kind": "llm"},
        max_failure_share=1.0,
    ),
}
FORK_AT = 2
FORK = {
    **CONFIGS["rounds"],
    "experiment": {**CONFIGS["rounds"]["experiment"], "rounds": 5},
    "coach": {"enabled": True, "kind": "rule"},
    "feed": {"ranker": "popularity", "limit": 15},
}


def factory_for(name: str) -> Any:
    """The scripted mind, or (``nothing-answers``) the registry's ``scripted`` provider."""
    return None if name.startswith("nothing-answers") else mind_factory


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name, data in CONFIGS.items():
        run = tmp_path_factory.mktemp("full") / name
        asyncio.run(run_experiment(parse_config(data), out_dir=run, llm_factory=factory_for(name)))
        out[name] = run
    run = tmp_path_factory.mktemp("full") / "fork"
    asyncio.run(
        fork(
            out["rounds"],
            parse_config(FORK),
            at_window=FORK_AT,
            out_dir=run,
            llm_factory=mind_factory,
        )
    )
    out["fork"] = run
    return out


def start_and_kill(run: Path, spec: dict[str, Any]) -> None:
    """Run ``spec`` in a child process, held at its ``block`` point, and SIGKILL it there."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=str(TESTS)), str(run), json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    held = False
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # log lines may come first
            if line.startswith(("held", "done")):
                held = line.startswith("held")
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert held, f"the run ended before its kill point {spec['block']}"
    assert proc.returncode == -signal.SIGKILL


def summary(run: Path) -> dict[str, Any]:
    m = json.loads((run / "manifest.json").read_text())
    return {k: m.get(k) for k in ("status", "windows", "totals", "end_seq", "log_sha256")}


KILLS = {
    "rounds-after-interventions": ("rounds", {"label": "plan", "nth": 5}),
    "rounds-mid-survey": ("rounds", {"label": "survey", "nth": 9}),
    "rounds-llm-coach": ("rounds", {"label": "coach", "nth": 6}),
    "continuous-mid-moderation": ("continuous", {"label": "moderation", "nth": 3}),
    "continuous-mid-survey": ("continuous", {"label": "survey", "nth": 8}),
    "continuous-after-window-3": ("continuous", {"window_ended": 3}),
    "fork-first-window": ("fork", {"label": "plan", "nth": 2}),
    "fork-after-window-4": ("fork", {"window_ended": 4}),
    "nothing-answers": ("nothing-answers", {"window_ended": 1}),
    "nothing-answers-continuous": ("nothing-answers-continuous", {"window_ended": 2}),
}


@pytest.mark.parametrize("kill", list(KILLS))
def test_a_run_killed_with_every_instrument_on_resumes_to_the_uninterrupted_log(
    tmp_path: Path, uninterrupted: dict[str, Path], kill: str
) -> None:
    name, block = KILLS[kill]
    full = uninterrupted[name]
    spec: dict[str, Any] = {"block": block, "mind": factory_for(name) is not None}
    if name == "fork":
        spec.update(config=FORK, fork={"parent": str(uninterrupted["rounds"]), "at": FORK_AT})
    else:
        spec["config"] = CONFIGS[name]
    run = tmp_path / "run"
    start_and_kill(run, spec)
    killed = rows(run / "events.db")
    assert 0 < len(killed) < len(rows(full / "events.db"))

    if name.startswith("nothing-answers"):  # the registry's provider: as `friendsim` resumes
        proc = subprocess.run(
            [sys.executable, "-m", "friendsim", "replay", str(run), "--resume"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert proc.returncode == 3, proc.stderr  # degraded: every decision lost, as the full run
    else:
        report = asyncio.run(resume(run, llm_factory=mind_factory))
        assert report.recovered_events <= len(killed)

    assert rows(run / "events.db") == rows(full / "events.db")
    assert summary(run) == summary(full)


def test_a_resume_killed_in_turn_resumes_to_the_uninterrupted_log(
    tmp_path: Path, uninterrupted: dict[str, Path]
) -> None:
    """Killed mid-survey, its resume killed after the next window (past the interventions of
    window 3), resumed again: the uninterrupted log, and every segment in the manifest."""
    run = tmp_path / "run"
    start_and_kill(
        run, {"block": {"label": "survey", "nth": 3}, "mind": True, "config": CONFIGS["continuous"]}
    )
    start_and_kill(run, {"block": {"window_ended": 3}, "mind": True, "resume": True})
    assert (tmp_path / "run.resuming" / "events.db").is_file()

    asyncio.run(resume(run, llm_factory=mind_factory))

    full = uninterrupted["continuous"]
    assert rows(run / "events.db") == rows(full / "events.db")
    assert summary(run) == summary(full)
    segments = json.loads((run / "manifest.json").read_text())["segments"]
    assert [s["kind"] for s in segments] == ["original", "resume", "resume"]
