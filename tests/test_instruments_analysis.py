"""Cascade metrics, exposure, polarization and survey trends, checked by hand on small cases."""

from __future__ import annotations

import pytest

from friendsim.analysis.cascades import cascades, summarise, wiener_virality
from friendsim.analysis.moderation import interventions_table, moderation_over_time
from friendsim.analysis.surveys import polarization, survey_trends
from friendsim.platform.events import (
    AgentRegistered,
    FeedServed,
    InterventionApplied,
    ItemInjected,
    ModerationDecided,
    PersonaChanged,
    PostCreated,
    SurveyAnswered,
    WindowStarted,
)


def post(
    seq: int,
    t: float,
    pid: int,
    author: str,
    *,
    parent: int | None = None,
    quote: int | None = None,
    root: int | None = None,
) -> PostCreated:
    return PostCreated(
        seq=seq, t=t, actor=author, post_id=pid, text="x", topic="t",
        parent_id=parent, root_id=root if parent is not None else None, quote_of=quote,
    )  # fmt: skip


def test_structural_virality_by_hand() -> None:
    # star: root + 3 children: distances 1,1,1 (root-child) and 2,2,2 (child-child) -> 9/6
    assert wiener_virality({0: [1, 2, 3]}, 0) == pytest.approx(1.5)
    # chain r-a-b: 1, 1, 2 -> 4/3
    assert wiener_virality({0: [1], 1: [2]}, 0) == pytest.approx(4 / 3)
    # a lone item
    assert wiener_virality({}, 0) == 0.0
    # r with children a, b; a with child c: pairs r-a 1, r-b 1, r-c 2, a-b 2, a-c 1, b-c 3 -> 10/6
    assert wiener_virality({0: [1, 2], 1: [3]}, 0) == pytest.approx(10 / 6)


def test_cascade_metrics_and_exposure_by_hand() -> None:
    evs = [
        post(1, 0.0, 1, "a"),  # root (injected, false)
        ItemInjected(seq=2, t=0.0, post_id=1, item_id="f1", truth="false", source="S"),
        post(3, 10.0, 2, "b", quote=1),  # repost of 1
        post(4, 20.0, 3, "c", parent=1, root=1),  # reply to 1
        post(5, 30.0, 4, "d", quote=2),  # repost of the repost: depth 2
        post(6, 40.0, 5, "b", parent=3, root=1),  # b again: no new user
        post(7, 50.0, 6, "e"),  # another root, alone
        FeedServed(seq=8, t=60.0, actor="b", ranker="full", post_ids=(1, 6), topics=("t", "t")),
        FeedServed(seq=9, t=60.0, actor="a", ranker="full", post_ids=(1,), topics=("t",)),
        FeedServed(seq=10, t=60.0, actor="f", ranker="full", post_ids=(4,), topics=("t",)),
        FeedServed(seq=11, t=70.0, actor="c", ranker="full", post_ids=(1, 2), topics=("t", "t")),
    ]
    first, second = cascades(evs)
    assert (first.root, first.size, first.reposts, first.replies) == (1, 5, 2, 2)
    # levels: {1}, {2, 3}, {4, 5} -> depth 2, max breadth 2
    assert (first.depth, first.max_breadth) == (2, 2)
    # edges (below-sizes): 1-2 (2: {2,4}), 2-4 (1), 1-3 (2: {3,5}), 3-5 (1)
    # Wiener = 2*3 + 1*4 + 2*3 + 1*4 = 20 over 10 pairs
    assert first.virality == pytest.approx(2.0)
    assert first.users == 4  # a, b, c, d
    assert first.time_to == {2: 10.0, 5: None, 10: None}
    # exposure: served the root: b, c (a is its author); reach: b, c, f (f saw the repost 4)
    assert (first.exposed, first.reach) == (2, 3)
    assert (first.truth, first.item_id, first.source) == ("false", "f1", "S")
    assert (second.size, second.depth, second.virality, second.exposed, second.truth) == (
        1,
        0,
        0.0,
        1,
        None,
    )
    summary = summarise([first, second])
    assert summary["all"]["items"] == 2 and summary["all"]["mean_size"] == 3.0
    (false,) = summary["by_truth"]
    assert (false["truth"], false["items"], false["mean_size"], false["mean_exposed"]) == (
        "false",
        1,
        5.0,
        2.0,
    )
    assert summary["injected"][0]["reach"] == 3


def test_polarization_by_hand() -> None:
    assert polarization([4, 4, 4, 4]) == 0.0
    assert polarization([1, 7, 1, 7]) == pytest.approx(1.0)  # the largest split
    # 1, 4, 7: mean 4, variance (9 + 0 + 9)/3 = 6 -> 6/9
    assert polarization([1, 4, 7]) == pytest.approx(6 / 9)
    assert polarization([5]) == 0.0


def test_survey_trends_by_hand() -> None:
    evs = [
        ItemInjected(seq=1, t=0.0, post_id=1, item_id="f1", truth="false"),
        ItemInjected(seq=2, t=0.0, post_id=2, item_id="t1", truth="true"),
        SurveyAnswered(seq=3, t=1.0, actor="a", survey="s", window=2, answers={"stance": 1, "belief:f1": 6, "belief:t1": 4, "trust:S": 3}),
        SurveyAnswered(seq=4, t=1.0, actor="b", survey="s", window=2, answers={"stance": 7, "belief:f1": 2, "belief:t1": 6, "trust:S": 5}),
        SurveyAnswered(seq=5, t=2.0, actor="a", survey="s", window=4, answers={"stance": 4, "belief:f1": 1}),
        SurveyAnswered(seq=6, t=2.0, actor="b", survey="s", window=4, answers={"stance": 4, "belief:f1": 3}),
    ]  # fmt: skip
    got = survey_trends(evs)
    assert [(r["window"], r["mean"], r["polarization"]) for r in got["stance"]] == [
        (2, 4.0, 1.0),
        (4, 4.0, 0.0),
    ]
    assert [(r["window"], r["truth"], r["mean_belief"]) for r in got["belief"]] == [
        (2, "false", 4.0), (2, "true", 5.0), (4, "false", 2.0)
    ]  # fmt: skip
    assert got["trust"] == [{"window": 2, "source": "S", "answers": 2, "mean_trust": 4.0}]
    assert got["trajectories"] == {"a": {"2": 1, "4": 4}, "b": {"2": 7, "4": 4}}
    assert survey_trends([]) == {}


def test_an_agent_asked_by_two_surveys_of_a_window_counts_once() -> None:
    """Two surveys at window 2, the second of a sample (``b``): ``b``'s stance weighed double
    in the window's mean and polarization, and its stance and belief answers were counted as
    two respondents'."""
    evs = [
        ItemInjected(seq=1, t=0.0, post_id=1, item_id="f1", truth="false"),
        SurveyAnswered(seq=2, t=1.0, actor="a", survey="panel", window=2, answers={"stance": 1, "belief:f1": 2}),
        SurveyAnswered(seq=3, t=1.0, actor="b", survey="panel", window=2, answers={"stance": 7, "belief:f1": 6}),
        SurveyAnswered(seq=4, t=1.0, actor="b", survey="pulse", window=2, answers={"stance": 5, "belief:f1": 6}),
    ]  # fmt: skip
    got = survey_trends(evs)
    ((row,),) = [got["stance"]]
    assert (row["respondents"], row["mean"]) == (2, 3.5)  # a: 1, b: (7 + 5) / 2
    assert row["polarization"] == pytest.approx(polarization([1, 6]))
    assert got["belief"] == [{"window": 2, "truth": "false", "answers": 2, "mean_belief": 4.0}]
    assert got["trajectories"] == {"a": {"2": 1}, "b": {"2": 6}}
    assert (got["respondents"], got["answers"]) == (2, 3)


def test_interventions_and_moderation_tables() -> None:
    evs = [
        WindowStarted(seq=1, t=0.0, window=1),
        InterventionApplied(seq=2, t=0.0, window=1, intervention="inject", name="drop"),
        AgentRegistered(seq=3, t=0.0, actor="news", name="news", attributes={"role": "outside account"}),
        post(4, 0.0, 1, "news"),
        ItemInjected(seq=5, t=0.0, post_id=1, item_id="x", truth="true"),
        ModerationDecided(seq=6, t=0.0, window=1, moderator="rule", action="label", post_id=1, author="news", label="L"),
        WindowStarted(seq=7, t=10.0, window=2),
        InterventionApplied(seq=8, t=10.0, window=2, intervention="add_agents"),
        AgentRegistered(seq=9, t=10.0, actor="n1", name="n1"),
        PersonaChanged(seq=10, t=10.0, agent="n1", window=2, fields={"lambdas": {"SOC": 1.0}}),
        InterventionApplied(seq=11, t=10.0, window=2, intervention="reward_mix"),
        PersonaChanged(seq=12, t=10.0, agent="n1", window=2, fields={"lambdas": {"EMO": 1.0}}),
    ]  # fmt: skip
    table = [(r["window"], r["kind"], r["injected"], r["joined"], r["changed"]) for r in interventions_table(evs)]  # fmt: skip
    assert table == [
        (1, "inject", 1, 0, 0), (2, "add_agents", 0, 1, 0), (2, "reward_mix", 0, 0, 1)
    ]  # fmt: skip  # a newcomer's own reward mix is not a change of its persona
    assert moderation_over_time(evs) == [
        {"window": 1, "moderator": "rule", "action": "label", "count": 1}
    ]
