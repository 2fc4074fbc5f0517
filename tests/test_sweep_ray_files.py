"""What a Ray task needs travels with it: the files a sweep's config names by path (persona file,
interventions' item files) are read on the driver, so a task on a node that lacks the sweep's
folder runs the replication the local executor runs, event for event. No Ray cluster is needed:
the task function is called here after the sweep's folder is gone, as on another node."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from friendsim.agents.generator import generate_personas
from friendsim.agents.persona_io import save_personas
from friendsim.sweep.config import load_sweep
from friendsim.sweep.ray_executor import run_replication, side_files, unpack_run
from friendsim.sweep.runner import execute_plan

SWEEP = """\
[experiment]
name = "shipped"
seed = 3
rounds = 3
n_actions = 1

[agents]
count = 5
personas = "people.jsonl"
policy = "baseline"

[[interventions]]
kind = "inject"
window = 2
items = "news/items.jsonl"

[sweep]
replications = 1
grid = { "coach.enabled" = [true] }
"""

ITEMS = [
    {"id": "f1", "text": "The levy doubles every bill.", "topic": "energy", "truth": "false"},
    {"id": "t1", "text": "The levy funds insulation.", "topic": "energy", "truth": "true"},
]


def rows(run_dir: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{run_dir / 'events.db'}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"
        ).fetchall()


def test_a_task_on_a_node_without_the_sweep_folder_runs_the_local_replication(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "study"
    (folder / "news").mkdir(parents=True)
    save_personas(generate_personas(5, seed=3), folder / "people.jsonl")
    (folder / "news" / "items.jsonl").write_text(
        "".join(json.dumps(i) + "\n" for i in ITEMS), encoding="utf-8"
    )
    source = str(folder / "sweep.toml")
    Path(source).write_text(SWEEP, encoding="utf-8")
    (plan,) = load_sweep(source).plans()

    local = execute_plan(dict(plan.data), str(tmp_path / "local"), source)
    assert local["status"] == "completed", local

    files = side_files([plan], source)  # on the driver
    shutil.rmtree(folder)  # the task's node has no such folder
    outcome, archive, earlier = run_replication(dict(plan.data), source, files, "warning")
    assert outcome["status"] == "completed", outcome.get("error")
    assert archive and earlier == []

    unpack_run(archive, tmp_path / "remote")
    assert rows(tmp_path / "remote") == rows(tmp_path / "local")
    injected = [r for r in rows(tmp_path / "remote") if r[2] == "item_injected"]
    assert len(injected) == len(ITEMS)
