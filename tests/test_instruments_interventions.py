"""Scheduled interventions: each kind takes effect at exactly its window and is in the log; runs
with interventions, moderation and surveys replay byte for byte."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from friendsim.platform.events import Event, event_from_row
from friendsim.replay.rerun import rerun
from friendsim.rundir.verify import verify_run
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import ConfigError, load_config, parse_config
from friendsim.runtime.interventions import INTERVENTIONS, named_agents

ITEMS = [
    {"id": "f1", "text": "The levy doubles every bill.", "topic": "energy", "source": "Buzz", "truth": "false"},
    {"id": "t1", "text": "Record warm summer, says the weather service.", "topic": "science", "source": "WS", "truth": "true"},
]  # fmt: skip
ACTING = {"post_created", "vote_cast", "vote_changed", "vote_cleared", "followed", "unfollowed", "dm_sent"}  # fmt: skip


def config(mode: str = "rounds", **over: Any) -> Any:
    data: dict[str, Any] = {
        "experiment": {"name": "iv", "seed": 3, "rounds": 5, "n_actions": 2, "mode": mode},
        "agents": {"count": 6, "policy": "baseline"},
        "coach": {"enabled": True, "kind": "rule"},
        "rewards": {"sentiment": "lexicon"},
        "feed": {"ranker": "full", "limit": 30},
    }
    if mode == "continuous":
        data["experiment"].update(window_length=600.0, tick=60.0, wake_rate=3.0)
    data.update(over)
    return parse_config(data)


def events(run: Path) -> list[Event]:
    with sqlite3.connect(run / "events.db") as con:
        return [event_from_row(*r) for r in con.execute("SELECT * FROM events ORDER BY seq")]


def windows_of(evs: list[Event]) -> Iterator[tuple[int, Event]]:
    w = 0
    for e in evs:
        if e.kind == "window_started":
            w = e.window  # type: ignore[attr-defined]
        yield w, e


ALL_KINDS = [
    {"kind": "inject", "window": 2, "items": ITEMS, "agents": ["a01"]},
    {"kind": "broadcast", "window": 2, "text": "Platform notice: be kind."},
    {"kind": "reward_mix", "window": 2, "agents": ["a00"], "dominant": "EMO"},
    {"kind": "persona", "window": 2, "agents": ["a05"], "fields": {"stance_score": -0.9}},
    {"kind": "suspend", "window": 2, "agents": ["a02"], "windows": 2},
    {"kind": "ranker", "window": 3, "ranker": "chrono", "limit": 10},
    {"kind": "remove", "window": 3, "agents": ["a03"]},
    {"kind": "add_agents", "window": 3, "count": 2},
]


@pytest.mark.parametrize("mode", ["rounds", "continuous"])
async def test_every_intervention_kind_at_its_window(tmp_path: Path, mode: str) -> None:
    cfg = config(mode, interventions=ALL_KINDS)
    await run_experiment(cfg, out_dir=tmp_path / "run")
    evs = events(tmp_path / "run")
    placed = list(windows_of(evs))
    applied = [(w, e.intervention) for w, e in placed if e.kind == "intervention_applied"]  # type: ignore[attr-defined]
    assert applied == [(2, "inject"), (2, "broadcast"), (2, "reward_mix"), (2, "persona"),
                       (2, "suspend"), (3, "ranker"), (3, "remove"), (3, "add_agents")]  # fmt: skip
    # every intervention is applied before anyone of its window is served a feed or acts
    for w in (2, 3):
        first_applied = min(e.seq for x, e in placed if x == w and e.kind == "intervention_applied")
        assert all(
            e.seq > first_applied
            for x, e in placed
            if x == w and e.kind in ACTING | {"feed_served"}
            if e.actor not in ("a01",) or e.kind != "post_created"
        )
    # inject: two posts by the chosen agent, each labelled with its truth
    injected = [e for e in evs if e.kind == "item_injected"]
    assert [(e.item_id, e.truth) for e in injected] == [("f1", "false"), ("t1", "true")]  # type: ignore[attr-defined]
    posts = {e.post_id: e for e in evs if e.kind == "post_created"}  # type: ignore[attr-defined]
    assert all(posts[e.post_id].actor == "a01" for e in injected)  # type: ignore[attr-defined]
    # ranker: full before window 3, chrono (10 items) from window 3 on
    for w, e in placed:
        if e.kind == "feed_served":
            assert e.ranker == ("full" if w < 3 else "chrono"), (w, e)  # type: ignore[attr-defined]
            assert w < 3 or len(e.post_ids) <= 10  # type: ignore[attr-defined]
    # reward mix and persona changes are events with the new fields
    changed = {e.agent: e.fields for e in evs if e.kind == "persona_changed"}  # type: ignore[attr-defined]
    assert changed["a00"]["dominant"] == "EMO" and changed["a00"]["lambdas"]["EMO"] == 0.6
    assert changed["a05"] == {"stance_score": -0.9}
    # suspension: a02 acts in no window of 2..3 and is not even observed; removal: a03 from 3 on
    for w, e in placed:
        if e.actor == "a02" and 2 <= w <= 3:
            assert e.kind not in ACTING | {"feed_served"}, (w, e)
        if e.actor == "a03" and w >= 3:
            assert e.kind not in ACTING | {"feed_served"}, (w, e)
    assert any(e.actor == "a03" and e.kind in ACTING for w, e in placed if w < 3)
    # growth: two newcomers registered in window 3 (prefix-stable ids), then served and acting
    joined = [(w, e.actor) for w, e in placed if e.kind == "agent_registered" and w > 0]
    assert joined == [(3, "a06"), (3, "a07")]
    assert any(e.actor == "a06" and e.kind == "feed_served" for w, e in placed if w >= 3)
    # the broadcast is recorded in window 2
    assert [w for w, e in placed if e.kind == "broadcast_sent"] == [2]
    # the platform's state is what the log implies, and the run re-runs byte for byte
    assert verify_run(tmp_path / "run").ok
    report = await rerun(tmp_path / "run", tmp_path / "again")
    assert report.identical, report.diff


async def test_broadcast_reaches_agents_once(tmp_path: Path) -> None:
    """The broadcast text is in the next observation of every agent (LLM prompts), once."""
    from friendsim.llm.scripted import ScriptedLLM
    from friendsim.runtime.scripted_mind import plausible_responder

    prompts: list[str] = []
    responder = plausible_responder(0)

    def answer(req: Any) -> Any:
        if req.label == "plan":
            prompts.append(req.messages[-1].content)
        return responder(req)

    cfg = config(
        agents={"count": 3, "policy": "llm"},
        llm={"provider": "scripted", "retries": 0},
        experiment={"name": "b", "seed": 1, "rounds": 4, "n_actions": 1},
        interventions=[{"kind": "broadcast", "window": 3, "text": "NOTICE-XYZ from the team"}],
    )
    await run_experiment(cfg, out_dir=tmp_path / "r", llm_factory=lambda s: ScriptedLLM(answer))
    # shown in the inbox once per agent (memory may recall it later, as any message), with
    # the id of its event: minus its seq, never a DM's id
    (sent,) = [e for e in events(tmp_path / "r") if e.kind == "broadcast_sent"]
    shown = f'<dm id="-{sent.seq}" from="platform" topic="">NOTICE-XYZ from the team</dm>'
    assert sum(shown in p for p in prompts) == 3


async def test_every_broadcast_is_remembered_once(tmp_path: Path) -> None:
    """Every broadcast reached the inbox as dm id 0, and an agent's memory keeps a message
    once by id: the first broadcast an agent got was remembered, every later one dropped."""
    from friendsim.llm.scripted import ScriptedLLM
    from friendsim.runtime.scripted_mind import plausible_responder

    plans: list[tuple[int, str]] = []
    responder = plausible_responder(0)

    def answer(req: Any) -> Any:
        if req.label == "plan":
            text = req.messages[-1].content
            plans.append((int(text.split("Window ", 1)[1].split(".", 1)[0]), text))
        return responder(req)

    cfg = config(
        agents={"count": 3, "policy": "llm"},
        llm={"provider": "scripted", "retries": 0},
        experiment={"name": "b", "seed": 1, "rounds": 5, "n_actions": 1},
        interventions=[
            {"kind": "broadcast", "window": 2, "text": "FIRST-NOTICE"},
            {"kind": "broadcast", "window": 3, "text": "SECOND-NOTICE"},
        ],
    )
    await run_experiment(cfg, out_dir=tmp_path / "r", llm_factory=lambda s: ScriptedLLM(answer))
    last = [text for w, text in plans if w == 5]
    assert len(last) == 3
    for text in last:
        memory = text.split("<memory>", 1)[1].split("</memory>", 1)[0]
        assert memory.count("FIRST-NOTICE") == 1 and memory.count("SECOND-NOTICE") == 1
        assert "- platform:" not in memory  # the sender is no contact


@pytest.mark.parametrize("policy", ["baseline", "llm"])
async def test_agents_do_not_write_to_a_broadcast_s_sender(tmp_path: Path, policy: str) -> None:
    """The sender of a broadcast is no user: it was taken for one the agents knew, and they
    wrote DMs to it and mentioned it in the windows after, each a failed action."""
    from friendsim.llm.scripted import ScriptedLLM
    from friendsim.runtime.scripted_mind import plausible_responder

    cfg = config(
        agents={"count": 4, "policy": policy},
        llm={"provider": "scripted", "retries": 0},
        interventions=[{"kind": "broadcast", "window": 2, "text": "Platform notice: be kind."}],
    )
    factory = (lambda s: ScriptedLLM(plausible_responder(0))) if policy == "llm" else None
    await run_experiment(cfg, out_dir=tmp_path / "r", llm_factory=factory)
    evs = events(tmp_path / "r")
    assert [e.kind for e in evs].count("broadcast_sent") == 1
    assert not [e for e in evs if e.kind == "action_failed"]
    assert not [e for e in evs if e.kind == "dm_sent" and e.recipient == "platform"]  # type: ignore[attr-defined]


async def test_at_virtual_time_in_continuous_mode(tmp_path: Path) -> None:
    """``at = T``: applied before the first slice at or after T, inside its window."""
    cfg = config(
        "continuous",
        interventions=[{"kind": "suspend", "at": 1500.0, "agents": ["a00"], "windows": 1}],
    )
    await run_experiment(cfg, out_dir=tmp_path / "run")
    evs = events(tmp_path / "run")
    (applied,) = [e for e in evs if e.kind == "intervention_applied"]
    assert applied.t == 1500.0 and applied.window == 3  # type: ignore[attr-defined]
    assert not [e for e in evs if e.actor == "a00" and e.kind in ACTING and 1500 <= e.t < 1800]


def test_bad_interventions_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[interventions\]\[0\].*either 'window' or 'at'"):
        config(interventions=[{"kind": "broadcast", "text": "x"}])
    with pytest.raises(ConfigError, match="unknown intervention 'nope'"):
        config(interventions=[{"kind": "nope", "window": 1}])
    with pytest.raises(ConfigError, match="cannot be changed"):
        config(interventions=[{"kind": "persona", "window": 1, "fields": {"id": "x"}}])


@pytest.mark.parametrize(
    "intervention",
    [
        {"kind": "suspend", "agents": ["a01", "a02", "a01"]},
        {"kind": "remove", "agents": ["a01", "a01"]},
        {"kind": "persona", "agents": ["a01", "a01"], "fields": {"stance_score": 0.5}},
        {"kind": "reward_mix", "agents": ["a01", "a01"], "dominant": "EMO"},
    ],
    ids=lambda i: i["kind"],
)
def test_an_agent_named_twice_in_a_change_is_a_config_error(intervention: dict[str, Any]) -> None:
    """Each was applied to it twice: two events, and the interventions table counted the
    agent twice."""
    with pytest.raises(ConfigError, match=r"\[interventions\]\[0\].*more than once: \['a01'\]"):
        config(interventions=[{"window": 2, **intervention}])
    once = {**intervention, "agents": ["a01"]}
    assert config(interventions=[{"window": 2, **once}]).interventions
    with pytest.raises(ConfigError, match="at least 1"):
        config(interventions=[{"kind": "suspend", "window": 2, "agents": []}])
    turns = {"kind": "inject", "window": 2, "items": ITEMS, "agents": ["a01", "a02", "a01"]}
    assert config(interventions=[turns]).interventions  # inject's authors take turns


def test_reward_mix_weight_that_would_not_dominate_is_a_config_error() -> None:
    mix = {"kind": "reward_mix", "window": 2, "dominant": "EMO"}
    with pytest.raises(ConfigError, match=r"dominant_weight=0.1 must be in \[0.2, 1\]"):
        config(interventions=[{**mix, "weight": 0.1}])
    assert config(interventions=[{**mix, "weight": 0.2}]).interventions


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (
            {"stance_score": 5.0},
            "persona field stance_score: Input should be less than or equal to 1",
        ),
        ({"big5": {"O": 2}}, "persona field big5.O: Input should be less than or equal to 1"),
        ({"big5": {"O": 0.5}}, "persona field big5: big5 needs exactly the keys"),
        ({"role": "  "}, "persona field role: String should have at least 1 character"),
    ],
)
def test_persona_values_the_persona_model_refuses_are_config_errors(
    fields: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        config(
            interventions=[{"kind": "persona", "window": 2, "agents": ["a00"], "fields": fields}]
        )
    assert err.value.key == "[interventions][0]"
    assert words in err.value.problem


@pytest.mark.parametrize(
    ("mode", "when", "key"),
    [
        ("rounds", {"window": 6}, "[interventions][0].window"),
        ("rounds", {"at": 1e12}, "[interventions][0].at"),
        ("rounds", {"at": 5 * 3600.0}, "[interventions][0].at"),  # the end of the last round
        ("continuous", {"window": 6}, "[interventions][0].window"),
        ("continuous", {"at": 2941.0}, "[interventions][0].at"),  # after the last slice (2940)
    ],
)
def test_interventions_after_the_run_are_config_errors(
    mode: str, when: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as err:
        config(mode, interventions=[{"kind": "broadcast", "text": "x", **when}])
    assert err.value.key == key
    assert "it would never apply" in err.value.problem


@pytest.mark.parametrize(
    ("mode", "when"),
    [
        ("rounds", {"window": 5}),
        ("rounds", {"at": 5 * 3600.0 - 1}),
        ("continuous", {"window": 5}),
        ("continuous", {"at": 2940.0}),
    ],
)
def test_interventions_at_the_run_s_last_moment_are_accepted(
    mode: str, when: dict[str, Any]
) -> None:
    assert config(mode, interventions=[{"kind": "broadcast", "text": "x", **when}]).interventions


async def test_late_continuous_intervention_applies_in_the_last_slice(tmp_path: Path) -> None:
    cfg = config(
        "continuous", interventions=[{"kind": "broadcast", "at": 2940.0, "text": "last call"}]
    )
    await run_experiment(cfg, out_dir=tmp_path / "run")
    (sent,) = [e for e in events(tmp_path / "run") if e.kind == "broadcast_sent"]
    assert sent.t == 2940.0 and sent.window == 5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "intervention",
    [
        {"kind": "suspend", "agents": ["zzz"]},
        {"kind": "remove", "agents": ["a00", "zzz"]},
        {"kind": "persona", "agents": ["zzz"], "fields": {"stance_score": 0.5}},
        {"kind": "reward_mix", "agents": ["zzz"], "dominant": "SOC"},
        {"kind": "inject", "agents": ["zzz"], "items": ITEMS},
    ],
    ids=lambda i: i["kind"],
)
async def test_unknown_agents_are_refused_before_anything_is_written(
    tmp_path: Path, intervention: dict[str, Any]
) -> None:
    cfg = config(interventions=[{"kind": "broadcast", "window": 1, "text": "x"},
                                {"window": 2, **intervention}])  # fmt: skip
    with pytest.raises(ConfigError) as err:
        await run_experiment(cfg, out_dir=tmp_path / "run")
    assert err.value.key == "[interventions][1].agents"
    assert "no agent 'zzz' in this run (6 agents: a00 ... a05)" in err.value.problem
    assert not (tmp_path / "run").exists()


async def test_agents_a_growing_population_adds_may_be_named(tmp_path: Path) -> None:
    cfg = config(
        interventions=[
            {"kind": "add_agents", "window": 2, "count": 2},
            {"kind": "suspend", "window": 3, "agents": ["a07"]},
        ]
    )
    await run_experiment(cfg, out_dir=tmp_path / "run")
    evs = events(tmp_path / "run")
    assert [e.agent for e in evs if e.kind == "agent_suspended"] == ["a07"]  # type: ignore[attr-defined]
    assert not [e for e in evs if e.kind == "action_failed"]
    with pytest.raises(ConfigError, match=r"no agent 'a08' in this run \(8 agents"):
        await run_experiment(
            config(
                interventions=[
                    {"kind": "add_agents", "window": 2, "count": 2},
                    {"kind": "suspend", "window": 3, "agents": ["a08"]},
                ]
            ),
            out_dir=tmp_path / "run2",
        )


@pytest.mark.parametrize("mode", ["rounds", "continuous"])
async def test_agents_named_before_they_join_are_refused(tmp_path: Path, mode: str) -> None:
    cfg = config(
        mode,
        interventions=[
            {"kind": "suspend", "window": 2, "agents": ["a06"]},
            {"kind": "add_agents", "window": 2, "count": 2},
        ],
    )
    with pytest.raises(ConfigError) as err:
        await run_experiment(cfg, out_dir=tmp_path / "run")
    assert err.value.key == "[interventions][0].agents"
    assert err.value.problem == (
        "agent 'a06' joins only with [interventions][1] (add_agents, window 2), after this "
        "suspend (window 2) applies"
    )
    assert not (tmp_path / "run").exists()
    late = [
        {"kind": "add_agents", "at": 1250.0 if mode == "continuous" else 11000.0, "count": 1},
        {"kind": "persona", "window": 3, "agents": ["a06"], "fields": {"stance_score": 0.1}},
    ]
    with pytest.raises(ConfigError, match=r"joins only with \[interventions\]\[0\] \(add_agents"):
        await run_experiment(config(mode, interventions=late), out_dir=tmp_path / "run")
    cfg = config(mode, interventions=[late[1], {**late[0], "at": 1.0}])  # joins in window 1
    await run_experiment(cfg, out_dir=tmp_path / "ok")
    evs = events(tmp_path / "ok")
    assert not [e for e in evs if e.kind == "action_failed"]
    assert [e.agent for e in evs if e.kind == "persona_changed" and e.window == 3] == ["a06"]  # type: ignore[attr-defined]


async def test_an_outside_account_that_an_agent_joining_later_would_be_is_refused(
    tmp_path: Path,
) -> None:
    """``inject``'s ``by`` registers an outside account: the ``add_agents`` after it could not
    register its agent of that id (the run failed at that window, DuplicateAgentError)."""
    inject = {"kind": "inject", "window": 2, "by": "a06", "items": ITEMS}
    grow = {"kind": "add_agents", "window": 2, "count": 1}
    with pytest.raises(ConfigError) as err:
        await run_experiment(config(interventions=[inject, grow]), out_dir=tmp_path / "run")
    assert err.value.key == "[interventions][0].by"
    assert "'a06' would be registered (window 2) before [interventions][1]" in err.value.problem
    assert not (tmp_path / "run").exists()
    await run_experiment(config(interventions=[grow, inject]), out_dir=tmp_path / "ok")
    evs = events(tmp_path / "ok")
    injected = {e.post_id for e in evs if e.kind == "item_injected"}  # type: ignore[attr-defined]
    posts = [e for e in evs if e.kind == "post_created" and e.post_id in injected]  # type: ignore[attr-defined]
    assert [e.actor for e in posts] == ["a06", "a06"]  # the agent that joined posts them
    assert not [e for e in evs if e.kind == "action_failed"]


@pytest.mark.parametrize("mode", ["rounds", "continuous"])
async def test_applied_at_predicts_the_order_interventions_apply_in(
    tmp_path: Path, mode: str
) -> None:
    """Window starts, times on a slice, between slices, past a window's last slice, on window
    boundaries, ties: the order and windows the runtime applies them in (the log) are the ones
    ``ExperimentSection.applied_at`` gives, which the population check relies on."""
    times = [0.0, 59.9, 60.0, 60.1, 570.0, 599.9, 600.0, 1199.0, 1200.0, 2000.0, 2400.0, 60.0]
    windows = [3, 1, 2, 4, 3]
    specs = [{"kind": "broadcast", "at": t, "text": f"at {t}"} for t in times] + [
        {"kind": "broadcast", "window": w, "text": f"window {w}"} for w in windows
    ]
    order = [specs[i] for i in [11, 12, 3, 0, 14, 9, 15, 5, 16, 2, 8, 6, 13, 7, 4, 10, 1]]
    cfg = config(mode, interventions=order)
    ex = cfg.experiment
    predicted = sorted(
        range(len(order)),
        key=lambda i: (ex.applied_at(window=order[i].get("window"), at=order[i].get("at")), i),
    )
    await run_experiment(cfg, out_dir=tmp_path / "run")
    applied = [e for e in events(tmp_path / "run") if e.kind == "intervention_applied"]
    assert [e.name for e in applied] == [f"broadcast-{i + 1}" for i in predicted]  # type: ignore[attr-defined]
    assert [e.window for e in applied] == [  # type: ignore[attr-defined]
        ex.applied_at(window=order[i].get("window"), at=order[i].get("at"))[0] for i in predicted
    ]
    assert len({e.window for e in applied}) >= 4  # type: ignore[attr-defined]


def test_cli_bad_items_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from friendsim.cli import main

    (tmp_path / "items.jsonl").write_text(
        '{"id": "x", "text": "t", "topic": "a", "truth": "maybe"}\n'
    )
    toml = tmp_path / "exp.toml"
    toml.write_text(
        '[experiment]\nrounds = 2\n[agents]\ncount = 3\npolicy = "baseline"\n'
        '[[interventions]]\nkind = "inject"\nwindow = 1\nitems = "items.jsonl"\n'
    )
    assert main(["run", str(toml), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "items.jsonl: line 1: truth" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "events.db").exists()


async def test_items_file_inlined_into_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(i) for i in ITEMS) + "\n")
    toml = tmp_path / "exp.toml"
    toml.write_text(
        '[experiment]\nrounds = 3\nn_actions = 1\n[agents]\ncount = 3\npolicy = "baseline"\n'
        '[[interventions]]\nkind = "inject"\nwindow = 2\nitems = "items.jsonl"\n'
    )
    from friendsim.runtime.config import load_config

    await run_experiment(load_config(toml), out_dir=tmp_path / "run", config_path=toml)
    (tmp_path / "items.jsonl").unlink()  # a re-run needs no file: the manifest holds the items
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["interventions"][0]["items"][0]["id"] == "f1"
    report = await rerun(tmp_path / "run", tmp_path / "again")
    assert report.identical


class _Quiet:
    """A plug-in intervention: suspends the agents it names for one window."""

    def __init__(self, agents: tuple[str, ...]) -> None:
        self.agents = agents

    async def apply(self, ops: Any, window: int) -> None:
        await ops.suspend(self.agents, 1, "quiet hour")


class _QuietParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agents: tuple[str, ...]


class _NoteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class _Note:
    async def apply(self, ops: Any, window: int) -> None:
        await ops.broadcast("note", sender="desk")


@pytest.fixture
def plugin_kinds() -> Iterator[None]:
    INTERVENTIONS.register("quiet", lambda *, agents: _Quiet(agents), params=_QuietParams)
    INTERVENTIONS.register("note", lambda *, text: _Note(), params=_NoteParams)
    try:
        yield
    finally:
        INTERVENTIONS.unregister("quiet")
        INTERVENTIONS.unregister("note")


async def test_a_plugin_s_named_agents_are_checked_before_the_run_like_the_built_ins(
    tmp_path: Path, plugin_kinds: None
) -> None:
    """A plug-in kind whose params declare ``agents`` names agents of the run: an unknown one
    is a config error before anything is written, not an intervention failing mid-run."""
    bad = config(interventions=[{"kind": "note", "window": 1, "text": "zzz"},
                                {"kind": "quiet", "window": 2, "agents": ["a01", "zzz"]}])  # fmt: skip
    with pytest.raises(ConfigError) as err:
        await run_experiment(bad, out_dir=tmp_path / "bad")
    assert err.value.key == "[interventions][1].agents"
    assert "no agent 'zzz' in this run (6 agents: a00 ... a05)" in err.value.problem
    assert not (tmp_path / "bad").exists()

    good = config(interventions=[{"kind": "note", "window": 1, "text": "zzz"},
                                 {"kind": "quiet", "window": 2, "agents": ["a01"]}])  # fmt: skip
    await run_experiment(good, out_dir=tmp_path / "good")
    evs = events(tmp_path / "good")
    assert [e.agent for e in evs if e.kind == "agent_suspended"] == ["a01"]  # type: ignore[attr-defined]
    assert not [e for e in evs if e.kind == "action_failed" and e.stage == "intervention"]  # type: ignore[attr-defined]
    assert named_agents("note", {"text": "zzz"}) == ()
    assert named_agents("quiet", {"agents": ["a01"]}) == ("a01",)
    assert named_agents("quiet", {"agents": 3}) == ()  # not a list of ids: not checked here


def test_an_items_file_whose_text_holds_unicode_line_breaks_loads_line_by_line(
    tmp_path: Path,
) -> None:
    """JSON allows U+2028, U+2029 and U+0085 raw inside strings; the items file was split with
    ``str.splitlines``, which broke such an item in two and refused the file as not JSON."""
    from friendsim.runtime.instruments_config import load_items

    path = tmp_path / "items.jsonl"
    rows = [
        {"id": "a", "text": "one\u2028two\u2029three\u0085four", "topic": "t", "truth": "false"},
        {"id": "b", "text": "plain", "topic": "t", "truth": "true"},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows), "utf-8")
    items = load_items(path)
    assert [(i["id"], i["text"]) for i in items] == [(r["id"], r["text"]) for r in rows]


def test_an_items_line_nested_past_the_decoder_s_limit_is_named(tmp_path: Path) -> None:
    from friendsim.runtime.instruments_config import ItemsFileError, load_items

    path = tmp_path / "items.jsonl"
    path.write_text('{"id": "a", "text": "t", "topic": "t"}\n' + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(
        ItemsFileError, match=r"items.jsonl: line 2: not JSON \(nested too deeply\)"
    ):
        load_items(path)


def test_an_inline_item_list_empty_or_with_repeated_ids_is_a_config_error() -> None:
    """As an items file is held to: an empty list injected nothing (and registered its outside
    account), and two items of one id were one survey question and one truth label."""
    inject = {"kind": "inject", "window": 2}
    with pytest.raises(ConfigError, match=r"\[interventions\]\[0\].*holds no items"):
        config(interventions=[{**inject, "items": []}])
    twice = [ITEMS[0], {**ITEMS[1], "id": "f1"}]
    with pytest.raises(ConfigError, match=r"\[interventions\]\[0\].*item ids repeat: \['f1'\]"):
        config(interventions=[{**inject, "items": twice}])


def test_an_item_id_injected_twice_in_a_run_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """Item ids tell injected items apart in surveys (``belief:<id>``) and analyses: an id
    injected as false at window 1 and as true at window 2 had its window-1 belief answers
    counted as belief in a true item. Refused, an items file's ids too, exit 2."""
    (tmp_path / "items.jsonl").write_text(json.dumps({**ITEMS[1], "id": "f1"}) + "\n")
    toml = tmp_path / "exp.toml"
    toml.write_text(
        '[experiment]\nrounds = 3\n[agents]\ncount = 3\npolicy = "baseline"\n'
        '[[interventions]]\nkind = "inject"\nwindow = 1\n'
        'items = [{id = "f1", text = "a", topic = "t", truth = "false"}]\n'
        '[[interventions]]\nkind = "inject"\nwindow = 2\nitems = "items.jsonl"\n'
    )
    from friendsim.cli import main

    assert main(["run", str(toml), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError) as err:
        asyncio.run(run_experiment(load_config(toml), out_dir=tmp_path / "run", config_path=toml))
    assert err.value.key == "[interventions][1].items"
    assert "item id 'f1' is injected already by [interventions][0]" in err.value.problem


def test_a_growth_past_the_persona_file_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """An ``add_agents`` the persona file cannot supply failed the run at its window (windows
    already run and paid for), with an error at ``[agents].count``; now exit 2 at its own key,
    nothing written."""
    from friendsim.agents.generator import generate_personas
    from friendsim.agents.persona_io import save_personas
    from friendsim.cli import main

    save_personas(generate_personas(5, seed=1), tmp_path / "people.jsonl")
    toml = tmp_path / "exp.toml"
    toml.write_text(
        '[experiment]\nrounds = 3\n[agents]\ncount = 4\npersonas = "people.jsonl"\n'
        'policy = "baseline"\n'
        '[[interventions]]\nkind = "add_agents"\nwindow = 2\ncount = 1\n'
        '[[interventions]]\nkind = "add_agents"\nwindow = 3\ncount = 1\n'
    )
    assert main(["run", str(toml), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError) as err:
        asyncio.run(run_experiment(load_config(toml), out_dir=tmp_path / "run", config_path=toml))
    assert err.value.key == "[interventions][1].count"
    assert err.value.problem.startswith("the population grows to 6 agents here: ")
    assert not (tmp_path / "run").exists()
    toml.write_text(toml.read_text().split('[[interventions]]\nkind = "add_agents"\nwindow = 3')[0])
    assert main(["run", str(toml), "--out", str(tmp_path / "run"), "--quiet"]) == 0  # 5 fit


async def test_agents_joining_a_continuous_run_know_of_others(tmp_path: Path) -> None:
    """In continuous mode every agent present from the start knows of a seeded sample of
    others (without it a chrono feed of an agent that follows nobody is empty, and nobody could
    make a first follow); agents that joined by ``add_agents`` knew of nobody."""
    from friendsim.agents.policies import POLICIES
    from friendsim.runtime.continuous import ACQUAINTANCES, acquaintances_of
    from friendsim.testing import ScriptedPolicy

    make = ScriptedPolicy.factory(text="hi")
    POLICIES.register("scripted-joiners", make, replace=True)
    try:
        cfg = config(
            "continuous",
            agents={"count": 30, "policy": "scripted-joiners"},
            feed={"ranker": "chrono", "limit": 30},
            interventions=[{"kind": "add_agents", "window": 2, "count": 2}],
        )
        await run_experiment(cfg, out_dir=tmp_path / "run")
    finally:
        POLICIES.unregister("scripted-joiners")
    population = sorted(make.policies)
    assert population[-2:] == ["a30", "a31"]
    woke = [a for a in ("a30", "a31") if make.policies[a].observations]
    assert woke  # a31 (a low activity) never wakes
    for agent in woke:
        first = make.policies[agent].observations[0]
        expected = acquaintances_of(agent, population, k=ACQUAINTANCES, seed=3)
        assert len(expected) == ACQUAINTANCES and agent not in expected
        assert set(expected) <= set(first.known_users)
