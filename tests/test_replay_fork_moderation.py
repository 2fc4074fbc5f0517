"""Forks that switch ``[moderation]``: on, off, or to other parameters from window W+1.

The shared windows stay the parent's, byte for byte; every item is reviewed under the
moderation in force in the window it was posted in, so the new moderation decides on the items
of windows W+1 on and never on the prefix's; decisions of the prefix stay in force. The fork
records its moderation phases, so a resume of it, a re-run of it and a fork of it re-execute
each window under the moderation it ran under."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from test_replay_fork import outage_from
from test_replay_support import checksums, config, make_run, mind_factory, rows

from friendsim.llm.base import LLMRequest
from friendsim.llm.scripted import Reply, ScriptedLLM
from friendsim.moderation.base import Verdict
from friendsim.moderation.service import ModerationRegime, ModerationService
from friendsim.platform import Platform, VirtualClock
from friendsim.platform.events import WindowStarted
from friendsim.replay.fork import fork
from friendsim.replay.moderation import redrive_moderation
from friendsim.replay.rerun import rerun
from friendsim.replay.resume import resume
from friendsim.rundir.errors import RunInputError
from friendsim.runtime.config import ExperimentConfig, parse_config
from friendsim.runtime.scripted_mind import plausible_responder
from friendsim.runtime.status import RunInterrupted
from friendsim.testing import FakeModerator

STRICT = {"keywords": ["critical"], "strikes_to_suspend": 2, "suspend_windows": 2}
"""The scripted mind's posts say "critical take", "neutral take" or "supportive take"."""
MILD = {"keywords": ["supportive"], "toxic_action": "label"}


def cfg(*, rounds: int, moderation: dict[str, Any] | None = None) -> ExperimentConfig:
    data = config(rounds=rounds, agents=4, coach=False).model_dump(mode="json")
    if moderation is not None:
        data["moderation"] = {"enabled": True, "kind": "rule", "params": moderation}
    return parse_config(data)


def payload(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(json.loads(row[4]))


def window_end_seq(events: list[tuple[Any, ...]], w: int) -> int:
    return next(r[0] for r in events if r[2] == "window_ended" and payload(r)["window"] == w)


def decisions(events: list[tuple[Any, ...]]) -> list[tuple[int, dict[str, Any]]]:
    return [(r[0], payload(r)) for r in events if r[2] == "moderation_decided"]


def posted_at(events: list[tuple[Any, ...]]) -> dict[int, int]:
    """The seq of each post's ``post_created``, by post id."""
    return {payload(r)["post_id"]: r[0] for r in events if r[2] == "post_created"}


def acting(events: list[tuple[Any, ...]], window: int) -> set[str]:
    """The agents who posted or voted in ``window``."""
    out: set[str] = set()
    current = 0
    for r in events:
        if r[2] == "window_started":
            current = payload(r)["window"]
        elif current == window and r[2] in ("post_created", "vote_cast") and r[3]:
            out.add(r[3])
    return out


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run without moderation."""
    out = tmp_path_factory.mktemp("fork-moderation") / "plain"
    asyncio.run(make_run(out, cfg(rounds=4)))
    return out


@pytest.fixture(scope="module")
def moderated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run moderated by the rule moderator from window 1."""
    out = tmp_path_factory.mktemp("fork-moderation") / "moderated"
    asyncio.run(make_run(out, cfg(rounds=4, moderation=STRICT)))
    return out


@pytest.fixture(scope="module")
def switched_on(plain: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``plain`` forked at window 2 with moderation switched on, one window longer."""
    out = tmp_path_factory.mktemp("fork-moderation") / "on"
    report = asyncio.run(
        fork(plain, cfg(rounds=5, moderation=STRICT), at_window=2, out_dir=out,
             llm_factory=mind_factory)
    )  # fmt: skip
    assert report.status == "completed"
    return out


def test_a_fork_switches_moderation_on_for_the_items_after_the_prefix(
    plain: Path, switched_on: Path
) -> None:
    old, new = rows(plain / "events.db"), rows(switched_on / "events.db")
    prefix = window_end_seq(old, 2)
    assert new[:prefix] == old[:prefix] and new != old
    assert not decisions(old)
    made = decisions(new)
    assert made and {d["action"] for _, d in made} >= {"remove", "suspend"}
    posts = posted_at(new)
    assert all(seq > prefix and posts[d["post_id"]] > prefix for seq, d in made)
    assert {d["window"] for _, d in made} <= {3, 4, 5}
    flagged = [
        r for r in new[:prefix] if r[2] == "post_created" and "critical" in payload(r)["text"]
    ]
    assert flagged  # the prefix has items the new moderator would remove: they stay unreviewed
    manifest = json.loads((switched_on / "manifest.json").read_text())
    lineage = manifest["fork"]
    assert lineage["changed"] == {
        "experiment.rounds": [4, 5],
        "moderation.enabled": [False, True],
        "moderation.params": [{}, STRICT],
    }
    assert lineage["phases"] == [
        {
            "start": 1,
            "changes": {
                "experiment.rounds": 4,
                "moderation.enabled": False,
                "moderation.params": {},
            },
        }
    ]
    assert manifest["config"]["moderation"]["enabled"] is True


def test_a_fork_switches_moderation_off_and_the_prefix_s_decisions_stay(
    plain: Path, moderated: Path, tmp_path: Path
) -> None:
    before = checksums(moderated)
    out = tmp_path / "off"
    report = asyncio.run(
        fork(moderated, cfg(rounds=5), at_window=3, out_dir=out, llm_factory=mind_factory)
    )
    assert report.status == "completed"
    assert report.changed == {
        "experiment.rounds": [4, 5],
        "moderation.enabled": [True, False],
        "moderation.params": [STRICT, {}],
    }
    old, new = rows(moderated / "events.db"), rows(out / "events.db")
    prefix = window_end_seq(old, 3)
    assert new[:prefix] == old[:prefix] and new != old
    assert any(seq > prefix for seq, _ in decisions(old))  # the parent went on moderating
    assert decisions(new) and all(seq <= prefix for seq, _ in decisions(new))
    removed = {d["post_id"] for _, d in decisions(new) if d["action"] == "remove"}
    served_later = {
        pid for r in new[prefix:] if r[2] == "feed_served" for pid in payload(r)["post_ids"]
    }
    window3 = {pid for pid, seq in posted_at(new).items() if window_end_seq(new, 2) < seq < prefix}
    assert removed & window3 and served_later & window3  # window 3's items are served in 4...
    assert not removed & served_later  # ...but the prefix's removals stay removed
    (suspended,) = [d for _, d in decisions(new) if d["action"] == "suspend"]
    assert (suspended["from_window"], suspended["until_window"]) == (4, 5)
    agent = suspended["author"]
    assert agent in acting(rows(plain / "events.db"), 4)  # unmoderated, the agent acts in 4
    assert acting(new, 4) and agent not in acting(new, 4) | acting(new, 5)
    assert checksums(moderated) == before


def test_a_fork_changes_the_moderator_s_parameters(moderated: Path, tmp_path: Path) -> None:
    out = tmp_path / "mild"
    report = asyncio.run(
        fork(moderated, cfg(rounds=4, moderation=MILD), at_window=2, out_dir=out,
             llm_factory=mind_factory)
    )  # fmt: skip
    assert report.status == "completed"
    assert report.changed == {"moderation.params": [STRICT, MILD]}
    old, new = rows(moderated / "events.db"), rows(out / "events.db")
    prefix = window_end_seq(old, 2)
    assert new[:prefix] == old[:prefix]
    texts = {payload(r)["post_id"]: payload(r)["text"] for r in new if r[2] == "post_created"}
    before = [d for seq, d in decisions(new) if seq <= prefix]
    after = [d for seq, d in decisions(new) if seq > prefix]
    assert before and all("critical" in texts[d["post_id"]] for d in before)
    assert after and all(d["window"] >= 3 for d in after)
    assert all(
        d["action"] == "label" and "supportive" in texts[d["post_id"]] for d in after
    )  # the new parameters, and none of the old
    again = asyncio.run(rerun(out, tmp_path / "mild-again", llm_factory=mind_factory))
    assert again.identical


def test_a_fork_replaces_an_llm_moderator_whose_prefix_reviews_come_from_the_cache(
    tmp_path: Path,
) -> None:
    parent = tmp_path / "llm-moderated"
    data = cfg(rounds=4).model_dump(mode="json")
    data["moderation"] = {"enabled": True, "kind": "llm", "params": {}}
    asyncio.run(make_run(parent, parse_config(data)))
    asked: list[str] = []
    mind = plausible_responder(0)

    def counting(request: LLMRequest) -> Reply:
        asked.append(request.label)
        return mind(request)

    out = tmp_path / "rule"
    report = asyncio.run(
        fork(parent, cfg(rounds=4, moderation=STRICT), at_window=2, out_dir=out,
             llm_factory=lambda spec: ScriptedLLM(counting, model="mind"))
    )  # fmt: skip
    assert report.status == "completed"
    assert report.changed == {"moderation.kind": ["llm", "rule"], "moderation.params": [{}, STRICT]}
    old, new = rows(parent / "events.db"), rows(out / "events.db")
    prefix = window_end_seq(old, 2)
    assert new[:prefix] == old[:prefix]
    assert {d["moderator"] for seq, d in decisions(new) if seq <= prefix} == {"llm"}
    assert {d["moderator"] for seq, d in decisions(new) if seq > prefix} == {"rule"}
    assert asked and "moderation" not in asked  # the prefix's reviews: the parent's answers
    assert asyncio.run(rerun(out, tmp_path / "again", llm_factory=mind_factory)).identical


def test_a_fork_that_switches_moderation_resumes_to_the_uninterrupted_fork_s_log(
    plain: Path, switched_on: Path, tmp_path: Path
) -> None:
    cut = tmp_path / "cut"
    with pytest.raises(RunInterrupted, match="provider down"):
        asyncio.run(
            fork(plain, cfg(rounds=5, moderation=STRICT), at_window=2, out_dir=cut,
                 llm_factory=outage_from(4))
        )  # fmt: skip
    stopped = json.loads((cut / "manifest.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["windows"] == 3
    assert any(
        seq > window_end_seq(rows(cut / "events.db"), 2)
        for seq, _ in decisions(rows(cut / "events.db"))
    )
    report = asyncio.run(resume(cut, llm_factory=mind_factory))
    assert report.status == "completed" and report.last_complete_window == 3
    assert rows(cut / "events.db") == rows(switched_on / "events.db")
    resumed = json.loads((cut / "manifest.json").read_text())
    assert resumed["fork"] == json.loads((switched_on / "manifest.json").read_text())["fork"]


def test_a_fork_that_switches_moderation_re_runs_and_forks_again_identically(
    switched_on: Path, tmp_path: Path
) -> None:
    again = asyncio.run(rerun(switched_on, tmp_path / "again", llm_factory=mind_factory))
    assert again.identical
    assert rows(tmp_path / "again" / "events.db") == rows(switched_on / "events.db")
    out = tmp_path / "off-again"
    report = asyncio.run(
        fork(switched_on, cfg(rounds=5), at_window=3, out_dir=out, llm_factory=mind_factory)
    )
    assert report.changed == {
        "moderation.enabled": [True, False],
        "moderation.params": [STRICT, {}],
    }
    old, new = rows(switched_on / "events.db"), rows(out / "events.db")
    prefix = window_end_seq(old, 3)
    assert new[:prefix] == old[:prefix] and new != old
    assert {d["window"] for _, d in decisions(new)} == {3}
    assert json.loads((out / "manifest.json").read_text())["fork"]["phases"] == [
        {"start": 1, "changes": {"experiment.rounds": 4}},
        {"start": 3, "changes": {"moderation.enabled": True, "moderation.params": STRICT}},
    ]


def test_what_a_fork_still_cannot_change_is_refused_naming_moderation_among_what_can(
    moderated: Path, tmp_path: Path
) -> None:
    data = cfg(rounds=4, moderation=STRICT).model_dump(mode="json")
    data["experiment"]["n_actions"] = 3
    with pytest.raises(RunInputError, match=r"n_actions.*\[feed\], \[moderation\], \[ties\]"):
        asyncio.run(
            fork(moderated, parse_config(data), at_window=2, out_dir=tmp_path / "x",
                 llm_factory=mind_factory)
        )  # fmt: skip
    assert not (tmp_path / "x").exists()


async def test_each_item_is_reviewed_by_the_moderation_of_the_window_it_was_posted_in(
    tmp_path: Path,
) -> None:
    """The exact rule at a switch: an item still pending when the moderation changes goes to
    the moderator of its own window; items of a window without moderation are never reviewed,
    not by a later moderator either."""
    first, later = (
        FakeModerator(marker="x", marker_verdicts=[Verdict(action="remove")]),
        FakeModerator(),
    )
    p = await Platform.open(tmp_path / "e.db", clock=VirtualClock(0.0))
    service = ModerationService(
        p,
        regimes=[
            ModerationRegime(start=1, moderator=first),
            ModerationRegime(start=2, moderator=None),
            ModerationRegime(start=3, moderator=later),
        ],
    )
    await service.start()
    await p.register_agent("a", name="A")
    for w in (1, 2, 3):
        await p.record(WindowStarted(t=float(w), window=w))
        await p.create_post("a", text=f"x{w}", topic="t")
    await p.flush()
    assert await service.sweep() == 1
    assert [(i.post_id, i.window) for i in first.seen] == [(1, 1)]
    assert [(i.post_id, i.window) for i in later.seen] == [(3, 3)]
    await p.record(WindowStarted(t=4.0, window=4))
    await p.create_post("a", text="x4", topic="t")
    await p.flush()
    await service.sweep()
    assert [i.post_id for i in later.seen] == [3, 4] and len(first.seen) == 1
    await service.stop()
    await p.close()


def test_a_redrive_compares_only_the_windows_moderated_with_that_moderator(
    switched_on: Path,
) -> None:
    """The fork moderated windows 3 to 5 only, with a moderator that started fresh at window
    3: a re-drive with it (its parameters by default) compares those windows, reviewed by a
    fresh moderator of their own, and finds them equal; the counterfactual over the whole log
    also decides on the prefix's items, which nobody moderated."""
    got = asyncio.run(redrive_moderation(switched_on, moderator="rule"))
    made = [d for _, d in decisions(rows(switched_on / "events.db"))]
    assert got.params == STRICT
    assert got.compared_windows == ((3, 5),)
    assert got.equal_to_recorded is True
    assert len(got.recorded) == len(made)
    assert any(d["window"] <= 2 for d in got.decisions)  # the prefix's items, in the counterfactual
    other = asyncio.run(redrive_moderation(switched_on, moderator="rule", changes={"keywords": []}))
    assert other.compared_windows == () and other.equal_to_recorded is None


def test_a_redrive_compares_each_phase_s_parameters_with_its_own_windows(
    moderated: Path, tmp_path: Path
) -> None:
    """A fork that changed the parameters at window 3: the default (the last span's) compares
    windows 3 to 4, equal to what was recorded, and parameters the run never used compare
    nothing; a fork that switched moderation off compares the parent's windows 1 to 2."""
    out = tmp_path / "mild"
    asyncio.run(
        fork(moderated, cfg(rounds=4, moderation=MILD), at_window=2, out_dir=out,
             llm_factory=mind_factory)
    )  # fmt: skip
    mild = asyncio.run(redrive_moderation(out, moderator="rule"))
    assert mild.params == MILD and mild.compared_windows == ((3, 4),)
    assert mild.equal_to_recorded is True
    strict = asyncio.run(redrive_moderation(out, moderator="rule", changes=STRICT))
    assert strict.params == {**MILD, **STRICT}  # updates the last span's parameters
    assert strict.compared_windows == () and strict.equal_to_recorded is None
    off = asyncio.run(fork(moderated, cfg(rounds=4), at_window=2, out_dir=tmp_path / "off",
                           llm_factory=mind_factory))  # fmt: skip
    assert off.status == "completed"
    before = asyncio.run(redrive_moderation(tmp_path / "off", moderator="rule"))
    assert before.params == STRICT and before.compared_windows == ((1, 2),)
    assert before.equal_to_recorded is True


def test_a_run_whose_moderator_is_not_installed_here_is_re_driven_with_another(
    moderated: Path, tmp_path: Path
) -> None:
    """Its recorded ``[moderation]`` names a plug-in this installation lacks: the rule
    moderator still reviews the log, and nothing is compared (the run never used it)."""
    import shutil

    copy = tmp_path / "plugin-moderated"
    shutil.copytree(moderated, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["moderation"]["kind"] = "not-installed-here"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    got = asyncio.run(redrive_moderation(copy, moderator="rule", changes=STRICT))
    assert got.decisions and got.params == STRICT
    assert got.compared_windows == () and got.equal_to_recorded is None
