"""Continuous (timeline) mode: asynchronous heavy-tailed wakes on the virtual clock, shared
snapshots per slice, windows for rewards and coaching, determinism."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr
from test_runtime_support import by_window, event_rows, read_events, run_sim

from friendsim.agents.generator import generate_personas
from friendsim.platform import Platform
from friendsim.runtime.continuous import acquaintances, wake_rates

W = 600.0
TICK = 60.0
CONTENT = {"post_created", "dm_sent", "followed", "unfollowed", "vote_cast", "vote_changed"}


async def test_windows_slices_and_snapshots(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    tallies, spies = await run_sim(
        db, mode="continuous", n_agents=12, n_actions=1, windows=4, window_length=W, tick=TICK,
        ranker="chrono", feed_limit=10, wake_rate=3.0,
    )  # fmt: skip
    events = read_events(db)
    windows = by_window(events)
    assert sorted(windows) == [1, 2, 3, 4]
    for w, in_w in windows.items():
        start, end = in_w[0], in_w[-1]
        assert (start.kind, start.t, start.mode, start.t_end) == (
            "window_started",
            (w - 1) * W,
            "continuous",
            w * W,
        )  # type: ignore[attr-defined]
        assert (end.kind, end.t) == ("window_ended", w * W)
        for e in in_w[1:-1]:
            assert (w - 1) * W <= e.t < w * W
            assert e.t % TICK == 0  # everything happens at slice starts
    # Agents waking in the same slice read the same committed snapshot: all feeds of a slice are
    # served before any of its actions, and no feed shows a post created in its own slice.
    slices: dict[float, list] = defaultdict(list)
    for e in events:
        if e.kind not in ("window_started", "window_ended", "guidance_issued"):
            slices[e.t].append(e)
    created_at = {e.post_id: e.t for e in events if e.kind == "post_created"}  # type: ignore[attr-defined]
    multi = 0
    for t, evs in slices.items():
        kinds = [e.kind for e in evs]
        if "feed_served" not in kinds:
            continue
        last_feed = max(i for i, k in enumerate(kinds) if k == "feed_served")
        first_act = min((i for i, k in enumerate(kinds) if k in CONTENT), default=len(kinds))
        assert last_feed < first_act
        readers = {e.actor for e in evs if e.kind == "feed_served"}
        multi += len(readers) > 1
        for e in evs:
            if e.kind == "feed_served":
                assert all(created_at[p] < t for p in e.post_ids)  # type: ignore[attr-defined]
        # applied in sorted agent order
        actors = [e.actor for e in evs if e.kind in CONTENT]
        assert actors == sorted(actors)
    assert multi > 0, "some slices wake several agents together"
    # Each wake: one observation and exactly n_actions actions or a recorded failure.
    assert sum(t.wakes for t in tallies) == sum(len(s.decisions) for s in spies.values())
    assert sum(t.wakes for t in tallies) == sum(e.kind == "feed_served" for e in events)
    # Timeline verbs are used and rewards/coaching run per window.
    kinds = Counter(e.kind for e in events)
    assert kinds["post_created"] > 0 and kinds["followed"] > 0
    assert kinds["guidance_issued"] == 4 * 12
    assert all(len(t.scores) == 12 for t in tallies)


async def test_continuous_is_deterministic(tmp_path: Path) -> None:
    rows = []
    for i in range(2):
        db = tmp_path / f"r{i}.db"
        await run_sim(db, mode="continuous", n_agents=10, n_actions=2, windows=3, seed=9,
                      window_length=W, tick=TICK, ranker="popularity")  # fmt: skip
        rows.append(event_rows(db))
    assert rows[0] == rows[1] and len(rows[0]) > 50


async def test_more_active_agents_wake_more(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    _, spies = await run_sim(db, mode="continuous", n_agents=30, n_actions=1, windows=6, seed=3,
                             window_length=W, tick=TICK, wake_rate=4.0)  # fmt: skip
    personas = {p.id: p for p in generate_personas(30, seed=3)}
    wakes = {a: len(s.decisions) for a, s in spies.items()}
    ids = sorted(wakes)
    rho = spearmanr([personas[a].activity for a in ids], [wakes[a] for a in ids]).statistic
    assert rho > 0.5
    counts = sorted(wakes.values())
    assert counts[-1] >= 3 * max(
        1, counts[len(counts) // 2]
    )  # heavy tail: the busiest far above the median


def test_wake_rates_mean_and_heterogeneity() -> None:
    agents = [f"a{i:03d}" for i in range(2000)]
    activity = {a: 1.0 for a in agents}
    rng = np.random.default_rng(0)
    rates = wake_rates(
        agents, activity, wake_rate=2.0, window_length=100.0, activity_sigma=1.0, rng=rng
    )
    assert rates.mean() == pytest.approx(0.02, rel=0.1)
    assert rates.max() / np.median(rates) > 5
    flat = wake_rates(
        agents, activity, wake_rate=2.0, window_length=100.0, activity_sigma=0.0, rng=rng
    )
    assert np.allclose(flat, 0.02)


def test_acquaintances_are_seeded_and_exclude_self() -> None:
    agents = [f"a{i:02d}" for i in range(50)]
    a = acquaintances(agents, k=5, seed=1)
    assert a == acquaintances(agents, k=5, seed=1)
    assert a != acquaintances(agents, k=5, seed=2)
    for me, known in a.items():
        assert len(known) == len(set(known)) == 5 and me not in known
    small = acquaintances(["x", "y", "z"], k=5, seed=1)
    assert sorted(small["x"]) == ["y", "z"]


@pytest.mark.parametrize("ranker", ["chrono", "interest"])
async def test_feeds_read_ahead_log_what_serving_one_by_one_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ranker: str
) -> None:
    """The feeds of a slice's agents are read ahead of their turn and their DMs in one query;
    the log is byte-for-byte the one of reading each agent's feed and DMs at its turn."""
    import friendsim.runtime.engine as engine_module

    kw = dict(
        mode="continuous", n_agents=30, n_actions=2, windows=3, window_length=W, tick=TICK,
        ranker=ranker, feed_limit=10, wake_rate=4.0,
    )  # fmt: skip
    await run_sim(tmp_path / "ahead.db", **kw)  # type: ignore[arg-type]
    ahead = event_rows(tmp_path / "ahead.db")
    monkeypatch.setattr(engine_module, "_FEEDS_AHEAD", 1)

    async def dms_one_by_one(
        self: Platform, since: Mapping[str, float], until_t: float
    ) -> dict[str, list[Any]]:
        got = {a: await self.dms_to(a, t, until_t) for a, t in since.items()}
        return {a: dms for a, dms in got.items() if dms}

    monkeypatch.setattr(Platform, "dms_since", dms_one_by_one)
    await run_sim(tmp_path / "one.db", **kw)  # type: ignore[arg-type]
    assert ahead == event_rows(tmp_path / "one.db")
    kinds = Counter(row[2] for row in ahead)
    assert kinds["feed_served"] > 100 and kinds["dm_sent"] > 10 and kinds["post_created"] > 10


async def test_a_stop_is_honoured_inside_a_window_of_many_quiet_slices(tmp_path: Path) -> None:
    """A window of many slices in which nobody wakes never awaited anything, so a signal's
    handler (here a callback of the loop setting the ``stop`` event, as ``friendsim run``'s
    SIGTERM handler sets it) ran only once the window had ended, or never for a tick far below
    a second. The window now yields to the loop every few thousand slices
    and stops there: the run is interrupted inside window 1, and its resume gives the log of a
    run never stopped. Ticks that would make windows without end are refused by the config."""
    import asyncio
    import json
    import sqlite3

    from friendsim.replay.resume import resume
    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.config import ConfigError, parse_config
    from friendsim.runtime.status import RunInterrupted

    data: dict[str, Any] = {
        "experiment": {"name": "q", "seed": 3, "mode": "continuous", "window_length": 3600.0,
                       "duration": 3600.0, "tick": 0.09, "wake_rate": 1e-9},
        "agents": {"count": 3, "policy": "baseline"},
        "coach": {"enabled": False},
    }  # fmt: skip
    cfg = parse_config(data)
    run = tmp_path / "run"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    watching = True

    def stop_once_window_1_started() -> None:
        """A callback of the loop, as the SIGTERM handler is: it runs whenever the loop gets
        control, so it sets ``stop`` at the first turn of the loop after ``WindowStarted`` was
        committed, and inside the quiet window only if the window yields to the loop."""
        if not watching:
            return
        try:
            con = sqlite3.connect(f"file:{run / 'events.db'}?mode=ro", uri=True)
            try:
                if con.execute("SELECT 1 FROM events WHERE kind = 'window_started'").fetchone():
                    stop.set()
                    return
            finally:
                con.close()
        except sqlite3.Error:
            pass
        loop.call_later(0.002, stop_once_window_1_started)

    loop.call_soon(stop_once_window_1_started)
    try:
        with pytest.raises(RunInterrupted):
            await run_experiment(cfg, out_dir=run, stop=stop)
    finally:
        watching = False
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["windows"] == 0
    report = await resume(run)
    assert report.status == "completed"
    await run_experiment(cfg, out_dir=tmp_path / "whole")
    assert event_rows(run / "events.db") == event_rows(tmp_path / "whole" / "events.db")

    for tick in (1e-300, 0.001):
        with pytest.raises(ConfigError, match="slices per window; at most 1,000,000"):
            parse_config({**data, "experiment": {**data["experiment"], "tick": tick}})
    with pytest.raises(ConfigError, match="windows; at most 100,000"):
        parse_config({**data, "experiment": {**data["experiment"], "duration": 1e300}})


async def test_a_negative_seed_runs_and_draws_its_own_stream(tmp_path: Path) -> None:
    """The config takes any integer seed, but a continuous run with ``seed = -1`` failed at its
    start with numpy's "expected non-negative integer". It now runs, the same every time, and
    differently from ``seed = 1``; a seed >= 0 draws exactly the stream it always drew."""
    from friendsim._seed import numpy_entropy
    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.config import parse_config

    def config(seed: int) -> Any:
        return parse_config({
            "experiment": {"name": "n", "seed": seed, "mode": "continuous",
                           "window_length": 3600.0, "duration": 7200.0, "wake_rate": 4.0},
            "agents": {"count": 4, "policy": "baseline"},
        })  # fmt: skip

    logs = {}
    for name, seed in (("a", -1), ("b", -1), ("c", 1)):
        done = await run_experiment(config(seed), out_dir=tmp_path / name)
        assert done.manifest.status == "completed"
        logs[name] = event_rows(tmp_path / name / "events.db")
    assert logs["a"] == logs["b"] and logs["a"] != logs["c"]
    assert numpy_entropy(7, 0x7717) == [7, 0x7717] and numpy_entropy(7) == 7
    assert numpy_entropy(-7, 0x7717) == [7, 0x7717, 1]


class _Population:
    """The part of an engine the scheduler's rates read: the agents and the newcomers'
    activity."""

    def __init__(self, agents: tuple[str, ...]) -> None:
        self.agents = agents
        self.joined_activity: dict[str, float] = {}


def test_newcomers_wake_as_often_as_agents_of_the_same_activity() -> None:
    from friendsim.runtime.continuous import ContinuousScheduler

    engine = _Population(("a", "b"))
    sched = ContinuousScheduler(
        engine,  # type: ignore[arg-type]
        duration=600.0, window_length=100.0, tick=10.0, wake_rate=2.0,
        activity={"a": 2.0, "b": 6.0},
    )  # fmt: skip
    assert sched.rates.tolist() == pytest.approx([0.01, 0.03])  # activity / mean 4, x 2/100
    engine.agents = ("a", "b", "c", "d")
    engine.joined_activity = {"c": 2.0, "d": 6.0}
    sched._grow()
    assert sched.rates.tolist() == pytest.approx([0.01, 0.03, 0.01, 0.03])

    # with an extra lognormal spread, newcomers get it too: as heterogeneous as the first ones
    first = tuple(f"a{i:04d}" for i in range(2000))
    engine = _Population(first)
    sched = ContinuousScheduler(
        engine,  # type: ignore[arg-type]
        duration=600.0, window_length=100.0, tick=10.0, wake_rate=2.0,
        activity=dict.fromkeys(first, 5.0), activity_sigma=1.0, seed=4,
    )  # fmt: skip
    joined = tuple(f"b{i:04d}" for i in range(2000))
    engine.agents = first + joined
    engine.joined_activity = dict.fromkeys(joined, 5.0)
    sched._grow()
    old, new = sched.rates[:2000], sched.rates[2000:]
    assert new.mean() == pytest.approx(0.02, rel=0.1)
    assert new.max() / np.median(new) > 5
    assert np.median(new) == pytest.approx(np.median(old), rel=0.15)
