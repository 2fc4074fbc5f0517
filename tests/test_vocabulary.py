"""The shared vocabulary: tips round-trip losslessly through the event log, and a stored tip
that is not exactly what friendsim writes is a decode error naming the event."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, fields
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from friendsim.platform.events import (
    EventDecodeError,
    GuidanceIssued,
    event_from_row,
    event_to_row,
)
from friendsim.platform.projection import payload_json as fast_payload_json
from friendsim.vocabulary import ActionType, Tip, Tone

TIPS = (
    Tip(
        action="DM", target="b", topic="climate", invite_mention=True, tone="supportive", text="Hi."
    ),
    Tip(action="NOT", target=None, topic="", invite_mention=False, tone="neutral", text="Rest."),
)


def test_tip_dict_round_trip_is_lossless() -> None:
    for tip in TIPS:
        assert Tip.from_dict(tip.to_dict()) == tip
        assert Tip.from_dict(json.loads(json.dumps(tip.to_dict()))) == tip


@settings(max_examples=60, deadline=None)
@given(
    action=st.sampled_from(sorted(get_args(ActionType))),
    target=st.none() | st.text(max_size=12),
    topic=st.text(max_size=20),
    invite=st.booleans(),
    tone=st.sampled_from(sorted(get_args(Tone))),
    text=st.text(max_size=40),
)
def test_a_decoded_tip_is_the_one_its_constructor_makes(
    action: str, target: str | None, topic: str, invite: bool, tone: str, text: str
) -> None:
    """``from_dict`` sets the slots directly (faster than the frozen ``__init__``): every field
    set, equal, same hash and repr, still frozen."""
    made = Tip(action=action, target=target, topic=topic, invite_mention=invite, tone=tone,
               text=text)  # type: ignore[arg-type]  # fmt: skip
    back = Tip.from_dict(json.loads(json.dumps(made.to_dict())))
    assert back == made and hash(back) == hash(made) and repr(back) == repr(made)
    assert [getattr(back, f.name) for f in fields(Tip)] == [
        getattr(made, f.name) for f in fields(Tip)
    ]
    with pytest.raises(FrozenInstanceError):
        back.text = "changed"  # type: ignore[misc]


def test_a_guidance_without_tips_is_a_decode_error() -> None:
    row = list(
        event_to_row(GuidanceIssued(seq=4, t=0.0, actor="coach", agent="a", window=1, tips=TIPS))
    )
    payload = json.loads(row[4])
    del payload["tips"]
    row[4] = json.dumps(payload)
    with pytest.raises(EventDecodeError, match=r"seq=4 .*'tips' must be a list, got NoneType"):
        event_from_row(*row)


def test_guidance_event_stores_tips_as_objects_and_decodes_typed_tips() -> None:
    ev = GuidanceIssued(seq=7, t=1.5, actor="coach", agent="a", window=2, tips=TIPS)
    row = event_to_row(ev)
    stored = json.loads(row[4])
    assert stored["tips"] == [t.to_dict() for t in TIPS]
    assert row[4] == fast_payload_json(ev)
    back = event_from_row(*row)
    assert back == ev
    assert isinstance(back, GuidanceIssued) and all(isinstance(t, Tip) for t in back.tips)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"action": "SHOUT"}, "tip action 'SHOUT'"),
        ({"tone": "angry"}, "tip tone 'angry'"),
        ({"invite_mention": "yes"}, "invite_mention must be a boolean"),
        ({"extra": 1}, "unknown \\['extra'\\]"),
        ({"target": 3}, "target must be a string or null"),
    ],
)
def test_a_malformed_stored_tip_is_a_decode_error_naming_the_event(
    change: dict[str, object], message: str
) -> None:
    row = list(
        event_to_row(GuidanceIssued(seq=9, t=0.0, actor="coach", agent="a", window=1, tips=TIPS))
    )
    payload = json.loads(row[4])
    payload["tips"][0].update(change)
    row[4] = json.dumps(payload)
    with pytest.raises(EventDecodeError, match=rf"seq=9 \(guidance_issued\).*{message}"):
        event_from_row(*row)


def test_a_stored_tip_missing_a_field_is_a_decode_error() -> None:
    row = list(
        event_to_row(GuidanceIssued(seq=3, t=0.0, actor="coach", agent="a", window=1, tips=TIPS))
    )
    payload = json.loads(row[4])
    del payload["tips"][1]["text"]
    row[4] = json.dumps(payload)
    with pytest.raises(EventDecodeError, match=r"seq=3 .*missing \['text'\]"):
        event_from_row(*row)
