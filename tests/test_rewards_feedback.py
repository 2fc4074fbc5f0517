"""Feedback to agents: last window, best window (ties keep the earliest), summaries."""

from __future__ import annotations

import pytest

from friendsim.analysis.feedback import FeedbackTracker, summarize, to_feedback
from friendsim.analysis.rewards import RewardParams, score_log
from friendsim.analysis.rewards_synth import LogBuilder
from friendsim.analysis.sentiment import LexiconSentiment


def test_last_and_best_window() -> None:
    b = LogBuilder()
    b.register("a", "b")
    for w, n_posts in ((1, 1), (2, 3), (3, 3), (4, 0)):
        b.start(w)
        for _ in range(n_posts):
            b.post("a", "solar")
        b.end(w)
    scores = score_log(
        b.events, params=RewardParams(sentiment="lexicon"), sentiment=LexiconSentiment()
    )
    fb = FeedbackTracker()
    fb.update(scores)
    last, best = fb.feedback("a")
    assert last is not None and last.window == 4
    assert best is not None and best.window == 2  # windows 2 and 3 tie: the earliest is kept
    assert best.total == pytest.approx(max(s.total for s in scores if s.agent == "a"))
    assert best.summary.startswith("3 posts, 0 comments, 0 DMs")
    assert fb.feedback("nobody") == (None, None)
    assert fb.best("b") is not None and fb.best("b").window == 1


def test_summary_and_window_restart() -> None:
    b = LogBuilder()
    b.register("a", "b")
    b.start(1)
    b.post("b", "x")  # abandoned window (a resumed run restarts it)
    b.start(1)
    p = b.post("a", "x")
    b.comment("b", p, "great")
    b.vote("b", p, 1)
    b.dm("b", "a", "hi")
    b.end(1)
    scores = score_log(
        b.events, params=RewardParams(sentiment="lexicon"), sentiment=LexiconSentiment()
    )
    a = next(s for s in scores if s.agent == "a")
    bs = next(s for s in scores if s.agent == "b")
    assert bs.detail["posts"] == 0  # the abandoned window's post does not count
    assert summarize(a) == (
        "1 post, 0 comments, 0 DMs; 2 comments or DMs received; net likes +1; 0 mentions; "
        "0 new topics seen"
    )
    f = to_feedback(a)
    assert (f.window, f.total, dict(f.components)) == (1, a.total, dict(a.components))
