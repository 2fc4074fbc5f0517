"""rewards_table over a real run directory (events.db written by the Platform + manifest.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from friendsim.analysis.rewards import RewardParams, score_log
from friendsim.analysis.rewards_cli import rewards_table, window_means
from friendsim.analysis.rewards_params import RewardConfigError
from friendsim.platform import Platform
from friendsim.platform.events import WindowEnded, WindowStarted


async def make_run(run: Path) -> list:
    async with await Platform.open(run / "events.db") as p:
        for a in ("a", "b", "c"):
            await p.register_agent(a, name=a)
        for w in (1, 2):
            await p.record(WindowStarted(t=0.0, window=w))
            post = await p.create_post("a", text="solar is great", topic="solar", mentions=["b"])
            await p.create_post("b", text="I love it", topic="solar", parent_id=post.post_id)
            await p.send_dm("c", "a", text="terrible take")
            await p.vote("b", post.post_id, 1)
            await p.vote("c", post.post_id, -1 if w == 1 else 1)
            await p.record(WindowEnded(t=0.0, window=w))
        await p.flush()
        return [e async for e in p.events()]


async def test_rewards_table_uses_manifest_lambdas_and_params(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    events = await make_run(run)
    params = RewardParams(beta_soc=0.2, beta_emo=-2.0, sentiment="lexicon")
    lambdas = {"a": {"SOC": 0.5, "EMO": 0.5}}
    (run / "manifest.json").write_text(
        json.dumps({"lambdas": lambdas, "rewards": params.to_dict(), "other": 1})
    )
    rows = rewards_table(run)
    expected = score_log(events, params=params, lambdas=lambdas)
    assert len(rows) == 6
    assert [(r["window"], r["agent"]) for r in rows] == [
        (1, "a"),
        (1, "b"),
        (1, "c"),
        (2, "a"),
        (2, "b"),
        (2, "c"),
    ]
    for r, s in zip(rows, expected, strict=True):
        assert r["total"] == s.total and r["SOC"] == s.components["SOC"]
    a1 = rows[0]
    assert a1["total"] == pytest.approx(0.5 * a1["SOC"] + 0.5 * a1["EMO"])
    # EMO with beta -2: U+ = 1 (b's comment), U- = 1 (c's DM) -> 0.5 * (1 + (1 - 2) / 3)
    assert a1["EMO"] == pytest.approx(0.5 * (1 - 1 / 3))
    assert rewards_table(run / "events.db") == rows
    means = window_means(rows)
    assert [m["window"] for m in means] == [1, 2]
    assert means[0]["PRE"] == pytest.approx(sum(r["PRE"] for r in rows[:3]) / 3)


async def test_rewards_table_defaults_and_errors(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    await make_run(run)
    rows = rewards_table(run)  # no manifest: uniform lambdas, VADER
    assert all(
        r["total"] == pytest.approx(sum(r[c] for c in ("SOC", "INF", "PRE", "COORD", "EMO")) / 5)
        for r in rows
    )
    with pytest.raises(FileNotFoundError, match="no events database"):
        rewards_table(tmp_path / "nowhere")
    (run / "manifest.json").write_text(json.dumps({"rewards": {"beta_x": 1}}))
    with pytest.raises(RewardConfigError, match=r"'rewards'.*beta_x"):
        rewards_table(run)
    (run / "manifest.json").write_text(json.dumps({"lambdas": {"a": {"SOC": 2.0}}}))
    with pytest.raises(RewardConfigError, match="'a' sum to 2"):
        rewards_table(run)
