"""``parse_votes``: its fast path for answers in the schema's exact shape gives what the
pydantic model gives, for every answer, well-formed or not (hypothesis), and the errors a
re-ask echoes to the model name the problem."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from friendsim.agents.schema import OutputError, VoteOut, parse_some_votes, parse_votes

IDS = [3, 5, 8, 13]


def reference(value: Any, post_ids: list[int]) -> dict[int, int] | str:
    """The pydantic model alone (the behaviour before the fast path), as a result or a reason."""
    try:
        out = VoteOut.model_validate(value)
    except ValidationError:
        return "bad_schema"
    votes: dict[int, int] = {}
    for e in out.votes:
        if e.post_id not in post_ids:
            return "unknown_post"
        if e.post_id in votes:
            return "duplicate_vote"
        votes[e.post_id] = int(e.vote)
    if any(p not in votes for p in post_ids):
        return "missing_votes"
    return votes


def outcome(value: Any, post_ids: list[int]) -> dict[int, int] | str:
    try:
        return parse_votes(value, post_ids)
    except OutputError as exc:
        return exc.reason


scalars = st.one_of(
    st.sampled_from([*IDS, 4, 99]),
    st.sampled_from([-1, 0, 1, 2, -2]),
    st.booleans(),
    st.floats(allow_nan=False, min_value=-2, max_value=14),
    st.sampled_from(["1", "-1", "x", "13"]),
    st.none(),
)
entry = st.one_of(
    st.fixed_dictionaries({"post_id": st.sampled_from(IDS), "vote": st.sampled_from([-1, 0, 1])}),
    st.fixed_dictionaries(
        {"post_id": scalars, "vote": scalars}, optional={"why": st.text(max_size=5)}
    ),
    st.dictionaries(st.sampled_from(["post_id", "vote", "id"]), scalars, max_size=3),
    scalars,
)
answers = st.one_of(
    st.fixed_dictionaries({"votes": st.lists(entry, max_size=6)}),
    st.fixed_dictionaries({"votes": st.lists(entry, max_size=6)}, optional={"note": scalars}),
    st.dictionaries(st.sampled_from(["votes", "vote"]), scalars, max_size=2),
    st.lists(entry, max_size=3),
    scalars,
)


@settings(max_examples=400, deadline=None)
@given(answers)
def test_the_fast_path_agrees_with_the_model(value: Any) -> None:
    assert outcome(value, IDS) == reference(value, IDS)


def test_well_formed_answers_in_any_order() -> None:
    value = {
        "votes": [{"post_id": p, "vote": v} for p, v in zip(IDS[::-1], (1, 0, -1, 1), strict=True)]
    }
    assert parse_votes(value, IDS) == {13: 1, 8: 0, 5: -1, 3: 1}


@pytest.mark.parametrize(
    ("value", "reason", "words"),
    [
        ({"votes": [{"post_id": 3, "vote": True}]}, "missing_votes", "no vote for post ids"),
        ({"votes": [{"post_id": 3, "vote": 2}]}, "bad_schema", "do not match"),
        ({"votes": [{"post_id": 4, "vote": 1}]}, "unknown_post", "post_id 4"),
        ({"votes": [{"post_id": 3, "vote": 1}] * 2}, "duplicate_vote", "post_id 3"),
    ],
)
def test_errors_name_the_problem(value: Any, reason: str, words: str) -> None:
    with pytest.raises(OutputError, match=words) as info:
        parse_votes(value, IDS)
    assert info.value.reason == reason


def test_votes_on_settled_posts_are_passed_over_and_others_still_refused() -> None:
    answer = {
        "votes": [{"post_id": 1, "vote": -1}, {"post_id": 7, "vote": 1}, {"post_id": 2, "vote": 0}]
    }
    assert parse_some_votes(answer, [7], settled={1: 1, 2: 1}) == ({7: 1}, None)
    with pytest.raises(OutputError) as err:
        parse_some_votes(answer, [7], settled={1: 1})
    assert err.value.reason == "unknown_post" and "post_id 2" in str(err.value)
    with pytest.raises(OutputError) as err:
        parse_some_votes({"votes": [{"post_id": 1, "vote": 1}]}, [7], settled={1: 1})
    assert err.value.reason == "missing_votes"
