"""The shared vocabulary: tips round-trip losslessly through the event log, and a stored tip
that is not exactly what friendsim writes is a decode error naming the event."""

from __future__ import annotations

import json

import pytest

from friendsim.platform.events import (
    EventDecodeError,
    GuidanceIssued,
    event_from_row,
    event_to_row,
)
from friendsim.platform.projection import payload_json as fast_payload_json
from friendsim.vocabulary import Tip

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
