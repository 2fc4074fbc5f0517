"""Survey answers over time: opinion trajectories, polarization, belief in false vs true items.

Read from ``SurveyAnswered`` events (and ``ItemInjected`` for the items' truth labels):

* ``trajectories`` — per agent, its stance answer (Likert 1-7) at each surveyed window;
* ``stance`` — per survey window: respondents, mean and standard deviation of the stance, and
  the polarization index;
* ``belief`` — per survey window and truth label: mean belief (1-7) in the injected items of
  that label, over every agent's answer about each of them;
* ``trust`` — per survey window and source: mean trust (1-7).

Each agent counts once per window and question: when several surveys of one window asked it
the same question, its answer there is the mean of its answers (else an agent in two
overlapping surveys weighed double in the window's mean, spread and polarization).

Polarization index: the population variance of the stance answers divided by 9, the largest
variance a 1-7 scale allows (half the answers at 1, half at 7). 0 when everyone agrees, 1 at
that split; it does not depend on the number of respondents.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from friendsim.platform.events import Event, ItemInjected, SurveyAnswered

LIKERT_MAX_VARIANCE = 9.0


def polarization(values: Sequence[float], *, lo: int = 1, hi: int = 7) -> float:
    """Variance of ``values`` over the largest variance on ``lo..hi`` (``((hi-lo)/2)**2``)."""
    if len(values) < 2:
        return 0.0
    return statistics.pvariance(values) / (((hi - lo) / 2) ** 2)


def _one(values: Sequence[int]) -> float:
    """An agent's answer to a question in a window: the one it gave, or the mean of several
    (an int when they agree, as in the log)."""
    if len(set(values)) == 1:
        return values[0]
    return statistics.fmean(values)


def survey_trends(events: Iterable[Event]) -> dict[str, Any]:
    """The survey section of a run's analysis (see the module docstring); ``{}`` without any."""
    truth: dict[str, str] = {}
    answers: list[SurveyAnswered] = []
    for e in events:
        if isinstance(e, ItemInjected):
            truth[e.item_id] = e.truth
        elif isinstance(e, SurveyAnswered):
            answers.append(e)
    if not answers:
        return {}
    # one answer per agent, window and question: the mean of its answers when two surveys of
    # the window asked it the same question (each agent weighs once in every figure)
    given: dict[tuple[int, str, str], list[int]] = {}
    for a in answers:
        for q, v in a.answers.items():
            given.setdefault((a.window, a.actor or "", q), []).append(v)
    trajectories: dict[str, dict[int, float]] = {}
    stance: dict[int, list[float]] = {}
    belief: dict[tuple[int, str], list[float]] = {}
    trust: dict[tuple[int, str], list[float]] = {}
    for (window, agent, q), vs in given.items():
        one = _one(vs)
        if q == "stance":
            stance.setdefault(window, []).append(one)
            trajectories.setdefault(agent, {})[window] = one
        elif q.startswith("belief:"):
            belief.setdefault((window, truth.get(q[7:], "unknown")), []).append(one)
        elif q.startswith("trust:"):
            trust.setdefault((window, q[6:]), []).append(one)
    return {
        "respondents": len({a.actor for a in answers}),
        "answers": len(answers),
        "stance": [
            {
                "window": w,
                "respondents": len(vs),
                "mean": statistics.fmean(vs),
                "sd": statistics.pstdev(vs) if len(vs) > 1 else 0.0,
                "polarization": polarization(vs),
            }
            for w, vs in sorted(stance.items())
        ],
        "belief": [
            {"window": w, "truth": t, "answers": len(vs), "mean_belief": statistics.fmean(vs)}
            for (w, t), vs in sorted(belief.items())
        ],
        "trust": [
            {"window": w, "source": s, "answers": len(vs), "mean_trust": statistics.fmean(vs)}
            for (w, s), vs in sorted(trust.items())
        ],
        "trajectories": {
            a: {str(w): v for w, v in sorted(ws.items())} for a, ws in sorted(trajectories.items())
        },
    }
