"""Applying a wake's answers while later ones are still outstanding (an ordered prefix).

The engine applies each agent's decision or ballot as soon as it and every answer before it in
sorted agent order have arrived. These tests check that the log does not depend on the order the
answers arrive in (model latencies that differ per agent, in both directions), that application
really overlaps the outstanding requests, that an answer lost to the LLM layer is not applied
before the whole wake has arrived, and that a stop mid-wake leaves exactly an ordered prefix."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from test_runtime_support import event_rows, llm_policies, run_sim

from friendsim.analysis.rewards import AgentScores
from friendsim.llm.base import Completion, LLMRequest
from friendsim.llm.errors import ServerError
from friendsim.llm.scripted import ScriptedLLM
from friendsim.platform.clock import VirtualClock
from friendsim.platform.feeds import make_ranker
from friendsim.platform.service import Platform
from friendsim.runtime.engine import Engine, FeedRules, RunInterrupted, WindowTally
from friendsim.runtime.observe import feed_item
from friendsim.runtime.scripted_mind import plausible_responder
from friendsim.vocabulary import Action, Ballot, Decision, FeedItem, Observation, Tip


class Staggered:
    """An LLM whose latency depends on the agent: ``delay[agent]`` seconds, then the mind."""

    def __init__(self, delay: Mapping[str, float]) -> None:
        self.inner = ScriptedLLM(plausible_responder(0), model="mind")
        self.delay = delay
        self.order: list[str] = []

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: LLMRequest) -> Completion:
        await asyncio.sleep(self.delay.get(request.agent or "", 0.0))
        self.order.append(request.agent or "")
        return await self.inner.complete(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


AGENTS = 6


def _delays(direction: str) -> dict[str, float]:
    ids = [f"a{i:02d}" for i in range(AGENTS)]  # the generator's ids, sorted
    if direction == "none":
        return {}
    step = 0.004
    ranks = range(AGENTS) if direction == "forward" else range(AGENTS - 1, -1, -1)
    return {a: step * (1 + r) for a, r in zip(ids, ranks, strict=True)}


@pytest.mark.parametrize("mode", ["rounds", "continuous"])
async def test_the_log_does_not_depend_on_the_order_answers_arrive_in(
    tmp_path: Path, mode: str
) -> None:
    logs: dict[str, list[tuple[Any, ...]]] = {}
    arrivals: dict[str, list[str]] = {}
    for direction in ("none", "forward", "reverse"):
        llm = Staggered(_delays(direction))
        db = tmp_path / f"{direction}.db"
        await run_sim(
            db,
            n_agents=AGENTS,
            seed=3,
            mode=mode,
            rounds=2,
            windows=2,
            n_actions=2,
            make_policies=lambda ps, llm=llm: llm_policies(ps, llm, n_actions=2, seed=3),
        )
        logs[direction] = event_rows(db)
        arrivals[direction] = llm.order
    kinds = [row[2] for row in logs["none"]]
    assert "post_created" in kinds
    if mode == "rounds":
        assert kinds.count("vote_cast") > 10
    # the answers did arrive in different orders ...
    assert arrivals["forward"] != arrivals["reverse"]
    rev = arrivals["reverse"]
    assert any(x > y for x, y in itertools.pairwise(rev))  # later agents answered first
    # ... and the logs are byte-identical
    assert logs["forward"] == logs["none"]
    assert logs["reverse"] == logs["none"]


# --- the engine, driven by hand ------------------------------------------------------------


class NoCoach:
    async def window_done(self, window: int) -> Mapping[str, AgentScores]:
        return {}

    def coaching(self, window: int) -> bool:
        return False

    def latest_guidance(self, agent: str) -> tuple[Tip, ...]:
        return ()

    def last_scores(self, agent: str) -> AgentScores | None:
        return None

    def best_scores(self, agent: str) -> AgentScores | None:
        return None


class Gated:
    """Answers only when its gate is opened: likes every item, or raises ``fail``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.fail: BaseException | None = None
        self.cancelled = False
        self.asked = False

    async def decide(self, obs: Observation) -> Decision:
        self.asked = True
        await self._wait()
        return Decision(actions=(Action(type="POST", topic="t", text=f"by {obs.agent_id}"),))

    async def vote(self, obs: Observation, items: tuple[FeedItem, ...]) -> Ballot:
        await self._wait()
        return Ballot(votes={i.post_id: 1 for i in items})

    async def _wait(self) -> None:
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.fail is not None:
            raise self.fail

    def record_outcome(self, window: int, applied: tuple[Action, ...]) -> None:
        return None


VOTERS = ("a", "b", "c")


async def _engine(
    db: Path, stop: asyncio.Event | None = None
) -> tuple[Platform, Engine, dict[str, Gated], dict[str, Observation], tuple[FeedItem, ...]]:
    platform = await Platform.open(db, clock=VirtualClock())
    for agent in (*VOTERS, "z"):
        await platform.register_agent(agent, name=agent)
    for k in range(2):
        await platform.create_post("z", text=f"post {k}", topic="t")
    await platform.flush()
    policies = {a: Gated() for a in VOTERS}
    engine = Engine(
        platform=platform,
        policies=policies,
        coach=NoCoach(),
        theme="t",
        n_actions=1,
        feeds=lambda _w: FeedRules(ranker=make_ranker("chrono"), limit=10),
        stop=stop,
    )
    items = tuple(feed_item(v) for v in await platform.posts_between(0.0, 1.0))
    assert len(items) == 2
    obs = {
        a: await engine.observe(a, window=1, allowed=("POST",), feed=(), inbox=()) for a in VOTERS
    }
    return platform, engine, policies, obs, items


async def _settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


def _actors(db: Path, after: int) -> list[tuple[str, str]]:
    return [(row[2], row[3]) for row in event_rows(db) if row[0] > after]


async def test_a_ballot_is_cast_as_soon_as_those_before_it_are_in(tmp_path: Path) -> None:
    platform, engine, gated, obs, items = await _engine(tmp_path / "e.db")
    base = platform.last_seq
    tally = WindowTally(window=1)
    phase = asyncio.ensure_future(engine.vote_and_apply(obs, {a: items for a in VOTERS}, tally))
    try:
        await _settle()
        assert platform.last_seq == base
        gated["b"].gate.set()  # b is in, but a (before it) is not: nothing is cast yet
        await _settle()
        assert platform.last_seq == base
        gated["a"].gate.set()  # a and b form a prefix: both are cast, c still outstanding
        await _settle()
        assert platform.last_seq == base + 4 and not phase.done()
        gated["c"].gate.set()
        await phase
    finally:
        await platform.close()
    assert platform.last_seq == base + 6
    assert _actors(tmp_path / "e.db", base) == [("vote_cast", a) for a in VOTERS for _ in items]
    assert tally.votes == 6 and tally.llm_asked == 3 and tally.llm_failures == 0


async def test_an_answer_lost_to_the_llm_layer_waits_for_the_whole_wake(tmp_path: Path) -> None:
    platform, engine, gated, obs, items = await _engine(tmp_path / "e.db")
    base = platform.last_seq
    tally = WindowTally(window=1)
    gated["b"].fail = ServerError("down")
    phase = asyncio.ensure_future(engine.vote_and_apply(obs, {a: items for a in VOTERS}, tally))
    try:
        gated["a"].gate.set()
        gated["b"].gate.set()
        await _settle()
        assert platform.last_seq == base + 2  # a is cast; b's failure is held back
        assert not phase.done()
        gated["c"].gate.set()
        await phase
    finally:
        await platform.close()
    assert _actors(tmp_path / "e.db", base) == [
        ("vote_cast", "a"),
        ("vote_cast", "a"),
        ("action_failed", "b"),
        ("vote_cast", "c"),
        ("vote_cast", "c"),
    ]
    assert tally.llm_failures == 1


@pytest.mark.parametrize("phase_kind", ["vote", "decide"])
async def test_a_stop_mid_wake_leaves_an_ordered_prefix(tmp_path: Path, phase_kind: str) -> None:
    stop = asyncio.Event()
    platform, engine, gated, obs, items = await _engine(tmp_path / "e.db", stop)
    base = platform.last_seq
    tally = WindowTally(window=1)
    if phase_kind == "vote":
        phase = asyncio.ensure_future(engine.vote_and_apply(obs, {a: items for a in VOTERS}, tally))
    else:
        phase = asyncio.ensure_future(engine.decide_and_apply(obs, tally))
    try:
        gated["a"].gate.set()
        gated["c"].gate.set()  # in, but not part of the prefix (b is outstanding)
        await _settle()
        stop.set()
        with pytest.raises(RunInterrupted):
            await phase
        assert gated["b"].cancelled
        await platform.flush()
    finally:
        await platform.close()
    want = [("vote_cast", "a")] * len(items) if phase_kind == "vote" else [("post_created", "a")]
    assert _actors(tmp_path / "e.db", base) == want


async def test_decisions_are_asked_while_later_observations_are_built(tmp_path: Path) -> None:
    """``observe_and_decide``: an agent's decision is asked as soon as its observation is
    built, but nothing is applied before the last observation is built (one snapshot)."""
    platform, engine, gated, obs, _ = await _engine(tmp_path / "e.db")
    base = platform.last_seq
    tally = WindowTally(window=1)
    last_built = asyncio.Event()
    moved: list[int] = []

    async def observe(agent: str) -> Observation:
        if agent == VOTERS[-1]:
            await last_built.wait()
        return obs[agent]

    wake = asyncio.ensure_future(
        engine.observe_and_decide(
            VOTERS, observe, tally, before_apply=lambda: moved.append(platform.last_seq)
        )
    )
    try:
        gated["a"].gate.set()
        gated["b"].gate.set()
        await _settle()
        assert gated["a"].asked and gated["b"].asked and not gated["c"].asked
        assert platform.last_seq == base and not moved  # a and b are in, but c is not built
        last_built.set()
        await _settle()
        assert gated["c"].asked and moved == [base]
        assert platform.last_seq == base + 2 and not wake.done()  # a and b applied, c asked
        gated["c"].gate.set()
        assert sorted(await wake) == list(VOTERS)
    finally:
        await platform.close()
    assert _actors(tmp_path / "e.db", base) == [("post_created", a) for a in VOTERS]
    assert tally.wakes == 3


async def test_an_observation_that_fails_cancels_the_decisions_already_asked(
    tmp_path: Path,
) -> None:
    platform, engine, gated, obs, _ = await _engine(tmp_path / "e.db")
    base = platform.last_seq

    async def observe(agent: str) -> Observation:
        if agent == VOTERS[-1]:
            await _settle()  # a's and b's decisions are being made meanwhile
            assert gated["a"].asked and gated["b"].asked
            raise RuntimeError("feed unavailable")
        return obs[agent]

    try:
        with pytest.raises(RuntimeError, match="feed unavailable"):
            await engine.observe_and_decide(VOTERS, observe, WindowTally(window=1))
        assert gated["a"].cancelled and gated["b"].cancelled
        assert platform.last_seq == base
    finally:
        await platform.close()


class Chunked:
    """Votes like :class:`~friendsim.agents.llm_policy.LLMPolicy`: some work of its own first,
    then its requests as tasks of their own (``sent`` when one starts), then the ballot."""

    def __init__(self, agent: str, trace: list[tuple[str, str]]) -> None:
        self.agent = agent
        self.trace = trace

    async def decide(self, obs: Observation) -> Decision:
        return Decision()

    async def vote(self, obs: Observation, items: tuple[FeedItem, ...]) -> Ballot:
        self.trace.append(("started", self.agent))

        async def request() -> dict[int, int]:
            self.trace.append(("sent", self.agent))
            await asyncio.sleep(0)
            return {i.post_id: 1 for i in items}

        return Ballot(votes=await asyncio.ensure_future(request()))

    def record_outcome(self, window: int, applied: tuple[Action, ...]) -> None:
        return None


async def test_the_first_requests_go_out_while_later_voters_start(tmp_path: Path) -> None:
    """A phase starts its policies' coroutines a batch at a time: the first voter's request is
    sent before the last voter has started (not after every voter's own set-up work), and the
    ballots are still cast in agent order."""
    voters = [f"v{i:02d}" for i in range(40)]
    trace: list[tuple[str, str]] = []
    platform = await Platform.open(tmp_path / "e.db", clock=VirtualClock())
    try:
        for agent in (*voters, "z"):
            await platform.register_agent(agent, name=agent)
        await platform.create_post("z", text="post", topic="t")
        await platform.flush()
        base = platform.last_seq
        engine = Engine(
            platform=platform,
            policies={a: Chunked(a, trace) for a in voters},
            coach=NoCoach(),
            theme="t",
            n_actions=1,
            feeds=lambda _w: FeedRules(ranker=make_ranker("chrono"), limit=10),
        )
        items = tuple(feed_item(v) for v in await platform.posts_between(0.0, 1.0))
        obs = {
            a: await engine.observe(a, window=1, allowed=("POST",), feed=(), inbox=())
            for a in voters
        }
        tally = WindowTally(window=1)
        await engine.vote_and_apply(obs, {a: items for a in voters}, tally)
        await platform.flush()
    finally:
        await platform.close()
    assert trace.index(("sent", voters[0])) < trace.index(("started", voters[-1]))
    assert sorted(trace) == sorted([(s, a) for a in voters for s in ("started", "sent")])
    assert _actors(tmp_path / "e.db", base) == [("vote_cast", a) for a in voters]
    assert tally.votes == len(voters)


class CountedFuture(asyncio.Future[int]):
    """A future that counts the completion callbacks hooked on it."""

    hooked = 0

    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        self.hooked += 1
        super().add_done_callback(fn, context=context)


async def test_following_many_answers_hooks_each_once(tmp_path: Path) -> None:
    """Each answer is followed by one completion callback (and the final gather's), whatever
    the number outstanding: hooking every pending one at each wake-up made a 1,000-agent slice
    quadratic. Answers that arrive last-first are still applied first-first."""
    stop = asyncio.Event()
    platform, engine, _, _, _ = await _engine(tmp_path / "e.db", stop)
    futures = [CountedFuture() for _ in range(60)]
    applied: list[tuple[int, int]] = []

    async def apply(i: int, answer: int) -> None:
        applied.append((i, answer))

    try:
        phase = asyncio.ensure_future(
            engine._gather_applying(futures, apply, held=lambda _i, _a: False)
        )
        for k, fut in reversed(list(enumerate(futures))):
            await _settle()
            assert applied == []  # the first answer is still outstanding
            fut.set_result(k * 10)
        answers = await phase
    finally:
        await platform.close()
    assert answers == [k * 10 for k in range(60)]
    assert applied == [(k, k * 10) for k in range(60)]
    assert max(f.hooked for f in futures) <= 2


async def test_agents_joining_together_are_added_whole_or_not_at_all(tmp_path: Path) -> None:
    """``add_agents`` (an intervention growing the population by many at once): the population
    stays sorted with every newcomer's policy, activity and context; a batch naming an agent
    already there, or one agent twice, is refused before anything changes."""
    platform = await Platform.open(tmp_path / "e.db", clock=VirtualClock())
    try:
        engine = Engine(
            platform=platform,
            policies={"b": Gated(), "d": Gated()},
            coach=NoCoach(),
            theme="t",
            n_actions=1,
            feeds=lambda _w: FeedRules(ranker=make_ranker("chrono"), limit=10),
        )
        newcomer = Gated()
        engine.add_agents([("c", Gated(), 1.0), ("a", newcomer, 2.5)])
        assert engine.agents == ("a", "b", "c", "d")
        assert engine.policies["a"] is newcomer and engine.joined_activity["a"] == 2.5
        assert engine.contexts["c"].agent_id == "c"
        for bad in ([("e", Gated(), 1.0), ("b", Gated(), 1.0)], [("e", Gated(), 1.0)] * 2):
            with pytest.raises(ValueError):
                engine.add_agents(bad)
            assert engine.agents == ("a", "b", "c", "d") and "e" not in engine.policies
    finally:
        await platform.close()
