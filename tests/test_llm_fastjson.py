"""The model path's JSON (orjson where it agrees) gives the stdlib's results."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from json_values import holds_float, json_values

from friendsim.llm.errors import MalformedResponseError
from friendsim.llm.fastjson import dumps_body, loads_envelope
from friendsim.llm.openai_provider import _read_json

VALUES = json_values(int_bits=70, max_leaves=30)


def _outcome(fn: Any, arg: Any) -> tuple[str, str]:
    try:
        return ("ok", repr(fn(arg)))
    except (ValueError, MalformedResponseError) as exc:
        return ("error", type(exc).__name__)


def _no_big_ints(value: Any) -> Any:
    if type(value) is int and not -(2**63) <= value < 2**64:
        return float(value)
    if type(value) is list:
        return [_no_big_ints(v) for v in value]
    if type(value) is dict:
        return {k: _no_big_ints(v) for k, v in value.items()}
    return value


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_an_envelope_reads_as_the_stdlib_reads_it_but_for_big_integers(value: Any) -> None:
    """The same values of the same types (``repr`` tells ``1`` from ``1.0``), except integers
    beyond 64 bits, which come back as floats (what ``floats_in`` lets callers catch)."""
    text = json.dumps(value, ensure_ascii=False)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return
    body = text.encode()
    assert repr(loads_envelope(body)) == repr(_no_big_ints(json.loads(body)))


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=40)
    | st.text(alphabet='{}[]",:0123456789.eE-+ \t\n\\unNI\x00').map(str.encode)
)
def test_malformed_bodies_fail_or_read_as_the_stdlib_does(body: bytes) -> None:
    try:
        expected = ("ok", repr(_no_big_ints(json.loads(body))))
    except ValueError:
        expected = ("error", "JSONDecodeError")
    got = _outcome(loads_envelope, body)
    assert got[0] == expected[0]
    if got[0] == "ok":
        assert got == expected


def _completion(usage: str, content: str = '"hi"') -> bytes:
    return (
        '{"choices":[{"message":{"role":"assistant","content":' + content + "}}],"
        '"usage":' + usage + "}"
    ).encode()


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ('{"prompt_tokens":12,"completion_tokens":3}', (12, 3, 0)),
        ('{"prompt_tokens":36893488147419103232,"completion_tokens":3}', (2**65, 3, 0)),
        ('{"prompt_tokens":5,"completion_tokens":36893488147419103232}', (5, 2**65, 0)),
        (
            '{"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":36893488147419103232}}',
            (5, 0, 2**65),
        ),
        ('{"prompt_tokens":5,"completion_tokens":2.5}', (5, 0, 0)),
        ('{"prompt_tokens":NaN}', None),
        ('{"prompt_tokens":1.0}', None),
        ('{"completion_tokens":1}', None),
    ],
)
def test_token_counts_beyond_64_bits_read_as_before(usage: str, expected: Any) -> None:
    """The lean path reads token counts exactly as it did with the stdlib alone: integers of
    any size are counts, floats are not, ``NaN`` reads and is refused as no count."""
    if expected is None:
        with pytest.raises(MalformedResponseError, match="token usage"):
            _read_json(_completion(usage))
        return
    text, u = _read_json(_completion(usage))
    assert text == "hi"
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens) == expected


def test_control_characters_in_the_answer_text_read_as_before() -> None:
    with pytest.raises(MalformedResponseError, match="undecodable"):
        _read_json(_completion('{"prompt_tokens":1}', '"a\tb"'))  # invalid JSON for both
    text, _ = _read_json(_completion('{"prompt_tokens":1}', '"a\\tb \\u00e9 \\ud83d\\ude00"'))
    assert text == "a\tb é 😀"


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_dumps_body_is_the_same_json_value(value: Any) -> None:
    """A request body reads back as the value the stdlib's body reads back as; without floats
    the bytes are the same; what neither can encode fails as the stdlib fails."""
    try:
        expected = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            dumps_body(value)
        return
    body = dumps_body(value)
    assert repr(json.loads(body)) == repr(json.loads(expected))
    if not holds_float(value):
        assert body == expected
