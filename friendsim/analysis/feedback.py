"""Reward feedback for agents: last window's scores and the best window so far.

The paper shows each agent, when it plans, its last round's actions with their reward scores and
its best round so far (round, score, summary of what it did). :class:`FeedbackTracker` keeps both
per agent from the :class:`~friendsim.analysis.rewards.AgentScores` a scorer emits, and turns them
into :class:`~friendsim.vocabulary.RewardFeedback` values. "Best" is the highest total; ties
keep the earliest window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from friendsim.analysis.rewards import AgentScores
from friendsim.vocabulary import RewardFeedback


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def summarize(scores: AgentScores) -> str:
    """One line describing what the agent did and got in the window, from ``scores.detail``."""
    d = scores.detail
    if not d:
        return ""
    did = ", ".join(
        _plural(int(d.get(key, 0)), word)
        for key, word in (("posts", "post"), ("comments", "comment"), ("dms", "DM"))
    )
    likes = int(d.get("net_likes", 0))
    return (
        f"{did}; {int(d.get('received', 0))} comments or DMs received; "
        f"net likes {likes:+d}; {_plural(int(d.get('mentions', 0)), 'mention')}; "
        f"{_plural(int(d.get('new_topics', 0)), 'new topic')} seen"
    )


def to_feedback(scores: AgentScores) -> RewardFeedback:
    """The :class:`RewardFeedback` an agent is shown for one scored window."""
    return RewardFeedback(
        window=scores.window,
        components=dict(scores.components),
        total=scores.total,
        summary=summarize(scores),
    )


class FeedbackTracker:
    """Last and best :class:`AgentScores` per agent."""

    def __init__(self) -> None:
        self._last: dict[str, AgentScores] = {}
        self._best: dict[str, AgentScores] = {}

    def update(self, scores: Iterable[AgentScores]) -> None:
        for s in scores:
            self._last[s.agent] = s
            best = self._best.get(s.agent)
            if best is None or s.total > best.total:
                self._best[s.agent] = s

    def last(self, agent: str) -> AgentScores | None:
        return self._last.get(agent)

    def best(self, agent: str) -> AgentScores | None:
        return self._best.get(agent)

    def feedback(self, agent: str) -> tuple[RewardFeedback | None, RewardFeedback | None]:
        """``(last, best)`` feedback of ``agent`` (``None`` before its first scored window)."""
        last, best = self._last.get(agent), self._best.get(agent)
        return (
            None if last is None else to_feedback(last),
            None if best is None else to_feedback(best),
        )

    def snapshot(self) -> Mapping[str, AgentScores]:
        return dict(self._last)
