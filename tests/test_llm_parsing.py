"""Retry-After parsing and JSON extraction from untrusted model text."""

from __future__ import annotations

import email.utils
import json
import time

import pytest

from friendsim.llm.json_extract import extract_json
from friendsim.llm.sdk_errors import parse_retry_after


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "-5"}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after({"retry-after": future}) or 0) <= 31


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("  [1, 2]  ", [1, 2]),
        ('Sure!\n```json\n{"a": {"b": [1]}}\n```\nBye', {"a": {"b": [1]}}),
        ('```\n{"x": true}\n```', {"x": True}),
        ('Here: {"tone": "neutral"} hope it helps', {"tone": "neutral"}),
        ('bad {oops} then {"ok": 1}', {"ok": 1}),
        ("no json at all", None),
        ("", None),
        ('{"unterminated": ', None),
        ("[" * 200_000 + "]" * 200_000, None),  # nested past the decoder's recursion limit
        ("```json\n" + '{"a":' * 5000 + "1" + "}" * 5000 + "\n```", None),
        ("[" * 100 + "]" * 100, json.loads("[" * 100 + "]" * 100)),  # deep, within the limit
    ],
)
def test_extract_json(text: str, expected: object) -> None:
    assert extract_json(text) == expected


def test_lone_surrogates_become_u_fffd_and_pairs_their_character() -> None:
    from friendsim.llm.json_extract import clean_text

    assert clean_text("a\ud800b\udfffc") == "a\ufffdb\ufffdc"
    assert clean_text("\ud83d\ude00") == "\U0001f600"  # a pair stored as two code points
    plain = "caf\u00e9 \U0001f600"
    assert clean_text(plain) is plain
    answer = '{"text": "x\\ud800y", "\\udc00": ["\\ud83d\\ude00", 1]}'
    assert extract_json(answer) == {"text": "x\ufffdy", "\ufffd": ["\U0001f600", 1]}
    assert extract_json('Sure: {"a": "\\u00e9\\\\ud800"}') == {"a": "\u00e9\\ud800"}  # escaped \\


def test_stop_sequences_are_part_of_the_cache_key_only_when_set() -> None:
    from friendsim.llm.base import LLMRequest, user

    plain = LLMRequest(messages=(user("hi"),))
    assert "stop" not in plain.to_json()  # keys of requests without stop sequences are unchanged
    stopped = LLMRequest(messages=(user("hi"),), stop=("\n\n",))
    assert stopped.to_json()["stop"] == ["\n\n"]
    assert plain.cache_key("m") != stopped.cache_key("m")
