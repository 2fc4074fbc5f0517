"""Topic labels: tone words and placeholders are not topics; long labels become short phrases."""

from __future__ import annotations

import pytest

from friendsim.platform.topics import MAX_TOPIC_WORDS, is_tone_word, usable_topic


@pytest.mark.parametrize(
    "label",
    ["supportive", "Neutral", "supportive, neutral", "critical and positive", "#Supportive",
     "very critical", "topic", "None", "n/a", "", "  ", "...", "!!!",
     # echoes of the plan instructions (seen from the local model in the quickstart)
     "Window 1. Plan exactly 2 actions", "window 2", "JSON", "target_post"],
)  # fmt: skip
def test_tones_and_placeholders_are_not_topics(label: str) -> None:
    assert usable_topic(label) == ""


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Heat Waves", "heat waves"),
        ("#CarbonTax", "carbontax"),
        ("supportive policies", "supportive policies"),  # a tone word inside a subject is fine
        ("critical minerals", "critical minerals"),
        ("climate action plan", "climate action plan"),  # instruction words alone are fine
        ("windows and insulation", "windows and insulation"),
        (
            "the economics of flood defences in small coastal towns today",
            "the economics of flood defences in",
        ),
    ],
)
def test_subjects_are_kept_normalised_and_short(label: str, expected: str) -> None:
    assert usable_topic(label) == expected
    assert len(usable_topic(label).split()) <= MAX_TOPIC_WORDS


def test_is_tone_word_flags_only_pure_tone_labels() -> None:
    assert is_tone_word("supportive, neutral") and is_tone_word("Critical")
    assert not is_tone_word("critical minerals") and not is_tone_word("") and not is_tone_word(3)
    assert usable_topic(None) == ""
