"""The wake model of continuous mode: per-agent wake rates and what slicing time keeps of them.

Each agent wakes as a Poisson process with its own rate (:func:`wake_rates`). The scheduler
(:mod:`friendsim.runtime.continuous`) cuts time into slices of ``tick`` seconds, and several wakes
of an agent in one slice count as one: :func:`expected_wakes` counts what the slices keep
(:class:`ExpectedWakes`), :func:`loses_wakes` says when that is worth a warning and
:func:`lost_wakes_line` words it. Pure functions and one value type, apart from the scheduler and
the engine, so that the engine's listener protocol (``wakes_expected``), the scheduler, the
estimate and the commands all import them from here and none of them from each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def wake_rates(
    agents: Sequence[str],
    activity: Mapping[str, float],
    *,
    wake_rate: float,
    window_length: float,
    activity_sigma: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per-second wake rate of each agent (in ``agents`` order); mean ``wake_rate/window``."""
    rel = np.array([float(activity.get(a, 1.0)) for a in agents], dtype=float)
    rel = rel / rel.mean()
    if activity_sigma > 0:
        rel = rel * rng.lognormal(-(activity_sigma**2) / 2, activity_sigma, size=len(agents))
    return rel * (wake_rate / window_length)


@dataclass(frozen=True, kw_only=True, slots=True)
class ExpectedWakes:
    """Wakes the rates ask for against the slices agents are expected to act in
    (:func:`expected_wakes`), for the whole population and for its most active 1 %."""

    tick: float
    """The slice length the figures are for (seconds)."""
    agents: int
    configured: float
    """Expected Poisson wakes the rates ask for: Σ rate × seconds (what ``wake_rate`` means)."""
    acting: float
    """Expected (agent, slice) pairs in which an agent acts (each one wake the run carries out):
    Σ over agents and slices of 1 − e^(−rate × slice length)."""
    top_agents: int
    """How many agents the most active 1 % holds: ⌈agents / 100⌉, at least one (none without
    agents); ties in rate do not change the figures."""
    top_configured: float
    """:attr:`configured` of the ``top_agents`` agents with the highest rates."""
    top_acting: float
    """:attr:`acting` of the same agents."""

    @property
    def lost_share(self) -> float:
        """The share of the configured wakes the slices merge away (0 when none are asked)."""
        return 1.0 - self.acting / self.configured if self.configured > 0 else 0.0

    @property
    def top_lost_share(self) -> float:
        """:attr:`lost_share` of the most active 1 %."""
        return 1.0 - self.top_acting / self.top_configured if self.top_configured > 0 else 0.0


def expected_wakes(
    rates: np.ndarray,
    *,
    tick: float,
    window_length: float,
    duration: float | None = None,
) -> ExpectedWakes:
    """What slicing time into ``tick`` seconds keeps of the wakes ``rates`` ask for.

    ``rates`` are per-second wake rates (:func:`wake_rates`, a scheduler's ``.rates``). Returned:
    with ``duration`` unset, the expected figures of one full window of ``window_length`` seconds;
    with it, their sums over a run of ``duration`` seconds cut into windows as
    :class:`~friendsim.runtime.continuous.ContinuousScheduler` cuts it (the last window possibly
    short). ``configured`` is Σ rate × seconds, the expected number of Poisson wakes; ``acting`` the
    expected number of slices acted in, Σ over agents and slices of 1 − e^(−rate × slice length),
    since several wakes of an agent in one slice count as one; the ``top_`` figures are the same
    sums over the ⌈1 %⌉ agents with the highest rates. The slices are the scheduler's (``tick``
    seconds from each window's start, the last one cut at the window's end), every full window's
    counted as the first window's. The rates as drawn: agents that join or are suspended later are
    not counted. A pure function: no draw is made.
    """
    rates = np.asarray(rates, dtype=float)
    n_top = min(rates.size, max(1, math.ceil(rates.size / 100)))
    top = np.argsort(rates, kind="stable")[rates.size - n_top :]
    if duration is None:
        spans = [(0.0, float(window_length), 1)]
    else:
        n = max(1, math.ceil(duration / window_length - 1e-9))
        last = ((n - 1) * window_length, min(n * window_length, duration), 1)
        spans = [(0.0, float(window_length), n - 1), last] if n > 1 else [last]
    acting = np.zeros_like(rates)
    for start, end, times in spans:
        if times:
            acting += times * _acted_slices(rates, start=start, end=end, tick=tick)
    seconds = sum((end - start) * times for start, end, times in spans)
    return ExpectedWakes(
        tick=float(tick),
        agents=int(rates.size),
        configured=float(rates.sum() * seconds),
        acting=float(acting.sum()),
        top_agents=int(top.size),
        top_configured=float(rates[top].sum() * seconds),
        top_acting=float(acting[top].sum()),
    )


def _acted_slices(rates: np.ndarray, *, start: float, end: float, tick: float) -> np.ndarray:
    """Expected slices of ``[start, end)`` each agent acts in: the scheduler's slice times
    ``start + k × tick < end − 1e-9``, each ``tick`` long but the last, cut at ``end``."""
    k = max(0, math.ceil((end - 1e-9 - start) / tick) - 1)
    while start + (k + 1) * tick < end - 1e-9:
        k += 1
    while k > 0 and not start + k * tick < end - 1e-9:
        k -= 1
    last = min(tick, end - (start + k * tick))
    return -k * np.expm1(-rates * tick) - np.expm1(-rates * last)


LOST_WAKES_WARNING = 0.05
"""``friendsim run`` warns when the slices lose more than this share of the configured wakes."""
TOP_LOST_WAKES_WARNING = 0.25
"""... or more than this share of the most active 1 %'s: a heavy tail can lose most of its wakes
while the population as a whole loses few, and the tail is what heavy-tailed activity is for."""


def loses_wakes(window: ExpectedWakes) -> bool:
    """Whether ``friendsim run`` warns about ``window``'s figures (a full window's
    :func:`expected_wakes`): the population loses more than :data:`LOST_WAKES_WARNING` of its
    configured wakes, or its most active 1 % more than :data:`TOP_LOST_WAKES_WARNING`."""
    return window.lost_share > LOST_WAKES_WARNING or window.top_lost_share > TOP_LOST_WAKES_WARNING


def lost_wakes_line(window: ExpectedWakes) -> str:
    """One line on what the slices of ``window`` (a full window's :func:`expected_wakes`) lose,
    for the population and its most active 1 %, and what keeps the wakes."""
    agents = "agent" if window.top_agents == 1 else "agents"
    return (
        f"tick = {window.tick:g} s loses {window.lost_share:.0%} of the configured wakes "
        "(several wakes of an agent in one slice count as one): "
        f"{_count(window.configured - window.acting)} of {_count(window.configured)} per window, "
        f"and {window.top_lost_share:.0%} for the most active 1% ({window.top_agents} {agents}: "
        f"{_count(window.top_configured - window.top_acting)} of "
        f"{_count(window.top_configured)}); a smaller [experiment] tick keeps them"
    )


def _count(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"
