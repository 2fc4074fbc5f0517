"""Tie strengths step by step on a hand-built log; every expected value is computed by hand.

Parameters of the hand computation: ξ = 0.1, Δmax = 0.2, h = 1 (δ = 0.5), β_rec = 0.5, all
evidence weights 1 (e = plain mean of the available signals). Sentiment: "great" → 0.6,
"bad" → −0.4, anything else 0.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from friendsim.analysis.ties import (
    TieParams,
    TieParamsError,
    evidence_value,
    symmetrise,
    tie_graph,
    tie_windows,
    update_strength,
)
from friendsim.platform.events import (
    AgentRegistered,
    DirectMessageSent,
    Event,
    FeedServed,
    PostCreated,
    VoteCast,
    WindowEnded,
    WindowStarted,
)

P = TieParams(xi=0.1, delta_max=0.2, half_life=1.0, beta_rec=0.5)


class FakeSentiment:
    name = "fake"

    def score(self, text: str) -> float:
        if "great" in text:
            return 0.6
        if "bad" in text:
            return -0.4
        return 0.0


def build_log() -> list[Event]:
    evs: list[Event] = [
        AgentRegistered(t=0.0, actor=a, name=a.upper(), attributes={"group": g})
        for a, g in (("a", "x"), ("b", "x"), ("c", "y"))
    ]
    evs += [
        # window 1
        WindowStarted(t=0.0, window=1),
        PostCreated(t=0.0, actor="a", post_id=1, text="post", topic="climate"),
        PostCreated(t=0.0, actor="b", post_id=2, text="post", topic="energy"),
        FeedServed(t=0.0, actor="b", ranker="all", post_ids=(1,), topics=("climate",)),
        FeedServed(t=0.0, actor="a", ranker="all", post_ids=(2,), topics=("energy",)),
        VoteCast(t=0.0, actor="b", post_id=1, author="a", value=1),
        DirectMessageSent(
            t=0.0, actor="a", dm_id=1, recipient="c", text="great idea", topic="climate"
        ),
        WindowEnded(t=0.0, window=1),
        # window 2
        WindowStarted(t=0.0, window=2),
        PostCreated(
            t=0.0,
            actor="a",
            post_id=3,
            text="reply",
            topic="energy",
            mentions=("c",),
            parent_id=2,
            root_id=2,
        ),
        VoteCast(t=0.0, actor="a", post_id=2, author="b", value=1),
        VoteCast(t=0.0, actor="b", post_id=3, author="a", value=-1),
        FeedServed(t=0.0, actor="c", ranker="all", post_ids=(3,), topics=("energy",)),
        WindowEnded(t=0.0, window=2),
        # window 3: nothing happens
        WindowStarted(t=0.0, window=3),
        WindowEnded(t=0.0, window=3),
        # window 4
        WindowStarted(t=0.0, window=4),
        DirectMessageSent(t=0.0, actor="c", dm_id=2, recipient="a", text="bad day", topic=""),
        WindowEnded(t=0.0, window=4),
    ]
    return _with_time(evs)


def _with_time(evs: list[Event]) -> list[Event]:
    return [replace(e, seq=i + 1, t=float(i)) for i, e in enumerate(evs)]


def test_decay_factor_from_half_life() -> None:
    assert P.decay == pytest.approx(0.5)
    assert TieParams(half_life=2.0).decay == pytest.approx(1 - 2**-0.5)
    # two windows of decay at h=2 halve a tie
    a = update_strength(0.4, active=False, e=0.0, params=TieParams(half_life=2.0))
    a = update_strength(a, active=False, e=0.0, params=TieParams(half_life=2.0))
    assert a == pytest.approx(0.2)


def test_update_rule_cap_and_threshold() -> None:
    # (1 - 0.5) * (0.9 - 0.1) = 0.4 > Δmax = 0.2 -> capped
    assert update_strength(0.5, active=True, e=0.9, params=P) == pytest.approx(0.7)
    # (1 - 0.5) * (0.3 - 0.1) = 0.1 < Δmax -> uncapped
    assert update_strength(0.5, active=True, e=0.3, params=P) == pytest.approx(0.6)
    # evidence below ξ: active but no change (and no decay)
    assert update_strength(0.5, active=True, e=0.05, params=P) == pytest.approx(0.5)


def test_evidence_is_weighted_mean_of_available_signals() -> None:
    assert evidence_value(
        P, novelty=1.0, approval=None, reciprocity=None, tone=0.8
    ) == pytest.approx(0.9)
    weighted = TieParams(w_novelty=1.0, w_approval=3.0)
    assert evidence_value(
        weighted, novelty=0.0, approval=1.0, reciprocity=None, tone=None
    ) == pytest.approx(0.75)


def test_step_by_step_hand_computed() -> None:
    wins = tie_windows(build_log(), params=P, sentiment=FakeSentiment())
    assert [w.window for w in wins] == [1, 2, 3, 4]
    assert wins[0].agents == ("a", "b", "c")

    # Window 1. L̂(b→a) = 0.5·1 = 0.5.
    # (b,a): vote → active. novelty 1 (a was served b's post on "energy", new to a);
    #   approval (1−0)/1 → 1; reciprocity 1 − 0.5/0.5 = 0; e = 2/3; Δ = min(0.2, 0.5667) = 0.2.
    # (a,c): DM → active. novelty 1 ("climate" new to c); tone (0.6+1)/2 = 0.8 (no votes);
    #   e = 0.9; Δ = 0.2.  (a,b) is not active although a showed b a new topic.
    w1 = wins[0]
    assert w1.active == {("b", "a"), ("a", "c")}
    ev = w1.evidence[("b", "a")]
    assert (ev.novelty, ev.approval, ev.tone) == (1.0, 1.0, None)
    assert ev.reciprocity == pytest.approx(0.0, abs=1e-6)
    assert ev.e == pytest.approx(2 / 3, abs=1e-6)
    assert w1.evidence[("a", "c")].tone == pytest.approx(0.8)
    assert w1.evidence[("a", "c")].e == pytest.approx(0.9)
    assert dict(w1.strengths) == pytest.approx({("b", "a"): 0.2, ("a", "c"): 0.2})

    # Window 2. L̂(b→a) = 0.25, L̂(a→b) = 0.5 → reciprocity 1 − 0.25/0.75 = 2/3 for both.
    # (a,b): comment + like → novelty 0, approval 1 → e = (0 + 1 + 2/3)/3 = 5/9; Δ = 0.2 (cap).
    # (b,a): dislike → approval 0 → e = (0 + 0 + 2/3)/3 = 2/9; Δ = 0.8·(2/9 − 0.1) = 0.097778.
    # (a,c): @mention; c served a's post on "energy" (new) → novelty 1, nothing else → e = 1;
    #   Δ = min(0.2, 0.8·0.9) = 0.2 → 0.4.
    w2 = wins[1]
    assert w2.active == {("a", "b"), ("b", "a"), ("a", "c")}
    assert w2.evidence[("a", "b")].reciprocity == pytest.approx(2 / 3)
    assert w2.evidence[("a", "b")].e == pytest.approx(5 / 9)
    assert w2.evidence[("b", "a")].approval == pytest.approx(0.0)
    assert w2.evidence[("b", "a")].e == pytest.approx(2 / 9)
    assert w2.evidence[("a", "c")].e == pytest.approx(1.0)
    b_a = 0.2 + 0.8 * (2 / 9 - 0.1)
    assert dict(w2.strengths) == pytest.approx({("a", "b"): 0.2, ("b", "a"): b_a, ("a", "c"): 0.4})

    # Window 3: nothing active → everything halves (h = 1).
    w3 = wins[2]
    assert w3.active == frozenset()
    assert dict(w3.strengths) == pytest.approx(
        {("a", "b"): 0.1, ("b", "a"): b_a / 2, ("a", "c"): 0.2}
    )

    # Window 4: c DMs a "bad day" with no topic → novelty 0, tone (−0.4+1)/2 = 0.3 → e = 0.15;
    # Δ = (1 − 0)·(0.15 − 0.1) = 0.05 (below the cap). The rest halves again.
    w4 = wins[3]
    assert w4.evidence[("c", "a")].e == pytest.approx(0.15)
    expected = {("a", "b"): 0.05, ("b", "a"): b_a / 4, ("a", "c"): 0.1, ("c", "a"): 0.05}
    assert dict(w4.strengths) == pytest.approx(expected)

    # Symmetrise and binarise the final state.
    sym = symmetrise(w4.strengths)
    assert sym[frozenset("ab")] == pytest.approx((0.05 + b_a / 4) / 2)  # 0.062222
    assert sym[frozenset("ac")] == pytest.approx(0.075)
    g01 = tie_graph(w4.strengths, theta=0.01, nodes=w4.agents)
    g07 = tie_graph(w4.strengths, theta=0.07, nodes=w4.agents)
    g10 = tie_graph(w4.strengths, theta=0.1, nodes=w4.agents)
    assert {frozenset(e) for e in g01.edges} == {frozenset("ab"), frozenset("ac")}
    assert {frozenset(e) for e in g07.edges} == {frozenset("ac")}
    assert g10.number_of_edges() == 0 and set(g10.nodes) == {"a", "b", "c"}


def test_text_method_uses_supplied_evidence() -> None:
    params = TieParams(xi=0.1, delta_max=1.0, half_life=1.0, method="text")
    wins = tie_windows(build_log(), params=params, text_evidence={1: {("a", "c"): 0.6}})
    # (a,c): e = 0.6 → Δ = 0.5; (b,a) active but unscored → e = 0 → stays 0 (pruned)
    assert dict(wins[0].strengths) == pytest.approx({("a", "c"): 0.5})
    # window 2: (a,c) active, unscored → unchanged (no decay while active)
    assert wins[1].strengths[("a", "c")] == pytest.approx(0.5)
    assert wins[2].strengths[("a", "c")] == pytest.approx(0.25)


def test_params_validation_and_dict() -> None:
    with pytest.raises(TieParamsError, match="delta_max"):
        TieParams(delta_max=0.0)
    with pytest.raises(TieParamsError, match="half_life"):
        TieParams(half_life=-1.0)
    with pytest.raises(TieParamsError, match="text_evidence"):
        tie_windows([], params=TieParams(method="text"))
    d = TieParams().to_dict()
    assert d["xi"] == 0.1 and d["method"] == "signals"
    assert json.loads(json.dumps(d)) == d
    assert TieParams.from_dict(d) == TieParams()
    assert TieParams.from_dict({"xi": 0.3}).xi == 0.3
    with pytest.raises(TieParamsError, match="unknown TieParams field"):
        TieParams.from_dict({"ksi": 0.3})


def test_vote_cleared_in_window_is_no_activity() -> None:
    from friendsim.platform.events import VoteCleared

    evs = _with_time(
        [
            PostCreated(t=0.0, actor="a", post_id=1, text="p", topic="t"),
            WindowStarted(t=0.0, window=1),
            VoteCast(t=0.0, actor="b", post_id=1, author="a", value=1),
            VoteCleared(t=0.0, actor="b", post_id=1, author="a", old=1),
            WindowEnded(t=0.0, window=1),
        ]
    )
    (w,) = tie_windows(evs, params=P, sentiment=FakeSentiment())
    assert w.active == frozenset() and dict(w.strengths) == {}
