"""Forks of a run with instruments: ``[[interventions]]`` and ``[[surveys]]`` are arrays of
tables, not tables, in the config; a fork compares them, records them and refuses a change to
them like any other setting it cannot switch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from test_replay_support import checksums, make_run, rows

from friendsim.replay.fork import fork
from friendsim.replay.rerun import rerun
from friendsim.rundir.errors import RunInputError
from friendsim.runtime.config import ExperimentConfig, load_config, parse_config

ITEMS = [
    {"id": "f1", "text": "The levy doubles every bill.", "topic": "energy", "source": "Buzz", "truth": "false"},
    {"id": "t1", "text": "Record warm summer, says the weather service.", "topic": "science", "source": "WS", "truth": "true"},
]  # fmt: skip


def instrumented(*, rounds: int = 4, coach: bool = False, **over: Any) -> ExperimentConfig:
    data: dict[str, Any] = {
        "experiment": {"name": "instr", "seed": 5, "rounds": rounds, "n_actions": 2},
        "agents": {"count": 6, "policy": "baseline"},
        "coach": {"enabled": coach, "kind": "rule"},
        "feed": {"ranker": "full", "limit": 40},
        "moderation": {"enabled": True, "kind": "rule", "params": {"false_action": "label"}},
        "interventions": [{"kind": "inject", "window": 2, "items": ITEMS, "by": "newsdesk"}],
        "surveys": [{"name": "panel", "windows": [1, 3], "questions": ["stance", "belief"]}],
    }
    data.update(over)
    return parse_config(data)


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fork-instruments") / "parent"
    asyncio.run(make_run(out, instrumented()))
    return out


def window_end_seq(events: list, w: int) -> int:
    return next(r[0] for r in events if r[2] == "window_ended" and json.loads(r[4])["window"] == w)


async def test_a_run_with_interventions_and_surveys_forks_and_re_runs(
    parent: Path, tmp_path: Path
) -> None:
    before = checksums(parent)
    child = tmp_path / "child"
    report = await fork(parent, instrumented(rounds=5, coach=True), at_window=2, out_dir=child)
    old, new = rows(parent / "events.db"), rows(child / "events.db")
    prefix = window_end_seq(old, 2)
    assert report.status == "completed" and report.prefix_last_seq == prefix
    assert new[:prefix] == old[:prefix]
    assert report.changed == {"experiment.rounds": [4, 5], "coach.enabled": [False, True]}
    kinds = {r[2] for r in new[prefix:]}
    assert {"guidance_issued", "survey_answered"} <= kinds  # survey at window 3, after the fork
    assert checksums(parent) == before

    again = await rerun(child, tmp_path / "again")
    assert again.identical and rows(tmp_path / "again" / "events.db") == new


@pytest.mark.parametrize(
    ("over", "named"),
    [
        ({"interventions": []}, r"\[\[interventions\]\]"),
        ({"surveys": [{"name": "panel", "windows": [3]}]}, r"\[\[surveys\]\]"),
    ],
)
async def test_a_fork_that_changes_an_instrument_list_is_refused_by_name(
    parent: Path, tmp_path: Path, over: dict[str, Any], named: str
) -> None:
    with pytest.raises(RunInputError, match=named):
        await fork(parent, instrumented(**over), at_window=2, out_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()


async def test_a_fork_config_s_item_file_is_read_relative_to_that_config(
    parent: Path, tmp_path: Path
) -> None:
    """``friendsim run CONFIG --fork``'s CONFIG names its items file, as the parent's did;
    the parent's manifest holds the items themselves: the same items are the same setting."""
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    toml = tmp_path / "child.toml"
    toml.write_text(
        '[experiment]\nname = "instr"\nseed = 5\nrounds = 5\nn_actions = 2\n'
        '[agents]\ncount = 6\npolicy = "baseline"\n[coach]\nenabled = false\nkind = "rule"\n'
        '[feed]\nranker = "full"\nlimit = 40\n'
        '[moderation]\nenabled = true\nkind = "rule"\nparams = { false_action = "label" }\n'
        '[[interventions]]\nkind = "inject"\nwindow = 2\nitems = "items.jsonl"\nby = "newsdesk"\n'
        '[[surveys]]\nname = "panel"\nwindows = [1, 3]\nquestions = ["stance", "belief"]\n'
    )
    child = tmp_path / "out" / "child"
    report = await fork(parent, load_config(toml), at_window=3, out_dir=child, config_path=toml)
    assert report.changed == {"experiment.rounds": [4, 5]} and report.status == "completed"
    old = rows(parent / "events.db")
    assert rows(child / "events.db")[: len(old)] == old

    (tmp_path / "items.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(RunInputError, match=r"items\.jsonl"):
        await fork(
            parent, load_config(toml), at_window=3, out_dir=tmp_path / "bad", config_path=toml
        )
    assert not (tmp_path / "bad").exists()
