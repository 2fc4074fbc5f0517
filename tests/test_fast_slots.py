"""The slot-by-slot constructors of the hottest values build the objects the dataclasses do."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from friendsim._slots import setters
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
