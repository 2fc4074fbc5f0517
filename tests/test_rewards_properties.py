"""Property tests: every component and the total stay in [0, 1] on arbitrary logs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from friendsim.analysis.rewards import RewardParams, score_log
from friendsim.analysis.rewards_params import COMPONENTS
from friendsim.analysis.rewards_synth import LogBuilder
from friendsim.analysis.sentiment import LexiconSentiment

AGENTS = ["a", "b", "c", "d"]
TEXTS = ["great thanks", "terrible wrong", "hello there", "not good", "love it but bad", ""]
TOPICS = ["x", "y", "Z z", "#x", ""]

agent = st.sampled_from(AGENTS)
op = st.one_of(
    st.tuples(st.just("post"), agent, st.sampled_from(TOPICS), st.lists(agent, max_size=3)),
    st.tuples(st.just("comment"), agent, st.integers(0, 50), st.sampled_from(TEXTS)),
    st.tuples(st.just("dm"), agent, agent, st.sampled_from(TEXTS)),
    st.tuples(st.just("vote"), agent, st.integers(0, 50), st.sampled_from([-1, 0, 1])),
    st.tuples(st.just("feed"), agent, st.lists(st.integers(0, 50), max_size=8), st.booleans()),
    st.tuples(st.just("follow"), agent, agent),
    st.tuples(st.just("window"), st.sampled_from(["rounds", "continuous"])),
)
params = st.builds(
    RewardParams,
    beta_soc=st.floats(0, 1),
    beta_inf=st.floats(0, 1),
    beta_pre=st.floats(0, 1),
    beta_coord=st.floats(0, 1),
    beta_emo=st.floats(-5, 5),
    n_actions=st.integers(1, 5),
    sentiment=st.just("lexicon"),
)
lambda_mix = st.lists(st.floats(0.01, 1), min_size=5, max_size=5).map(
    lambda ws: {c: w / sum(ws) for c, w in zip(COMPONENTS, ws, strict=True)}
)


def build(ops: list[tuple]) -> LogBuilder:
    """Apply ops through a builder that keeps votes consistent (cast/change/clear)."""
    b = LogBuilder()
    b.register(*AGENTS)
    window = 1
    b.start(window)
    posts: list[int] = []
    votes: dict[tuple[str, int], int] = {}
    for o in ops:
        match o:
            case ("post", a, topic, mentions):
                posts.append(b.post(a, topic, mentions=mentions))
            case ("comment", a, i, text) if posts:
                posts.append(b.comment(a, posts[i % len(posts)], text))
            case ("dm", a, r, text) if a != r:
                b.dm(a, r, text)
            case ("vote", a, i, v) if posts:
                pid = posts[i % len(posts)]
                old = votes.get((a, pid), 0)
                if b.authors[pid] == a or old == v:
                    continue
                if old == 0:
                    b.vote(a, pid, v)
                elif v == 0:
                    b.clear_vote(a, pid, old)
                else:
                    b.change_vote(a, pid, old, v)
                votes[(a, pid)] = v
            case ("feed", a, idx, with_topics) if posts:
                b.feed(a, [posts[i % len(posts)] for i in idx], with_topics=with_topics)
            case ("follow", a, t) if a != t:
                b.follow(a, t)
            case ("window", mode):
                b.end(window)
                window += 1
                b.start(window, mode)
    b.end(window)
    return b


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(op, max_size=80), p=params, mix=lambda_mix)
def test_components_and_total_in_unit_interval(ops: list[tuple], p: RewardParams, mix) -> None:
    b = build(ops)
    scores = score_log(b.events, params=p, lambdas={"a": mix}, sentiment=LexiconSentiment())
    n_windows = sum(1 for e in b.events if e.kind == "window_ended")
    assert len(scores) == n_windows * len(AGENTS)
    for s in scores:
        assert set(s.components) == set(COMPONENTS)
        for c, v in s.components.items():
            assert 0.0 <= v <= 1.0, (c, v, s)
        assert -1e-12 <= s.total <= 1.0 + 1e-12


@settings(max_examples=50, deadline=None)
@given(ops=st.lists(op, max_size=60))
def test_scoring_is_a_pure_function_of_the_log(ops: list[tuple]) -> None:
    events = build(ops).events
    p = RewardParams(sentiment="lexicon")
    first = score_log(events, params=p, sentiment=LexiconSentiment())
    again = score_log(list(events), params=p, sentiment=LexiconSentiment())
    assert first == again
