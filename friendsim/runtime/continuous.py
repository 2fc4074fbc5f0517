"""Continuous (timeline) mode: agents wake asynchronously on the virtual clock.

Each agent wakes as a Poisson process with its own rate: ``wake_rate`` (mean wakes per agent per
window) × the persona's relative ``activity`` (normalised to mean 1) × an optional extra
lognormal factor (``activity_sigma``; mean 1), so rates are heterogeneous and heavy-tailed. Time
is cut into slices of ``tick`` seconds; in every slice the number of wakes of every agent is drawn
from one seeded ``numpy`` Generator (Poisson with mean rate × slice). Agents that wake in the same
slice act together at the slice's start time: the platform is flushed, each reads its ranked
timeline (``serve_feed`` with the configured ranker, logged) and the DMs it got since its last
wake, all decide concurrently, and the decisions are applied sorted by agent id. The slice's DMs are read in one query and its feeds a few agents
ahead of their turn (:mod:`friendsim.runtime.ahead`), so building the observations does not
wait for one database round trip per agent; each feed is logged at its agent's turn, so the log
is the one of reading them one after the other. Any action of :data:`TIMELINE_ACTIONS` is allowed.

Several wakes of an agent in one slice count as one: an agent expected to wake λ = rate × tick
times in a slice acts in it with probability 1 − e^(−λ), so a coarse ``tick`` drops wakes, most
of all the most active agents'. :func:`~friendsim.runtime.wakes.expected_wakes` counts what the
slices keep (the wake model, :mod:`friendsim.runtime.wakes`, whose names are re-exported here); the
scheduler hands its figures to the run listener's ``wakes_expected`` before the first window
(``friendsim run`` warns, ``--estimate`` shows them). The draws themselves are untouched.

Windows of ``window_length`` seconds bracket the slices (``WindowStarted``/``WindowEnded``; the
last one is cut at ``duration``); at each window end the runtime awaits
``coach.window_done(w)`` (rewards and guidance) before the next window, as in rounds mode.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
from collections.abc import Mapping, Sequence

import numpy as np

from friendsim._seed import numpy_entropy
from friendsim.platform.events import WindowEnded, WindowStarted
from friendsim.runtime.engine import Engine, WindowTally
from friendsim.runtime.wakes import (
    LOST_WAKES_WARNING,
    TOP_LOST_WAKES_WARNING,
    ExpectedWakes,
    expected_wakes,
    loses_wakes,
    lost_wakes_line,
    wake_rates,
)
from friendsim.vocabulary import TIMELINE_ACTIONS, ActionType, Observation

__all__ = [
    "ACQUAINTANCES",
    "LOST_WAKES_WARNING",
    "TOP_LOST_WAKES_WARNING",
    "ContinuousScheduler",
    "ExpectedWakes",
    "acquaintances",
    "acquaintances_of",
    "expected_wakes",
    "loses_wakes",
    "lost_wakes_line",
    "wake_rates",
]

_YIELD_EVERY = 4096
"""Slices between two yields to the event loop inside a window (a signal's handler runs there)."""


ACQUAINTANCES = 10
"""How many other agents each agent knows of before reading anything (:func:`acquaintances`);
an agent that joins during a run draws as many from the grown population."""


def acquaintances(agents: Sequence[str], *, k: int, seed: int) -> dict[str, list[str]]:
    """A seeded sample of ``k`` other agents per agent: whom it knows of before reading anything.

    Without it a chrono feed of an agent that follows nobody is empty, and so is its known-user
    list: nobody could ever make the first follow. Each agent's sample has its own generator
    (:func:`acquaintances_of`), so one agent's can be drawn alone, when it first wakes.
    """
    return {a: acquaintances_of(a, agents, k=k, seed=seed) for a in agents}


def acquaintances_of(agent: str, agents: Sequence[str], *, k: int, seed: int) -> list[str]:
    """``agent``'s entry of :func:`acquaintances` (``agents``: the whole population, sorted)."""
    rng = random.Random(f"{seed}:acq:{agent}")
    n = len(agents)
    if n - 1 <= 2 * k:
        others = [b for b in agents if b != agent]
        return rng.sample(others, min(k, len(others)))
    picked: dict[str, None] = {}
    while len(picked) < k:
        b = agents[rng.randrange(n)]
        if b != agent:
            picked[b] = None
    return list(picked)


class ContinuousScheduler:
    """Runs the timeline for ``duration`` virtual seconds."""

    allowed: tuple[ActionType, ...] = TIMELINE_ACTIONS

    def __init__(
        self,
        engine: Engine,
        *,
        duration: float,
        window_length: float,
        tick: float,
        wake_rate: float,
        activity: Mapping[str, float],
        activity_sigma: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not (duration > 0 and window_length > 0 and 0 < tick <= window_length):
            raise ValueError(
                f"need duration > 0, window_length > 0 and 0 < tick <= window_length "
                f"(got {duration}, {window_length}, {tick})"
            )
        self.engine = engine
        self.duration = float(duration)
        self.window_length = float(window_length)
        self.tick = float(tick)
        self.rng = np.random.default_rng(numpy_entropy(seed, 0x7717))
        self._seed = seed
        self._base_rate = wake_rate / window_length
        self._mean_activity = float(np.mean([float(activity.get(a, 1.0)) for a in engine.agents]))
        self._activity_sigma = activity_sigma
        self.rates = wake_rates(
            engine.agents,
            activity,
            wake_rate=wake_rate,
            window_length=window_length,
            activity_sigma=activity_sigma,
            rng=self.rng,
        )
        self.last_wake: dict[str, float] = dict.fromkeys(engine.agents, 0.0)
        self._order: tuple[str, ...] = engine.agents
        self.reports: list[WindowTally] = []
        """Tallies of the windows completed so far (kept when a run is interrupted), each added
        once its ``WindowEnded`` is committed, before it is scored and coached and before the
        failure budget judges it: a window that spends the budget, or whose guidance could not
        be given (the coach's provider down), is complete in the log and counted in the
        manifest (``windows``, ``totals``) of the run it stops."""

    @property
    def n_windows(self) -> int:
        return max(1, math.ceil(self.duration / self.window_length - 1e-9))

    async def run(self) -> list[WindowTally]:
        """Run every window; returns one tally per window."""
        if (told := getattr(self.engine.listener, "wakes_expected", None)) is not None:
            expected = functools.partial(expected_wakes, self.rates, tick=self.tick)
            told(
                window=expected(window_length=self.window_length),
                run=expected(window_length=self.window_length, duration=self.duration),
            )
        self.engine.listener.run_started(windows=self.n_windows, agents=len(self.engine.agents))
        for w in range(1, self.n_windows + 1):
            await self.engine.before_window(w)
            tally = await self.run_window(w)
            self.reports.append(tally)
            tally.scores = await self.engine.window_done(w)
            self.engine.window_ended(tally)
        return list(self.reports)

    async def run_window(self, w: int) -> WindowTally:
        """Run window ``w``: its slices, up to its committed ``WindowEnded``."""
        engine, platform = self.engine, self.engine.platform
        start = (w - 1) * self.window_length
        end = min(w * self.window_length, self.duration)
        tally = WindowTally(window=w)
        engine.begin_window(w)
        platform.clock.advance_to(start)
        await platform.record(WindowStarted(t=start, window=w, mode="continuous", t_end=end))
        await platform.flush()
        await engine.hooks.window_started(w)
        k = 0
        while (t := start + k * self.tick) < end - 1e-9:
            if k % _YIELD_EVERY == _YIELD_EVERY - 1:
                await asyncio.sleep(0)  # many slices in a row with no wake never await: let
                engine.check_stop()  # a signal's handler run, and honour it within the window
            await engine.hooks.before_wake(w, t)
            if len(self.rates) != len(engine.agents):
                self._grow()
            dt = min(self.tick, end - t)
            counts = self.rng.poisson(self.rates * dt)
            woken = [engine.agents[i] for i in np.flatnonzero(counts)]
            if woken and platform.suspensions_any:
                woken = [a for a in woken if not platform.suspended(a, w)]
            if woken:
                await self._slice(t, woken, tally)
                await engine.hooks.applied(w)
            k += 1
        await engine.hooks.window_ending(w)
        platform.clock.advance_to(end)
        ended = await platform.record(WindowEnded(t=end, window=w))
        tally.end_seq = ended.seq
        await platform.flush()
        return tally

    def _grow(self) -> None:
        """Agents joined (population growth): each newcomer wakes at the rate an agent of the
        first population with its persona's activity has (the activity divided by that
        population's mean activity, times its own lognormal factor of ``activity_sigma``, drawn
        from a generator of its own); old rates are kept."""
        agents = self.engine.agents
        old = dict(zip(self._order, self.rates, strict=True))
        self.rates = np.array(
            [r if (r := old.get(a)) is not None else self._joined_rate(a) for a in agents],
            dtype=float,
        )
        self._order = agents
        for a in agents:
            self.last_wake.setdefault(a, 0.0)

    def _joined_rate(self, agent: str) -> float:
        rel = self.engine.joined_activity.get(agent, 1.0) / self._mean_activity
        sigma = self._activity_sigma
        if sigma > 0:
            rel *= random.Random(f"{self._seed}:wake:{agent}").lognormvariate(
                -(sigma**2) / 2, sigma
            )
        return rel * self._base_rate

    async def _slice(self, t: float, woken: list[str], tally: WindowTally) -> None:
        engine, platform = self.engine, self.engine.platform
        engine.check_stop()
        platform.clock.advance_to(t)
        await platform.flush()

        dms = await platform.dms_since({a: self.last_wake[a] for a in woken}, t)
        feeds = engine.feeds_ahead(woken)

        async def observe(agent: str) -> Observation:
            feed = await feeds.take(agent)
            inbox = engine.inbox_of(agent, dms.get(agent, ()))
            obs = await engine.observe(
                agent, window=tally.window, allowed=self.allowed, feed=feed, inbox=inbox
            )
            self.last_wake[agent] = t
            return obs

        try:
            await engine.observe_and_decide(woken, observe, tally)
        finally:
            await feeds.aclose()
