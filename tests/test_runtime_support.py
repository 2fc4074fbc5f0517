"""Helpers shared by the runtime tests (no tests here): build a real platform + coach service +
engine in a temp dir, with spying policy wrappers, and read the log back."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from friendsim.agents.baseline import make_baseline_policy
from friendsim.agents.generator import generate_personas
from friendsim.agents.llm_policy import make_llm_policy
from friendsim.agents.persona import Persona
from friendsim.analysis.rewards import RewardScorer
from friendsim.analysis.rewards_params import RewardParams
from friendsim.coach.rule import RuleCoach
from friendsim.coach.service import CoachService
from friendsim.llm.base import LLM
from friendsim.platform.clock import VirtualClock
from friendsim.platform.events import Event, event_from_row
from friendsim.platform.feeds import make_ranker
from friendsim.platform.service import Platform
from friendsim.runtime.continuous import ContinuousScheduler, acquaintances
from friendsim.runtime.engine import Engine, FeedRules, WindowTally
from friendsim.runtime.rounds import RoundsScheduler
from friendsim.vocabulary import Ballot, Decision, FeedItem, Observation, Policy


@dataclass
class Spy:
    """Wraps a policy and records what it was asked and what it answered."""

    inner: Policy
    decisions: list[tuple[Observation, Decision | None]] = field(default_factory=list)
    ballots: list[tuple[Observation, tuple[FeedItem, ...], Ballot]] = field(default_factory=list)

    async def decide(self, obs: Observation) -> Decision:
        try:
            d = await self.inner.decide(obs)
        except Exception:
            self.decisions.append((obs, None))  # the policy raised: the runtime records it
            raise
        self.decisions.append((obs, d))
        return d

    async def vote(self, obs: Observation, items: tuple[FeedItem, ...]) -> Ballot:
        b = await self.inner.vote(obs, items)
        self.ballots.append((obs, items, b))
        return b

    def record_outcome(self, window: int, applied: tuple[Any, ...]) -> None:
        self.inner.record_outcome(window, applied)


def baseline_policies(personas: Sequence[Persona], seed: int) -> dict[str, Policy]:
    stances = {p.id: p.stance_score for p in personas}
    return {p.id: make_baseline_policy(p, seed=seed, stances=stances) for p in personas}


def llm_policies(
    personas: Sequence[Persona], llm: LLM, *, n_actions: int, seed: int
) -> dict[str, Policy]:
    return {
        p.id: make_llm_policy(p, llm, theme="climate change", n_actions=n_actions, rng_seed=seed)
        for p in personas
    }


async def run_sim(
    db: Path,
    *,
    n_agents: int = 5,
    seed: int = 1,
    mode: str = "rounds",
    rounds: int = 3,
    n_actions: int = 3,
    make_policies: Callable[[list[Persona]], Mapping[str, Policy]] | None = None,
    coaching: bool = True,
    ranker: str = "full",
    feed_limit: int = 100,
    vote_limit: int | None = None,
    windows: int = 3,
    window_length: float = 600.0,
    tick: float = 60.0,
    wake_rate: float = 3.0,
) -> tuple[list[WindowTally], dict[str, Spy]]:
    """One simulation on a fresh platform at ``db``; returns tallies and the policy spies."""
    personas = generate_personas(n_agents, seed=seed)
    inner = (make_policies or (lambda ps: baseline_policies(ps, seed)))(personas)
    spies = {a: Spy(p) for a, p in inner.items()}
    platform = await Platform.open(db, clock=VirtualClock())
    for p in sorted(personas, key=lambda p: p.id):
        await platform.register_agent(p.id, name=p.name, attributes=dict(p.attributes))
    await platform.flush()
    scorer = RewardScorer(
        params=RewardParams(n_actions=n_actions, sentiment="lexicon"),
        lambdas={p.id: p.lambdas for p in personas},
    )
    service = CoachService(
        platform, scorer=scorer, coach=RuleCoach() if coaching else None, concurrency=8
    )
    await service.start()
    ids = sorted(spies)
    engine = Engine(
        platform=platform,
        policies=spies,
        coach=service,
        theme="climate change",
        n_actions=n_actions,
        feeds=lambda _w: FeedRules(ranker=make_ranker(ranker), limit=feed_limit),
        acquaintances=acquaintances(ids, k=3, seed=seed) if mode == "continuous" else None,
    )
    try:
        if mode == "rounds":
            sched: RoundsScheduler | ContinuousScheduler = RoundsScheduler(
                engine, rounds=rounds, round_length=window_length, vote_limit=vote_limit, seed=seed
            )
        else:
            sched = ContinuousScheduler(
                engine,
                duration=windows * window_length,
                window_length=window_length,
                tick=tick,
                wake_rate=wake_rate,
                activity={p.id: p.activity for p in personas},
                seed=seed,
            )
        tallies = await sched.run()
    finally:
        await service.stop()
        await platform.close()
    return tallies, spies


def event_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT * FROM events ORDER BY seq").fetchall()


def read_events(db: Path) -> list[Event]:
    return [event_from_row(*row) for row in event_rows(db)]


def by_window(events: Sequence[Event]) -> dict[int, list[Event]]:
    """Events grouped by the window they fall in (between WindowStarted and WindowEnded)."""
    out: dict[int, list[Event]] = {}
    current: int | None = None
    for e in events:
        if e.kind == "window_started":
            current = e.window  # type: ignore[attr-defined]
            out[current] = []
        if current is not None:
            out[current].append(e)
        if e.kind == "window_ended":
            current = None
    return out
