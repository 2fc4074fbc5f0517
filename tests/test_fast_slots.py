"""The slot-by-slot constructors of the hottest values build the objects the dataclasses do."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from friendsim._slots import setters
from friendsim.analysis.rewards_params import COMPONENTS
from friendsim.coach.base import Gap, order_gaps
from friendsim.platform.events import VoteCast, VoteChanged
from friendsim.runtime.apply import _RECEIVED_FIELDS, received_vote
from friendsim.vocabulary import ReceivedVote


@settings(max_examples=200, deadline=None)
@given(
    actor=st.one_of(st.none(), st.text(max_size=8)),
    post_id=st.integers(min_value=1, max_value=2**40),
    value=st.sampled_from([-1, 1]),
    changed=st.booleans(),
)
def test_received_vote_is_the_dataclass(
    actor: str | None, post_id: int, value: int, changed: bool
) -> None:
    assert set(_RECEIVED_FIELDS) == {f.name for f in dataclasses.fields(ReceivedVote)}
    event = (
        VoteChanged(seq=3, t=1.0, actor=actor, post_id=post_id, author="z", old=-value, value=value)
        if changed
        else VoteCast(seq=3, t=1.0, actor=actor, post_id=post_id, author="z", value=value)
    )
    fast = received_vote(event)
    slow = ReceivedVote(voter=actor or "", post_id=post_id, value=value)
    assert type(fast) is ReceivedVote
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.value = 0  # type: ignore[misc]


def test_setters_name_a_missing_slot() -> None:
    with pytest.raises(AttributeError, match="ReceivedVote has no slot 'nope'"):
        setters(ReceivedVote, "voter", "nope")


def _order_gaps_by_dataclass(
    components: dict[str, float], lambdas: dict[str, float], mode: str
) -> tuple[Gap, ...]:
    """The reference: ``Gap`` objects built by the dataclass, sorted by their fields."""
    weighted = {c: lambdas.get(c, 0.0) * components.get(c, 0.0) for c in COMPONENTS}
    total = sum(weighted.values())
    gaps = []
    for c in COMPONENTS:
        w, r = lambdas.get(c, 0.0), components.get(c, 0.0)
        g = w * (1.0 - r) if mode == "shortfall" else w - (weighted[c] / total if total > 0 else w)
        gaps.append(Gap(component=c, weight=w, score=r, gap=g))
    order = {c: i for i, c in enumerate(COMPONENTS)}
    return tuple(sorted(gaps, key=lambda g: (-g.gap, -g.weight, order[g.component])))


_unit = st.floats(min_value=-0.5, max_value=1.5, allow_nan=False) | st.sampled_from(
    [0.0, -0.0, 1.0]
)


@settings(max_examples=300, deadline=None)
@given(
    components=st.dictionaries(st.sampled_from(COMPONENTS), _unit),
    lambdas=st.dictionaries(st.sampled_from(COMPONENTS), st.sampled_from([0.0, 0.1, 0.6]) | _unit),
    mode=st.sampled_from(["shortfall", "share"]),
)
def test_order_gaps_is_the_dataclass_sort(
    components: dict[str, float], lambdas: dict[str, float], mode: str
) -> None:
    fast = order_gaps(components, lambdas, mode=mode)  # type: ignore[arg-type]
    slow = _order_gaps_by_dataclass(components, lambdas, mode)
    assert all(type(g) is Gap for g in fast)
    assert [repr(g) for g in fast] == [repr(g) for g in slow]  # -0.0 and 0.0 told apart
    assert fast == slow and hash(fast) == hash(slow)
    with pytest.raises(ValueError, match="unknown gap mode 'nope'"):
        order_gaps(components, lambdas, mode="nope")  # type: ignore[arg-type]
