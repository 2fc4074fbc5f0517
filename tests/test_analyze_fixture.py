"""Run directories built directly with the platform (no runtime), and the analysis over them.

``build_run_dir`` is imported by the report and sweep tests too: it writes a real ``events.db``
through :class:`friendsim.platform.Platform` plus a ``manifest.json`` and ``personas.jsonl`` shaped
like the runtime's, so those tests do not depend on the runtime.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from friendsim.analysis.analyze import (
    ANALYSIS_FILE,
    RunDirectoryError,
    analysis_cache_path,
    analyze_run,
    dominant_policy,
    load_analysis,
)
from friendsim.analysis.rewards_cli import rewards_table
from friendsim.analysis.rewards_params import RewardParams
from friendsim.platform import FullVisibilityRanker, Platform, VirtualClock
from friendsim.platform.events import WindowEnded, WindowStarted

POLICIES = ("SOC", "INF", "PRE", "COORD", "EMO")
TOPICS = ("heat waves", "carbon tax", "wind power", "flooding", "electric cars")
WORDS = ("great point, thanks", "I love this idea", "this is wrong and awful", "interesting", "hmm")


def lambdas_for(dominant: str) -> dict[str, float]:
    return {c: (0.6 if c == dominant else 0.1) for c in POLICIES}


async def _simulate(db: Path, *, agents: list[str], windows: int, seed: int, busy: float) -> None:
    rng = random.Random(seed)
    clock = VirtualClock()
    platform = await Platform.open(db, clock=clock)
    ranker = FullVisibilityRanker()
    try:
        for i, a in enumerate(agents):
            attrs = {"group": f"g{i % 2}", "dominant": POLICIES[i % len(POLICIES)]}
            await platform.register_agent(a, name=f"Agent {a}", attributes=attrs)
        for w in range(1, windows + 1):
            start = (w - 1) * 3600.0
            clock.advance_to(start)
            await platform.record(WindowStarted(t=0.0, window=w, t_end=start + 3600.0))
            await platform.flush()
            for a in agents:
                await platform.serve_feed(
                    a, ranker, limit=50, since_t=start - 3600.0, until_t=start
                )
            posts: list[tuple[int, str]] = []
            for a in agents:
                clock.advance_to(clock.now() + 1.0)
                topic = TOPICS[rng.randrange(len(TOPICS))]
                p = await platform.create_post(a, text=f"{a} on {topic}", topic=topic)
                posts.append((p.post_id, a))
            for a in agents:
                for pid, author in posts:
                    if author == a:
                        continue
                    clock.advance_to(clock.now() + 1.0)
                    r = rng.random()
                    if r < 0.25 * busy:
                        await platform.create_post(
                            a,
                            text=WORDS[rng.randrange(len(WORDS))],
                            topic=TOPICS[rng.randrange(len(TOPICS))],
                            parent_id=pid,
                            mentions=(author,) if rng.random() < 0.3 else (),
                        )
                    if rng.random() < 0.15 * busy:
                        await platform.send_dm(
                            a, author, text=WORDS[rng.randrange(len(WORDS))], topic="chat"
                        )
                    vote = rng.choice((1, 1, 1, 0, -1)) if rng.random() < 0.6 else 0
                    if vote:
                        await platform.vote(a, pid, vote)
            clock.advance_to(start + 3599.0)
            await platform.record(WindowEnded(t=0.0, window=w))
            await platform.flush()
    finally:
        await platform.close()


def build_run_dir(
    path: Path,
    *,
    seed: int = 0,
    n_agents: int = 8,
    windows: int = 3,
    coach: bool = True,
    cost_usd: float = 0.0123,
    model: str = "scripted:fixture",
    manifest: bool = True,
) -> Path:
    """A small finished run directory at ``path`` (deterministic in ``seed``)."""
    path.mkdir(parents=True, exist_ok=True)
    agents = [f"a{i:02d}" for i in range(n_agents)]
    busy = 1.6 if coach else 1.0
    asyncio.run(_simulate(path / "events.db", agents=agents, windows=windows, seed=seed, busy=busy))
    dominant = {a: POLICIES[i % len(POLICIES)] for i, a in enumerate(agents)}
    with (path / "personas.jsonl").open("w", encoding="utf-8") as fh:
        for i, a in enumerate(agents):
            row = {
                "id": a,
                "name": f"Agent {a}",
                "dominant": dominant[a],
                "lambdas": lambdas_for(dominant[a]),
                "attributes": {"group": f"g{i % 2}", "stance_group": ("pro", "con", "mid")[i % 3]},
            }
            fh.write(json.dumps(row) + "\n")
    if manifest:
        body: dict[str, Any] = {
            "name": "fixture",
            "status": "completed",
            "mode": "rounds",
            "policy": "llm",
            "config": {
                "experiment": {"name": "fixture", "seed": seed, "rounds": windows, "n_actions": 3},
                "coach": {"enabled": coach, "kind": "rule"},
                "feed": {"ranker": "full"},
            },
            "seeds": {"seed": seed},
            "models": {a: model for a in agents},
            "lambdas": {a: lambdas_for(dominant[a]) for a in agents},
            "dominant": dominant,
            "rewards": RewardParams(sentiment="lexicon").to_dict(),
            "ties": {
                "xi": 0.05,
                "delta_max": 0.2,
                "half_life": 3.0,
                "beta_rec": 0.5,
                "eps": 1e-9,
                "evidence": "signals",
                "thresholds": [0.05, 0.1],
            },
            "llm_usage": {
                "total": {
                    "calls": 40,
                    "cache_hits": 2,
                    "errors": 0,
                    "input_tokens": 12000,
                    "output_tokens": 3000,
                    "cost_usd": cost_usd,
                },
                "by_key": [
                    {
                        "provider": "scripted",
                        "model": "fixture",
                        "label": "plan",
                        "calls": 40,
                        "input_tokens": 12000,
                        "output_tokens": 3000,
                        "cost_usd": cost_usd,
                    }
                ],
                "unpriced_models": [],
            },
            "wall_seconds": 1.5 + seed % 3,
            "totals": {"actions": 10 * windows},
        }
        (path / "manifest.json").write_text(json.dumps(body), encoding="utf-8")
    return path


async def _tiny(db: Path) -> None:
    clock = VirtualClock()
    p = await Platform.open(db, clock=clock)
    for a in ("a", "b", "c"):
        await p.register_agent(a, name=a)
    await p.record(WindowStarted(t=0.0, window=1))
    clock.advance_to(1.0)
    post = await p.create_post("a", text="hello world", topic="heat")
    clock.advance_to(2.0)
    await p.create_post("b", text="nice", topic="heat", parent_id=post.post_id)
    clock.advance_to(3.0)
    await p.send_dm("c", "a", text="hi", topic="heat")
    clock.advance_to(4.0)
    await p.record(WindowEnded(t=0.0, window=1))
    await p.close()


def test_rewards_follow_the_hand_computed_values(tmp_path: Path) -> None:
    # a posts; b comments on it; c DMs a. B_dir = 2 items, N = 3, beta_soc = 0.5:
    # SOC(a) = 0.5*0/3 + 0.5*2/2 = 0.5; SOC(b) = SOC(c) = 0.5*1/3 + 0 = 1/6.
    run = tmp_path / "tiny"
    run.mkdir()
    asyncio.run(_tiny(run / "events.db"))
    lam = {"a": lambdas_for("SOC"), "b": lambdas_for("SOC"), "c": lambdas_for("EMO")}
    (run / "manifest.json").write_text(
        json.dumps(
            {
                "lambdas": lam,
                "rewards": RewardParams(sentiment="lexicon").to_dict(),
                "seeds": {"seed": 1},
            }
        )
    )
    a = analyze_run(run)
    rows = {r["agent"]: r for r in a["rewards"]["per_agent"]}
    assert rows["a"]["window"] == 1
    assert math.isclose(rows["a"]["SOC"], 0.5)
    assert math.isclose(rows["b"]["SOC"], 1 / 6)
    assert math.isclose(rows["c"]["SOC"], 1 / 6)
    soc = a["rewards"]["by_policy"]["SOC"]
    assert soc[0]["agents"] == 2
    assert math.isclose(soc[0]["total"], (rows["a"]["total"] + rows["b"]["total"]) / 2)
    assert a["rewards"]["by_policy"]["EMO"][0]["total_sd"] is None  # one agent: no sd
    assert a["agents"]["c"]["dominant"] == "EMO"
    # c DMed a and b commented on a: both ties are active; the interaction graph has 2 edges
    assert a["network"]["interaction"]["final"]["edges"] == 2


def test_analysis_of_a_fixture_run_is_complete_and_strict_json(tmp_path: Path) -> None:
    run = build_run_dir(tmp_path / "run", seed=3, windows=3)
    a = analyze_run(run)
    text = json.dumps(a, allow_nan=False)  # strict JSON: no NaN/inf anywhere
    assert json.loads(text)["kind"] == "run"
    assert a["rewards"]["windows"] == [1, 2, 3]
    assert len(a["rewards"]["per_agent"]) == 8 * 3
    assert set(a["rewards"]["by_policy"]) == set(POLICIES)
    for pol, series in a["rewards"]["by_policy"].items():
        for row in series:
            mine = [
                r["total"]
                for r in a["rewards"]["per_agent"]
                if r["window"] == row["window"] and a["agents"][r["agent"]]["dominant"] == pol
            ]
            assert math.isclose(row["total"], sum(mine) / len(mine))
    assert a["usage"]["total"]["cost_usd"] == pytest.approx(0.0123)
    assert a["manifest"]["models"] == {"scripted:fixture": 8}
    assert a["manifest"]["coach"]["enabled"] is True
    assert set(a["reference"]["by_theta"]) == {"0.05", "0.1"}
    for th, flags in a["reference"]["by_theta"].items():
        for metric, f in flags.items():
            if f["value"] is not None:
                assert f["inside"] == (f["min"] <= f["value"] <= f["max"]), (th, metric)
    assert a["agents"]["a01"]["attributes"]["stance_group"] == "con"
    assert a["agents"]["a01"]["attributes"]["group"] == "g1"


def test_missing_and_broken_inputs_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RunDirectoryError, match=r"no events\.db"):
        analyze_run(tmp_path)
    run = build_run_dir(tmp_path / "nomanifest", windows=1, n_agents=4, manifest=False)
    a = analyze_run(run)
    assert any("no manifest.json" in n for n in a["notes"])
    assert a["manifest"]["status"] == "unknown"
    (run / "manifest.json").write_text("{not json")
    with pytest.raises(RunDirectoryError, match=r"manifest\.json"):
        analyze_run(run)
    (run / "manifest.json").write_text(json.dumps({"ties": {"half_life": -1}}))
    with pytest.raises(RunDirectoryError, match="ties"):
        analyze_run(run)


def test_analysis_cache_is_reused_then_invalidated(tmp_path: Path) -> None:
    run = build_run_dir(tmp_path / "run", windows=2, n_agents=5)
    first = load_analysis(run)
    cache = analysis_cache_path(run)
    assert not (run / ANALYSIS_FILE).exists()  # never inside the run
    stamp = cache.stat().st_mtime_ns
    assert load_analysis(run) == first
    assert cache.stat().st_mtime_ns == stamp  # served from the cache
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["llm_usage"]["total"]["cost_usd"] = 9.5
    (run / "manifest.json").write_text(json.dumps(manifest))
    again = load_analysis(run)
    assert again["usage"]["total"]["cost_usd"] == 9.5


def test_dominant_policy_needs_a_strict_maximum() -> None:
    assert dominant_policy(lambdas_for("COORD")) == "COORD"
    assert dominant_policy({c: 0.2 for c in POLICIES}) == "mixed"
    assert dominant_policy(None) == "mixed"


def test_the_analysis_reads_the_manifest_by_the_run_directory_s_rules(tmp_path: Path) -> None:
    """The analysis, the rewards table and the live view read ``manifest.json`` through the run
    directory's one reader: a manifest written by a newer friendsim is refused as resume and
    verify refuse it (it used to be read as if it were this version's), a key of the wrong type
    is named, and a key the file does not hold is not reported as the typed view's default."""
    from friendsim.rundir.errors import ManifestError
    from friendsim.serve.digest import RunDigest

    run = build_run_dir(tmp_path / "run", windows=1, n_agents=4)
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "manifest_version": 99}))
    with pytest.raises(RunDirectoryError, match="newer friendsim"):
        analyze_run(run)
    with pytest.raises(ManifestError, match="newer friendsim"):
        rewards_table(run)
    with pytest.raises(RunDirectoryError, match="newer friendsim"):
        RunDigest(run).info()
    (run / "manifest.json").write_text(json.dumps({**manifest, "lambdas": [1, 2]}))
    with pytest.raises(RunDirectoryError, match="manifest key lambdas"):
        analyze_run(run)
    bare = {k: v for k, v in manifest.items() if k not in {"status", "mode", "name", "policy"}}
    (run / "manifest.json").write_text(json.dumps({**bare, "manifest_version": 2}))
    summary = analyze_run(run)["manifest"]
    assert summary["status"] == "unknown" and summary["policy"] is None
    assert summary["mode"] == (manifest.get("config") or {}).get("experiment", {}).get("mode")


def test_personas_whose_text_holds_unicode_line_breaks_are_read_by_the_analysis(
    tmp_path: Path,
) -> None:
    """A persona name with U+2028, U+2029 or U+0085 passes validation and runs, and the run
    writes it raw (JSON allows it inside strings). The analysis split ``personas.jsonl`` with
    ``str.splitlines``, which also breaks on those, so analyze and report failed on the run
    with "not valid JSON"; lines are split on ``\\n`` only now, as they are written."""
    import subprocess
    import sys

    from friendsim.analysis.analyze import analyze_run

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "friendsim", *args],
            capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
        )  # fmt: skip

    assert (
        cli("personas", "generate", "--n", "3", "--seed", "1", "--out", "p.jsonl").returncode == 0
    )
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text(encoding="utf-8").split("\n")
            if x.strip()]  # fmt: skip
    rows[0]["name"] = "Ann\u2028Lee\u2029Roe\u0085Ng"
    (tmp_path / "p.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    assert cli("personas", "validate", "p.jsonl").returncode == 0
    (tmp_path / "c.toml").write_text(
        '[experiment]\nname = "ls"\nseed = 1\nrounds = 1\nn_actions = 1\n'
        '[agents]\ncount = 3\npolicy = "baseline"\npersonas = "p.jsonl"\n'
    )
    done = cli("run", "c.toml", "--out", "run", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "\u2028" in (tmp_path / "run" / "personas.jsonl").read_text(encoding="utf-8")
    analysis = analyze_run(tmp_path / "run")
    assert sorted(analysis["agents"]) == sorted(r["id"] for r in rows)
    report = cli("report", "run")
    assert report.returncode == 0, report.stderr
