"""Hand-computed reward values on small hand-built logs (DESIGN.md section 2 formulas)."""

from __future__ import annotations

import json
import math

import pytest

from friendsim.analysis.rewards import (
    AgentScores,
    RewardLogError,
    RewardParams,
    RewardScorer,
    score_log,
)
from friendsim.analysis.rewards_params import COMPONENTS, RewardConfigError
from friendsim.analysis.rewards_synth import LogBuilder
from friendsim.analysis.sentiment import LexiconSentiment

LEX = LexiconSentiment()
P = RewardParams(sentiment="lexicon")  # β = 0.5 everywhere, β_emo = -1, N = 3


def by_key(scores: list[AgentScores]) -> dict[tuple[int, str], AgentScores]:
    return {(s.window, s.agent): s for s in scores}


def two_window_log() -> LogBuilder:
    b = LogBuilder()
    b.register("a", "b", "c")
    b.start(1)
    p1 = b.post("a", "Climate", mentions=["b"])
    p2 = b.post("b", "energy")
    b.comment("b", p1, "I love this great idea")  # +1 to a
    p4 = b.comment("c", p1, "terrible and wrong")  # -1 to a
    b.comment("a", p1, "thanks all, great")  # self-reply: no interaction
    b.dm("c", "a", "thanks friend")  # +1 to a
    b.dm("a", "b", "hello")  # 0 to b
    b.vote("b", p1, 1)
    b.vote("c", p1, -1)
    b.change_vote("c", p1, -1, 1)  # +2
    b.vote("a", p2, 1)
    b.clear_vote("a", p2, 1)  # net 0 for b
    b.feed("a", [p1, p2])
    b.feed("b", [p1, p2])
    b.feed("b", [p1])  # repeated item counts once
    b.end(1)
    b.start(2)
    b.dm("b", "a", "ok")
    b.dm("a", "c", "thanks")  # a answers c, who DMed a last window
    p6 = b.post("a", "  Energy ", mentions=["a", "c", "c"])
    b.feed("a", [p6, p2])
    b.feed("c", [p1, p2, p6])
    b.vote("b", p6, -1)
    b.vote("c", p6, -1)
    b.vote("b", p4, -1)  # c's old comment
    b.end(2)
    return b


@pytest.fixture(scope="module")
def scores() -> dict[tuple[int, str], AgentScores]:
    return by_key(score_log(two_window_log().events, params=P, sentiment=LEX))


def test_soc(scores: dict[tuple[int, str], AgentScores]) -> None:
    # window 1: B_dir = b->a, c->a (comments), c->a, a->b (DMs) = 4; a's self-reply excluded
    assert scores[1, "a"].components["SOC"] == pytest.approx(0.5 * 1 / 3 + 0.5 * 3 / 4)
    assert scores[1, "b"].components["SOC"] == pytest.approx(0.5 * 1 / 3 + 0.5 * 1 / 4)
    assert scores[1, "c"].components["SOC"] == pytest.approx(0.5 * 2 / 3 + 0.0)
    assert scores[1, "a"].detail["b_dir"] == 4
    # window 2: B_dir = 2 DMs
    assert scores[2, "a"].components["SOC"] == pytest.approx(0.5 * 1 / 3 + 0.5 * 1 / 2)
    assert scores[2, "c"].components["SOC"] == pytest.approx(0.5 * 0 / 3 + 0.5 * 1 / 2)


def test_inf(scores: dict[tuple[int, str], AgentScores]) -> None:
    # K = 2 (climate, energy); a and b saw both topics for the first time, evenly
    assert scores[1, "a"].components["INF"] == pytest.approx(0.5 * 2 / 2 + 0.5 * 1.0)
    assert scores[1, "b"].components["INF"] == pytest.approx(1.0)
    assert scores[1, "c"].components["INF"] == 0.0  # nothing shown
    # window 2: a sees only energy again ("  Energy " normalises to "energy"): T = 0, H = 0
    assert scores[2, "a"].components["INF"] == 0.0
    assert scores[2, "a"].detail["k"] == 2
    # c: climate x1, energy x2, both new
    h = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    assert scores[2, "c"].components["INF"] == pytest.approx(0.5 * 2 / 2 + 0.5 * h / math.log(2))


def test_pre_and_vote_accounting(scores: dict[tuple[int, str], AgentScores]) -> None:
    # a: 1 post of N=3; net likes +1 -1 +2 = +2 over (|V|-1)*N = 6
    assert scores[1, "a"].detail["net_likes"] == 2
    assert scores[1, "a"].components["PRE"] == pytest.approx(0.5 / 3 + 0.5 * 2 / 6)
    assert scores[1, "b"].detail["net_likes"] == 0  # cast then cleared
    assert scores[1, "b"].components["PRE"] == pytest.approx(0.5 / 3)
    assert scores[1, "c"].components["PRE"] == 0.0
    # window 2: a posts once, net -2 -> 0.5/3 - 0.5*2/6 = 0 (clipped at 0)
    assert scores[2, "a"].detail["net_likes"] == -2
    assert scores[2, "a"].components["PRE"] == 0.0
    # c: no posts, net -1 on an old comment -> negative, clipped to 0
    assert scores[2, "c"].detail["net_likes"] == -1
    assert scores[2, "c"].components["PRE"] == 0.0


def test_pre_negative_likes_lower_but_do_not_go_below_zero() -> None:
    b = LogBuilder()
    b.register("a", "b", "c")
    b.start(1)
    p = b.post("a", "x")
    b.post("a", "y")
    b.vote("b", p, -1)
    b.end(1)
    s = score_log(b.events, params=P, sentiment=LEX)[0]
    assert s.components["PRE"] == pytest.approx(0.5 * 2 / 3 - 0.5 * 1 / 6)


def test_coord(scores: dict[tuple[int, str], AgentScores]) -> None:
    # window 1: 5 posts/comments, one mentions b; nobody DMed anyone before
    assert scores[1, "b"].components["COORD"] == pytest.approx(0.5 * 1 / 5)
    assert scores[1, "a"].components["COORD"] == 0.0
    # window 2: 1 item mentioning c (twice -> once) and a (self, ignored)
    assert scores[2, "c"].components["COORD"] == pytest.approx(0.5 * 1 / 1)
    # a was DMed by c in window 1 and DMed c back; b was DMed by a and DMed a back
    assert scores[2, "a"].components["COORD"] == pytest.approx(0.5 * 1 / 1)
    assert scores[2, "b"].components["COORD"] == pytest.approx(0.5 * 1 / 1)


def test_emo(scores: dict[tuple[int, str], AgentScores]) -> None:
    # a received +1 (comment), -1 (comment), +1 (DM): U+ = 2, U- = 1, beta = -1
    assert scores[1, "a"].components["EMO"] == pytest.approx(0.5 * (1 + (2 - 1) / 3))
    assert scores[1, "b"].components["EMO"] == pytest.approx(0.5)  # neutral DM only
    assert scores[1, "c"].components["EMO"] == 0.5  # nothing received


def test_emo_beta_weights_negatives() -> None:
    b = LogBuilder()
    b.register("a", "b")
    b.start(1)
    b.dm("b", "a", "terrible")
    b.dm("b", "a", "great")
    b.dm("b", "a", "great")
    b.end(1)
    for beta, expected in ((-1.0, 0.5 * (1 + 1 / 3)), (-2.0, 0.5 * (1 + 0 / 4)), (1.0, 1.0)):
        params = RewardParams(sentiment="lexicon", beta_emo=beta)
        s = by_key(score_log(b.events, params=params, sentiment=LEX))[1, "a"]
        assert s.components["EMO"] == pytest.approx(expected)


def test_zero_denominators_and_empty_window() -> None:
    b = LogBuilder()
    b.register("a", "b")
    b.start(1)
    b.end(1)
    (sa, sb) = score_log(b.events, params=P, sentiment=LEX)
    for s in (sa, sb):
        assert dict(s.components) == {"SOC": 0.0, "INF": 0.0, "PRE": 0.0, "COORD": 0.0, "EMO": 0.5}
        assert s.total == pytest.approx(0.5 / 5)


def test_single_agent_and_single_topic() -> None:
    b = LogBuilder()
    b.register("a")
    b.start(1)
    p = b.post("a", "only")
    b.feed("a", [p])
    b.end(1)
    (s,) = score_log(b.events, params=P, sentiment=LEX)
    # |V| - 1 = 0: likes term 0; K = 1: novelty 1/1, entropy term 0
    assert s.components["PRE"] == pytest.approx(0.5 / 3)
    assert s.components["INF"] == pytest.approx(0.5)


def test_continuous_mode_counts_observed_actions() -> None:
    b = LogBuilder()
    b.register("a", "b", "c")
    b.start(1)
    p0 = b.post("b", "x")
    b.end(1)
    b.start(2, mode="continuous")
    p = b.post("a", "x")
    b.vote("a", p0, 1)
    b.comment("b", p, "fine")
    b.end(2)
    s = by_key(score_log(b.events, params=P, sentiment=LEX))
    assert s[2, "a"].detail["actions"] == 2
    assert s[2, "a"].components["PRE"] == pytest.approx(0.5 * 1 / 2)
    assert s[2, "a"].components["SOC"] == pytest.approx(0.5 * 0 / 2 + 0.5 * 1 / 1)
    assert s[2, "b"].components["SOC"] == pytest.approx(0.5 * 1 / 1)
    # b's like from a: net +1 over (|V|-1) * max(1, actions(b) = 1) = 2
    assert s[2, "b"].components["PRE"] == pytest.approx(0.5 * 0 / 1 + 0.5 * 1 / 2)
    assert s[2, "c"].components["SOC"] == 0.0  # no actions: zero denominator


def test_feed_without_topics_uses_post_topics_and_events_outside_windows() -> None:
    b = LogBuilder()
    b.register("a", "b")
    p1 = b.post("b", "x")  # before any window: sets K, not counted
    b.feed("a", [p1])  # shown before window 1: x is not new later
    b.start(1)
    p2 = b.post("b", "y")
    b.feed("a", [p1, p2], with_topics=False)
    b.end(1)
    b.vote("a", p2, 1)  # between windows: ignored
    s = by_key(score_log(b.events, params=P, sentiment=LEX))
    assert s[1, "a"].detail["new_topics"] == 1
    assert s[1, "a"].components["INF"] == pytest.approx(0.5 * 1 / 2 + 0.5 * 1.0)
    assert s[1, "b"].detail["items"] == 1


def test_total_uses_lambdas_and_uniform_default() -> None:
    lambdas = {"a": {"SOC": 0.6, "EMO": 0.4}}
    sc = by_key(score_log(two_window_log().events, params=P, lambdas=lambdas, sentiment=LEX))
    a, b = sc[1, "a"], sc[1, "b"]
    assert a.total == pytest.approx(0.6 * a.components["SOC"] + 0.4 * a.components["EMO"])
    assert b.total == pytest.approx(sum(b.components[c] for c in COMPONENTS) / 5)


def test_incremental_feed_emits_only_at_window_end() -> None:
    events = two_window_log().events
    scorer = RewardScorer(params=P, sentiment=LEX)
    emitted = [(ev.kind, len(scorer.feed(ev))) for ev in events]
    assert [n for kind, n in emitted if n] == [3, 3]
    assert all(kind == "window_ended" for kind, n in emitted if n)


def test_bad_logs_and_params_raise_named_errors() -> None:
    b = LogBuilder()
    b.register("a")
    b.end(7)
    with pytest.raises(RewardLogError, match=r"seq=2.*WindowEnded\(window=7\)"):
        score_log(b.events, params=P, sentiment=LEX)
    with pytest.raises(RewardConfigError, match=r"'a' sum to 0\.9"):
        RewardScorer(params=P, lambdas={"a": {"SOC": 0.9}}, sentiment=LEX)
    with pytest.raises(RewardConfigError, match="unknown components"):
        RewardScorer(params=P, lambdas={"a": {"FUN": 1.0}}, sentiment=LEX)
    with pytest.raises(RewardConfigError, match="beta_soc"):
        RewardParams(beta_soc=1.5)
    with pytest.raises(RewardConfigError, match="unknown reward params"):
        RewardParams.from_dict({"beta": 1})


def test_params_round_trip_json() -> None:
    p = RewardParams(beta_emo=-2.0, n_actions=5, sentiment="lexicon")
    assert RewardParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert p.to_dict()["beta_emo"] == -2.0
