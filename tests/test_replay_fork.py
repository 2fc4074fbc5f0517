"""Fork: a new run from the end of window W of an old run, with a changed config."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_replay_support import checksums, config, make_run, mind_down_from, mind_factory, rows

from friendsim.llm.base import LLM
from friendsim.llm.scripted import ScriptedLLM
from friendsim.replay.fork import fork
from friendsim.replay.rerun import rerun
from friendsim.replay.resume import resume
from friendsim.rundir.errors import RunInputError
from friendsim.rundir.manifest import amend_manifest
from friendsim.runtime.status import RunInterrupted


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fork") / "parent"
    asyncio.run(make_run(out, config(rounds=4, agents=4, coach=False)))
    return out


def window_end_seq(events: list, w: int) -> int:
    return next(r[0] for r in events if r[2] == "window_ended" and json.loads(r[4])["window"] == w)


async def test_fork_switches_coaching_on_and_shares_the_prefix(
    parent: Path, tmp_path: Path
) -> None:
    before = checksums(parent)
    child_cfg = config(rounds=5, agents=4, coach=True)
    report = await fork(
        parent, child_cfg, at_window=2, out_dir=tmp_path / "child", llm_factory=mind_factory
    )
    old, new = rows(parent / "events.db"), rows(tmp_path / "child" / "events.db")
    prefix = window_end_seq(old, 2)
    assert report.prefix_last_seq == prefix and report.status == "completed"
    assert new[:prefix] == old[:prefix]  # shared prefix, byte for byte
    assert new[prefix] != old[prefix]  # coaching starts right after WindowEnded(2)
    assert new[prefix][2] == "guidance_issued" and json.loads(new[prefix][4])["window"] == 2
    guided = {json.loads(r[4])["window"] for r in new if r[2] == "guidance_issued"}
    assert guided == {2, 3, 4, 5}
    assert not any(r[2] == "guidance_issued" for r in old)
    ends = [json.loads(r[4])["window"] for r in new if r[2] == "window_ended"]
    assert ends == [1, 2, 3, 4, 5]
    manifest = json.loads((tmp_path / "child" / "manifest.json").read_text())
    lineage = manifest["fork"]
    assert lineage["parent_run_dir"] == str(parent)  # tmp paths are absolute
    assert (
        lineage["parent_manifest_sha256"]
        == hashlib.sha256((parent / "manifest.json").read_bytes()).hexdigest()
    )
    assert lineage["fork_window"] == 2 and lineage["prefix_last_seq"] == prefix
    assert lineage["changed"] == {"experiment.rounds": [4, 5], "coach.enabled": [False, True]}
    expect = hashlib.sha256(
        "".join(
            f"{s}\t{float(t).hex()}\t{k}\t{'' if a is None else a}\t{p}\n"
            for s, t, k, a, p in old[:prefix]
        ).encode()
    ).hexdigest()
    assert lineage["prefix_sha256"] == expect == report.prefix_sha256
    assert manifest["status"] == "completed" and manifest["config"]["coach"]["enabled"] is True
    assert checksums(parent) == before


async def test_fork_with_same_config_equals_the_parent(parent: Path, tmp_path: Path) -> None:
    report = await fork(
        parent,
        config(rounds=4, agents=4, coach=False),
        at_window=1,
        out_dir=tmp_path / "same",
        llm_factory=mind_factory,
    )
    assert report.changed == {}
    assert rows(tmp_path / "same" / "events.db") == rows(parent / "events.db")


async def test_fork_rejects_what_cannot_change_or_never_ended(parent: Path, tmp_path: Path) -> None:
    with pytest.raises(RunInputError, match=r"\[experiment\]\.n_actions"):
        await fork(
            parent,
            config(rounds=5, agents=4, n_actions=3),
            at_window=2,
            out_dir=tmp_path / "x",
            llm_factory=mind_factory,
        )
    with pytest.raises(RunInputError, match="window 9 never ended"):
        await fork(
            parent,
            config(rounds=12, agents=4),
            at_window=9,
            out_dir=tmp_path / "y",
            llm_factory=mind_factory,
        )
    with pytest.raises(RunInputError, match="nothing runs after"):
        await fork(
            parent,
            config(rounds=2, agents=4),
            at_window=2,
            out_dir=tmp_path / "z",
            llm_factory=mind_factory,
        )
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_run_option_entry_point_for_friendsim_run(parent: Path, tmp_path: Path) -> None:
    """What ``friendsim run CONFIG --fork RUN --at W`` calls (wired in the runtime's CLI)."""
    import argparse

    from friendsim.commands.replay import handle_run_option

    cfg = tmp_path / "child.toml"
    cfg.write_text(
        '[experiment]\nname = "child"\nseed = 11\nrounds = 5\nn_actions = 2\nwindow_length = 600.0\n'
        '[agents]\ncount = 4\npolicy = "llm"\n[llm]\nprovider = "scripted"\nconcurrency = 4\n'
        "[coach]\nenabled = true\n[feed]\nlimit = 40\n"
    )
    no_config = argparse.Namespace(
        config=None, fork=parent, at=2, out=tmp_path / "o", resume=None, quiet=True
    )
    assert handle_run_option(no_config) == 2
    bad_at = argparse.Namespace(
        config=cfg, fork=parent, at=7, out=tmp_path / "o", resume=None, quiet=True
    )
    assert handle_run_option(bad_at) == 2
    assert not (tmp_path / "o").exists()


def outage_from(window: int) -> Callable[[str], LLM]:
    """The scripted mind, until the provider goes down for good at ``window``'s first plan."""
    respond = mind_down_from(window)
    return lambda spec: ScriptedLLM(respond, model="mind")


@pytest.fixture(scope="module")
def coached_fork(parent: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The parent forked at window 2 with coaching switched on, uninterrupted."""
    out = tmp_path_factory.mktemp("coached") / "fork"
    report = asyncio.run(
        fork(parent, config(rounds=5, agents=4, coach=True), at_window=2, out_dir=out,
             llm_factory=mind_factory)
    )  # fmt: skip
    assert report.status == "completed"
    return out


def test_an_interrupted_fork_resumes_to_the_log_of_the_uninterrupted_fork(
    parent: Path, coached_fork: Path, tmp_path: Path
) -> None:
    """A fork stopped by a provider outage said it could be resumed, but its resume re-derived
    the shared windows under the new config (coaching on from window 1), asked questions the
    parent never asked, and failed on a cache miss. Each window now re-runs under the config
    it ran under: the resume ends with the uninterrupted fork's log, and its manifest keeps the
    fork's lineage, so a resume of it (or a re-run) has the phases too."""
    cut = tmp_path / "cut"
    with pytest.raises(RunInterrupted, match="provider down"):
        asyncio.run(
            fork(parent, config(rounds=5, agents=4, coach=True), at_window=2, out_dir=cut,
                 llm_factory=outage_from(4))
        )  # fmt: skip
    stopped = json.loads((cut / "manifest.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["windows"] == 3
    report = asyncio.run(resume(cut, llm_factory=mind_factory))
    assert report.status == "completed" and report.last_complete_window == 3
    assert rows(cut / "events.db") == rows(coached_fork / "events.db")
    resumed = json.loads((cut / "manifest.json").read_text())
    whole = json.loads((coached_fork / "manifest.json").read_text())
    assert resumed["fork"] == whole["fork"] == stopped["fork"]
    assert resumed["fork"]["phases"] == [
        {"start": 1, "changes": {"coach.enabled": False, "experiment.rounds": 4}}
    ]
    assert resumed["resumed_from"]["last_complete_window"] == 3


def test_a_fork_is_re_run_to_an_identical_log_and_so_is_the_re_run(
    coached_fork: Path, tmp_path: Path
) -> None:
    """``replay --rerun`` of a fork missed the cache in window 2 the same way; now identical,
    and the re-run carries the phases so that it can be re-run in turn."""
    again = asyncio.run(rerun(coached_fork, tmp_path / "again", llm_factory=mind_factory))
    assert again.identical
    third = asyncio.run(rerun(tmp_path / "again", tmp_path / "third", llm_factory=mind_factory))
    assert third.identical
    assert rows(tmp_path / "third" / "events.db") == rows(coached_fork / "events.db")


def test_a_fork_of_a_fork_keeps_its_parents_phases(
    parent: Path, coached_fork: Path, tmp_path: Path
) -> None:
    """Forking the coached fork at window 4 re-derives windows 1-2 without coaching and 3-4
    with it, as they were recorded (under the fork's config alone window 2 asked other
    questions: a cache miss), then switches coaching off again after window 4."""
    out = tmp_path / "grandchild"
    report = asyncio.run(fork(coached_fork, config(rounds=5, agents=4, coach=False),
                              at_window=4, out_dir=out, llm_factory=mind_factory))  # fmt: skip
    assert report.status == "completed" and report.changed == {"coach.enabled": [True, False]}
    old, new = rows(coached_fork / "events.db"), rows(out / "events.db")
    prefix = window_end_seq(old, 4)
    assert new[:prefix] == old[:prefix] and new != old
    phases = json.loads((out / "manifest.json").read_text())["fork"]["phases"]
    assert phases == [
        {"start": 1, "changes": {"experiment.rounds": 4}},
        {"start": 3, "changes": {"coach.enabled": True}},
    ]
    guided = {json.loads(r[4])["window"] for r in new if r[2] == "guidance_issued"}
    assert guided == {2, 3}


def test_a_fork_recorded_before_its_phases_were_is_rebuilt_from_its_changes(
    coached_fork: Path, tmp_path: Path
) -> None:
    """Forks made before the manifest held ``fork.phases`` have their parent's config in
    ``fork.changed``; a re-run rebuilds the parent phase from it."""
    old = tmp_path / "old-fork"
    shutil.copytree(coached_fork, old)
    lineage = json.loads((old / "manifest.json").read_text())["fork"]
    del lineage["phases"]
    amend_manifest(old, fork=lineage)
    assert asyncio.run(rerun(old, tmp_path / "again", llm_factory=mind_factory)).identical


def test_a_fork_whose_lineage_is_broken_is_refused_by_name(
    coached_fork: Path, tmp_path: Path
) -> None:
    """A hand-edited lineage is bad input: exit 2, the manifest's key named, nothing made."""
    broken = tmp_path / "broken"
    shutil.copytree(coached_fork, broken)
    lineage = json.loads((broken / "manifest.json").read_text())["fork"]
    lineage["phases"] = [{"start": 3, "changes": {}}]
    amend_manifest(broken, fork=lineage)
    done = subprocess.run(
        [sys.executable, "-m", "friendsim", "replay", str(broken), "--rerun",
         "--out", str(tmp_path / "again")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"{broken / 'manifest.json'}: 'fork' lineage" in done.stderr
    assert "phases start at windows [3, 3]" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "again").exists()


def test_a_fork_of_a_fork_before_its_fork_window_reports_what_it_changes_there(
    coached_fork: Path, tmp_path: Path
) -> None:
    """Forking the coached fork (coaching on from window 2's guidance) at window 1 with its own
    config switches coaching on a window earlier than the parent did. ``changed`` compares
    with the config the parent ran window 2 under (its first phase, uncoached), not its final
    one: it used to say ``{}``, a fork identical to its parent, for a log that differs."""
    out = tmp_path / "earlier"
    report = asyncio.run(fork(coached_fork, config(rounds=5, agents=4, coach=True),
                              at_window=1, out_dir=out, llm_factory=mind_factory))  # fmt: skip
    assert report.changed == {"coach.enabled": [False, True]}
    lineage = json.loads((out / "manifest.json").read_text())["fork"]
    assert lineage["changed"] == report.changed
    assert lineage["parent_run_dir"] == str(coached_fork) and lineage["fork_window"] == 1
    assert lineage["phases"] == [
        {"start": 1, "changes": {"experiment.rounds": 4, "coach.enabled": False}}
    ]
    guided = {
        json.loads(r[4])["window"] for r in rows(out / "events.db") if r[2] == "guidance_issued"
    }
    assert guided == {1, 2, 3, 4, 5}
    assert guided != {
        json.loads(r[4])["window"]
        for r in rows(coached_fork / "events.db")
        if r[2] == "guidance_issued"
    }
