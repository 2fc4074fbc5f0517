"""Gap ordering, context building and the deterministic RuleCoach."""

from __future__ import annotations

import pytest

from friendsim.analysis.rewards import RewardParams, RewardScorer
from friendsim.analysis.rewards_synth import LogBuilder
from friendsim.analysis.sentiment import LexiconSentiment
from friendsim.coach.base import TOP_LIKED, CoachContext, order_gaps
from friendsim.coach.context import ContextTracker
from friendsim.coach.rule import MAX_TIPS, MIN_TIPS, RuleCoach, rule_tips

TONES = {"supportive", "neutral", "critical"}


def test_gap_is_weighted_shortfall_and_orders_components() -> None:
    comps = {"SOC": 0.2, "INF": 0.9, "PRE": 0.5, "COORD": 0.0, "EMO": 0.5}
    lam = {"SOC": 0.4, "INF": 0.3, "PRE": 0.1, "COORD": 0.2, "EMO": 0.0}
    gaps = order_gaps(comps, lam)
    assert [g.component for g in gaps] == ["SOC", "COORD", "PRE", "INF", "EMO"]
    assert gaps[0].gap == pytest.approx(0.4 * 0.8)
    assert gaps[1].gap == pytest.approx(0.2)
    assert gaps[-1].gap == 0.0
    # share mode: target weight minus contribution share
    share = {g.component: g.gap for g in order_gaps(comps, lam, mode="share")}
    r = 0.4 * 0.2 + 0.3 * 0.9 + 0.1 * 0.5
    assert share["SOC"] == pytest.approx(0.4 - 0.08 / r)
    assert share["INF"] == pytest.approx(0.3 - 0.27 / r)


def play() -> tuple[ContextTracker, RewardScorer, list]:
    b = LogBuilder()
    b.register("a", "b", "c", "d")
    b.start(1)
    p1 = b.post("a", "solar")
    p2 = b.post("b", "wind")
    p3 = b.post("c", "wind")
    b.post("c", "Wind")
    b.post("d", "farming")
    b.comment("b", p1, "great point")
    b.dm("c", "a", "hello a")
    b.dm("d", "a", "hi there")
    b.dm("a", "d", "hi back")  # d answered, c not
    b.vote("a", p2, 1)
    b.vote("c", p2, 1)
    b.vote("d", p3, 1)
    b.feed("a", [p1, p2])
    b.end(1)
    tracker = ContextTracker()
    scorer = RewardScorer(params=RewardParams(sentiment="lexicon"), sentiment=LexiconSentiment())
    out = []
    for ev in b.events:
        tracker.feed(ev)
        out.extend(scorer.feed(ev))
    return tracker, scorer, out


def test_context_tracker_builds_the_social_context() -> None:
    tracker, _scorer, scores = play()
    a = next(s for s in scores if s.agent == "a")
    ctx = tracker.context(a, {"SOC": 0.5, "COORD": 0.5}, theme="climate")
    assert ctx.last_dm_senders == ("d", "c")  # most recent first
    assert ctx.unanswered_dm_senders == ("c",)
    assert ctx.recent_partners[0] == "d"
    assert set(ctx.recent_partners) == {"b", "c", "d"}
    assert ctx.trending_topics[0] == "wind"
    assert ctx.last_topics == ("solar",)
    assert {t for t, _, _ in ctx.unseen_topics} == {"farming"}  # a was shown solar and wind
    assert (ctx.top_liked_post_id, ctx.top_liked_author, ctx.top_liked_topic) == (2, "b", "wind")
    assert ctx.gaps[0].component in {"SOC", "COORD"}
    assert ctx.gaps[-1].weight == 0.0
    # the top-liked post is never the agent's own
    b_ctx = tracker.context(next(s for s in scores if s.agent == "b"), {"PRE": 1.0})
    assert b_ctx.top_liked_author == "c"


def _check(tips: tuple, ctx: CoachContext) -> None:
    assert MIN_TIPS <= len(tips) <= MAX_TIPS
    for t in tips:
        assert t.action in {"POST", "COM", "DM", "NOT"}
        assert t.tone in TONES
        assert t.topic
        assert t.text.count(".") <= 1 and t.text.endswith(".")
        assert t.target != ctx.agent
        if t.action == "DM":
            assert t.target in ctx.agents
        if t.action == "COM":
            assert t.target == TOP_LIKED or t.target in ctx.agents
    assert len({(t.action, t.target, t.topic, t.text) for t in tips}) == len(tips)


async def test_rule_coach_tips_follow_gap_order() -> None:
    tracker, _, scores = play()
    a = next(s for s in scores if s.agent == "a")
    lam = {"SOC": 0.1, "INF": 0.2, "PRE": 0.1, "COORD": 0.4, "EMO": 0.2}
    ctx = tracker.context(a, lam, theme="climate")
    tips = await RuleCoach().advise(ctx)
    _check(tips, ctx)
    first = ctx.gaps[0].component
    assert first == "COORD"
    # COORD's primary tip: DM back c, who DMed a last window and got no answer
    assert (tips[0].action, tips[0].target) == ("DM", "c")
    # then the next components with a positive gap, in order
    kinds = {"SOC": "DM", "INF": "COM", "PRE": "POST", "EMO": "DM"}
    positive = [g.component for g in ctx.gaps if g.gap > 0][1:]
    for tip, comp in zip(tips[1:], positive, strict=False):
        assert tip.action == kinds[comp]
    inf_tip = next(t for t in tips if t.action == "COM")
    assert (inf_tip.target, inf_tip.topic) == ("d", "farming")


async def test_rule_coach_single_component_pads_to_three() -> None:
    tracker, _, scores = play()
    a = next(s for s in scores if s.agent == "a")
    ctx = tracker.context(a, {"PRE": 1.0})
    tips = rule_tips(ctx)
    _check(tips, ctx)
    assert tips[0].action == "POST" and tips[0].topic == "wind"  # trending topic


async def test_rule_coach_on_an_empty_world_still_gives_valid_tips() -> None:
    ctx = CoachContext(
        agent="solo",
        window=1,
        lambdas={"EMO": 1.0},
        gaps=order_gaps({"EMO": 0.5}, {"EMO": 1.0}),
        agents=("solo",),
        theme="climate",
    )
    tips = rule_tips(ctx)
    _check(tips, ctx)
    assert all(t.action == "POST" and t.topic == "climate" for t in tips)
    assert rule_tips(ctx) == tips  # deterministic


async def test_rule_coach_never_hands_back_a_tone_word_topic() -> None:
    from friendsim.platform.topics import is_tone_word

    ctx = CoachContext(
        agent="a",
        window=3,
        lambdas={c: 0.2 for c in ("SOC", "INF", "PRE", "COORD", "EMO")},
        gaps=order_gaps(
            {c: 0.1 for c in ("SOC", "INF", "PRE", "COORD", "EMO")},
            {c: 0.2 for c in ("SOC", "INF", "PRE", "COORD", "EMO")},
        ),
        theme="climate change",
        agents=("a", "b", "c"),
        known_users=("b", "c"),
        recent_partners=("b",),
        unanswered_dm_senders=("c",),
        last_topics=("supportive", "neutral"),
        trending_topics=("supportive, neutral", "topic", "heat waves"),
        unseen_topics=(("critical", 4, "b"), ("flood defences", 5, "c")),
        top_liked_post_id=4,
        top_liked_author="b",
        top_liked_topic="neutral",
    )
    tips = rule_tips(ctx)
    assert tips
    topics = {t.topic for t in tips}
    assert not any(is_tone_word(t) for t in topics)
    assert topics <= {"heat waves", "flood defences", "climate change"}
    assert all("neutral" not in t.text and "supportive," not in t.text for t in tips)
