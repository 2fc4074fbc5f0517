"""Graphs from events (follow, interaction) and the JSON network summary, checked by hand."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from test_ties import FakeSentiment, P, build_log

from friendsim.analysis.graphs import (
    agents_and_attributes,
    follow_graph,
    interaction_arrays,
    interaction_graph,
    interaction_graphs_by_window,
    iter_interactions,
    undirected_weighted,
)
from friendsim.analysis.network_tables import window_networks
from friendsim.analysis.rewards import score_log
from friendsim.analysis.summary import network_summary
from friendsim.analysis.ties import TieParams, tie_windows
from friendsim.platform.events import (
    AgentRegistered,
    DirectMessageSent,
    Event,
    Followed,
    PostCreated,
    Unfollowed,
    VoteCast,
    VoteCleared,
    WindowEnded,
    WindowStarted,
)


def social_log() -> list[Event]:
    evs: list[Event] = [
        AgentRegistered(t=0, actor=a, name=a, attributes={"group": g, "age": 30})
        for a, g in (("a", "x"), ("b", "x"), ("c", "y"), ("d", "y"))
    ]
    evs += [
        Followed(t=0, actor="a", target="b"),
        Followed(t=0, actor="b", target="a"),
        Followed(t=0, actor="c", target="a"),
        Unfollowed(t=0, actor="c", target="a"),
        Followed(t=0, actor="d", target="a"),
        WindowStarted(t=0, window=1),
        PostCreated(t=0, actor="a", post_id=1, text="p", topic="t"),
        PostCreated(t=0, actor="b", post_id=2, text="c", topic="t", mentions=("c",), parent_id=1),
        VoteCast(t=0, actor="c", post_id=1, author="a", value=1),
        WindowEnded(t=0, window=1),
        WindowStarted(t=0, window=2),
        DirectMessageSent(t=0, actor="a", dm_id=1, recipient="b", text="hi", mentions=("d",)),
        VoteCast(t=0, actor="d", post_id=2, author="b", value=-1),
        VoteCleared(t=0, actor="c", post_id=1, author="a", old=1),
        WindowEnded(t=0, window=2),
    ]
    return [replace(e, seq=i + 1, t=float(i)) for i, e in enumerate(evs)]


def test_agents_and_attributes() -> None:
    agents, attrs = agents_and_attributes(social_log())
    assert agents == ("a", "b", "c", "d")
    assert attrs == {
        "group": {"a": "x", "b": "x", "c": "y", "d": "y"},
        "age": dict.fromkeys("abcd", "30"),
    }


def test_follow_graph_replays_follow_and_unfollow() -> None:
    g = follow_graph(social_log(), nodes=("a", "b", "c", "d"))
    assert set(g.edges) == {("a", "b"), ("b", "a"), ("d", "a")}
    assert set(g.nodes) == {"a", "b", "c", "d"}


def test_interaction_graph_counts_kinds() -> None:
    g = interaction_graph(social_log())
    assert {(u, v): d["weight"] for u, v, d in g.edges(data=True)} == {
        ("b", "a"): 1,
        ("b", "c"): 1,
        ("c", "a"): 1,
        ("a", "b"): 1,
        ("a", "d"): 1,
        ("d", "b"): 1,
    }
    assert g["b"]["a"]["comment"] == 1 and g["b"]["c"]["mention"] == 1
    assert g["a"]["b"]["dm"] == 1 and g["d"]["b"]["vote"] == 1
    per = dict(interaction_graphs_by_window(social_log()))
    assert set(per[1].edges) == {("b", "a"), ("b", "c"), ("c", "a")}
    assert set(per[2].edges) == {("a", "b"), ("a", "d"), ("d", "b")}
    cum = dict(interaction_graphs_by_window(social_log(), cumulative=True))
    assert cum[2].number_of_edges() == 6 and cum[1].number_of_edges() == 3
    und = undirected_weighted(g)
    assert und["a"]["b"]["weight"] == 2 and und.number_of_edges() == 5
    only2 = interaction_graph(social_log(), windows=[2])
    assert set(only2.edges) == set(per[2].edges)


def test_cumulative_interaction_graphs_hold_only_what_happened_by_each_window_end() -> None:
    evs = social_log()
    between = DirectMessageSent(t=0, actor="c", dm_id=7, recipient="d", text="x")
    after = DirectMessageSent(t=0, actor="d", dm_id=8, recipient="c", text="y")
    end1 = next(i for i, e in enumerate(evs) if isinstance(e, WindowEnded))
    evs = [*evs[: end1 + 1], between, *evs[end1 + 1 :], after]
    evs = [replace(e, seq=i + 1, t=float(i)) for i, e in enumerate(evs)]
    cum = dict(interaction_graphs_by_window(evs, cumulative=True))
    # window 1: its own three interactions; the DM c→d came after its end, d→c after window 2
    assert set(cum[1].edges) == {("b", "a"), ("b", "c"), ("c", "a")}
    window2 = {("a", "b"), ("a", "d"), ("d", "b")}
    assert set(cum[2].edges) == set(cum[1].edges) | {("c", "d")} | window2
    assert cum[2]["c"]["d"]["dm"] == 1 and cum[2]["b"]["a"]["weight"] == 1
    # a window that never ended holds everything to the end of the log
    open_end = [e for e in evs if not (isinstance(e, WindowEnded) and e.window == 2)]
    last = dict(interaction_graphs_by_window(open_end, cumulative=True))[2]
    assert set(last.edges) == set(interaction_graph(open_end).edges)


def test_network_summary_by_hand() -> None:
    attributes = {"a": {"group": "x"}, "b": {"group": "x"}, "c": {"group": "y"}}
    s = network_summary(build_log(), attributes=attributes, params=P, sentiment=FakeSentiment())
    json.dumps(s, allow_nan=False)  # strict JSON
    assert s["windows"] == [1, 2, 3, 4] and s["agents"] == 3
    assert s["thetas"] == ["0.01", "0.05", "0.1"]
    # final strengths (see test_ties): S{a,b} = 0.0622, S{a,c} = 0.075
    f05 = s["ties"]["final"]["0.05"]
    assert f05["edges"] == 2 and f05["density"] == pytest.approx(2 / 3)
    assert f05["clustering"] == 0.0 and f05["lcc"] == 1.0
    assert f05["avg_path"] == pytest.approx(4 / 3)
    assert f05["path_ln"] == pytest.approx((4 / 3) / math.log(3))
    assert f05["modularity"] == pytest.approx(0.0)
    # edges a-b (same group), a-c (different): (1/2) / (1/3)
    assert f05["homophily"]["group"]["same_ratio"] == pytest.approx(1.5)
    assert f05["reference"]["density"]["inside"] is False
    assert s["ties"]["final"]["0.1"]["edges"] == 0
    # window 1: S{a,b} = S{a,c} = 0.1 exactly → edges at θ = 0.1 (binarise with ≥)
    w1 = s["ties"]["per_window"][0]
    assert w1["active_pairs"] == 2 and w1["thetas"]["0.1"]["edges"] == 2
    assert w1["mean_evidence"] == pytest.approx((2 / 3 + 0.9) / 2, abs=1e-6)
    dyn = s["ties"]["dynamics"]["0.01"]
    assert len(dyn) == 3
    assert dyn[0] == {"triadic_closure": None, "jaccard": 1.0, "retained": 1.0}
    strengths = {(r["source"], r["target"]): r["strength"] for r in s["ties"]["strengths"]}
    assert strengths[("c", "a")] == pytest.approx(0.05)
    # interactions: comment a→b; DMs a→c, c→a; mention a→c; votes b→a (w1), a→b, b→a (w2)
    inter = s["interaction"]["final"]
    assert inter["interactions"] == {"comment": 1, "dm": 2, "mention": 1, "vote": 3}
    assert inter["total_weight"] == 7
    assert inter["reciprocity"] == pytest.approx(1.0)  # a↔b, a↔c
    assert len(s["interaction"]["per_window"]) == 4
    assert s["follow"]["edges"] == 0 and s["follow"]["reciprocity"] is None


def test_network_summary_rejects_attribute_first_mapping() -> None:
    from friendsim.analysis.summary import AttributesShapeError

    with pytest.raises(AttributesShapeError, match="agent id"):
        network_summary(
            build_log(),
            attributes={"group": {"a": "x", "b": "y"}},
            params=P,
            sentiment=FakeSentiment(),
        )


def test_format_summary_marks_reference_ranges() -> None:
    from friendsim.analysis.summary import format_summary

    s = network_summary(build_log(), attributes={}, params=P, sentiment=FakeSentiment())
    text = format_summary(s)
    # θ=0.05: density 2/3 > max 0.4688 → ✗; clustering 0 < min 0.2798 → ✗; LCC 1 inside → ✓
    assert "| ties θ=0.05 | 2 | 0.6667 ✗ | 0.0000 ✗ | 1.0000 ✓ |" in text
    assert "| follow | 0 |" in text and "| interaction | 2 | 0.6667 |" in text


def restarted_log() -> list[Event]:
    """Window 1 started again before it ended, window 2 abandoned by window 3, then a DM
    outside any window: the rewards count only what follows a window's last start."""
    evs: list[Event] = [AgentRegistered(t=0, actor=a, name=a) for a in "abcde"]
    evs += [
        WindowStarted(t=0, window=1),
        DirectMessageSent(t=0, actor="a", dm_id=1, recipient="b", text="dropped"),
        WindowStarted(t=0, window=1),
        DirectMessageSent(t=0, actor="c", dm_id=2, recipient="d", text="kept"),
        WindowEnded(t=0, window=1),
        WindowStarted(t=0, window=2),
        DirectMessageSent(t=0, actor="d", dm_id=3, recipient="e", text="abandoned"),
        WindowStarted(t=0, window=3),
        DirectMessageSent(t=0, actor="e", dm_id=4, recipient="a", text="kept"),
        WindowEnded(t=0, window=3),
        DirectMessageSent(t=0, actor="b", dm_id=5, recipient="c", text="between"),
    ]
    return [replace(e, seq=i + 1, t=float(i)) for i, e in enumerate(evs)]


def test_a_window_started_again_counts_in_every_analysis_as_in_the_rewards() -> None:
    evs = restarted_log()
    agents = tuple("abcde")
    sent = {(s.window, s.agent): s.detail["sent"] for s in score_log(evs)}
    assert {k: v for k, v in sent.items() if v} == {(1, "c"): 1, (3, "e"): 1}
    ties = {tw.window: set(tw.active) for tw in tie_windows(evs, params=TieParams())}
    assert ties == {1: {("c", "d")}, 3: {("e", "a")}}

    per = interaction_graphs_by_window(evs, nodes=agents)
    assert [w for w, _ in per] == [1, 3]
    assert {w: set(g.edges) for w, g in per} == ties
    arrays = interaction_arrays(evs, nodes=agents)
    assert [w for w, _ in arrays.per_window] == [1, 3]
    for (_, a), (_, g) in zip(arrays.per_window, per, strict=True):
        assert a.edge_pairs() == {frozenset(e) for e in g.edges}
    assert set(interaction_graph(evs, windows=[1, 2, 3]).edges) == {("c", "d"), ("e", "a")}
    rows = [r for net in window_networks("interactions", evs) for r in net.rows]
    assert {(r["window"], r["source"], r["target"]) for r in rows} == {
        (1, "c", "d"),
        (3, "e", "a"),
    }
    cum = dict(interaction_graphs_by_window(evs, nodes=agents, cumulative=True))
    assert set(cum) == {1, 3}
    assert set(cum[1].edges) == {("a", "b"), ("c", "d")}  # what happened by window 1's end
    assert set(cum[3].edges) == {("a", "b"), ("c", "d"), ("d", "e"), ("e", "a")}
    # the whole log still holds every interaction, the abandoned ones outside any window
    assert [(i.window, i.source) for i in iter_interactions(evs)] == [
        (None, "a"),
        (1, "c"),
        (None, "d"),
        (3, "e"),
        (None, "b"),
    ]
