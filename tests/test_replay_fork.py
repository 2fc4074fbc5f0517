"""Fork: a new run from the end of window W of an old run, with a changed config."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from test_replay_support import checksums, config, make_run, mind_factory, rows

from friendsim.replay.fork import fork
from friendsim.rundir.errors import RunInputError


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import asyncio

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
