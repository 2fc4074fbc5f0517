"""Properties of the tie update on random logs (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from friendsim.analysis.ties import TieParams, evidence_value, tie_windows
from friendsim.platform.events import (
    DirectMessageSent,
    Event,
    FeedServed,
    PostCreated,
    VoteCast,
    WindowEnded,
    WindowStarted,
)

AGENTS = ("a", "b", "c", "d")
TOPICS = ("t1", "t2", "t3")


class Sent:
    name = "len"

    def score(self, text: str) -> float:
        return (len(text) % 5) / 2 - 1  # deterministic, in [-1, 1]


action = st.tuples(
    st.sampled_from(("post", "comment", "vote", "dm", "feed")),
    st.sampled_from(AGENTS),
    st.sampled_from(AGENTS),
    st.sampled_from(TOPICS),
    st.sampled_from((-1, 1)),
    st.text(alphabet="xyz ", max_size=6),
)


@st.composite
def logs(draw: st.DrawFn) -> list[Event]:
    windows = draw(st.lists(st.lists(action, max_size=12), min_size=1, max_size=6))
    evs: list[Event] = []
    posts: list[tuple[int, str, str]] = []
    pid = dm = 0
    for w, acts in enumerate(windows, start=1):
        evs.append(WindowStarted(t=0, window=w))
        for kind, v, u, topic, val, text in acts:
            if kind == "post" or (kind == "comment" and not posts):
                pid += 1
                evs.append(PostCreated(t=0, actor=v, post_id=pid, text=text, topic=topic))
                posts.append((pid, v, topic))
            elif kind == "comment":
                parent = posts[pid % len(posts)]
                pid += 1
                evs.append(
                    PostCreated(t=0, actor=v, post_id=pid, text=text, topic=topic,
                                parent_id=parent[0], mentions=(u,) if u != v else ())
                )  # fmt: skip
                posts.append((pid, v, topic))
            elif kind == "vote" and posts:
                p = posts[(pid + len(text)) % len(posts)]
                if p[1] != v:
                    evs.append(VoteCast(t=0, actor=v, post_id=p[0], author=p[1], value=val))
            elif kind == "dm" and u != v:
                dm += 1
                evs.append(
                    DirectMessageSent(t=0, actor=v, dm_id=dm, recipient=u, text=text, topic=topic)
                )
            elif kind == "feed" and posts:
                shown = posts[-3:]
                evs.append(
                    FeedServed(t=0, actor=u, ranker="all", post_ids=tuple(p[0] for p in shown),
                               topics=tuple(p[2] for p in shown))
                )  # fmt: skip
        evs.append(WindowEnded(t=0, window=w))
    return [replace(e, seq=i + 1, t=float(i)) for i, e in enumerate(evs)]


params_st = st.builds(
    TieParams,
    xi=st.floats(0.0, 0.5),
    delta_max=st.floats(0.01, 1.0),
    half_life=st.floats(0.5, 10.0),
    beta_rec=st.floats(0.05, 1.0),
    w_tone=st.floats(0.0, 3.0),
    prune_below=st.just(0.0),
)


@settings(max_examples=60, deadline=None)
@given(log=logs(), params=params_st)
def test_update_invariants(log: list[Event], params: TieParams) -> None:
    wins = tie_windows(log, params=params, sentiment=Sent())
    prev: dict[tuple[str, str], float] = {}
    for tw in wins:
        for pair, a in tw.strengths.items():
            assert 0.0 < a <= 1.0
            assert pair[0] != pair[1]
        for ev in tw.evidence.values():
            assert 0.0 <= ev.e <= 1.0
        for pair in set(prev) | set(tw.strengths):
            before, after = prev.get(pair, 0.0), tw.strengths.get(pair, 0.0)
            if pair in tw.active:
                gain = after - before
                assert -1e-12 <= gain <= params.delta_max + 1e-12
                if tw.evidence[pair].e <= params.xi:
                    assert after == pytest.approx(before)
            else:
                assert after == pytest.approx(before * (1 - params.decay))
        prev = dict(tw.strengths)


@settings(max_examples=200, deadline=None)
@given(
    sig=st.tuples(
        st.sampled_from((0.0, 1.0)),
        st.none() | st.floats(0, 1),
        st.none() | st.floats(0, 1),
        st.none() | st.floats(0, 1),
    ),
    which=st.integers(0, 3),
    bump=st.floats(0, 1),
)
def test_evidence_map_monotone(
    sig: tuple[float, float | None, float | None, float | None], which: int, bump: float
) -> None:
    p = TieParams(w_novelty=0.5, w_approval=2.0, w_reciprocity=1.0, w_tone=0.7)
    names = ("novelty", "approval", "reciprocity", "tone")
    base = dict(zip(names, sig, strict=True))
    if base[names[which]] is None:
        return
    higher = dict(base)
    higher[names[which]] = min(1.0, float(base[names[which]]) + bump)  # type: ignore[arg-type]
    e0 = evidence_value(p, **base)  # type: ignore[arg-type]
    e1 = evidence_value(p, **higher)  # type: ignore[arg-type]
    assert 0.0 <= e0 <= e1 + 1e-12 <= 1.0 + 1e-12
