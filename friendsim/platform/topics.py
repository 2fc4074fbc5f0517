"""What a usable topic label is: a short phrase about the subject, never a tone or a placeholder.

Small models fill a ``topic`` field with the tone they were just asked about ("supportive",
"neutral, critical") or with the schema's own words ("topic", "none"). Such a label says nothing
about what the text discusses, and once it is on the platform it spreads: it becomes a *known
topic* in the next prompts and the coach hands it back as advice. :func:`usable_topic` is the one
predicate used by the plan validation (which replaces an unusable label by the target's topic or
the theme) and by the rule coach (which never suggests one).
"""

from __future__ import annotations

import functools
import re

from friendsim.platform.events import normalise_topic

MAX_TOPIC_WORDS = 6
"""A topic is a short phrase: longer labels are cut to their first words."""

MAX_TOPIC_CHARS = 60

TONE_WORDS = frozenset(
    {
        "supportive", "neutral", "critical", "positive", "negative", "mixed", "balanced",
        "friendly", "unfriendly", "hostile", "angry", "happy", "sad", "kind", "warm", "cold",
        "polite", "rude", "sarcastic", "formal", "informal", "enthusiastic", "blunt", "calm",
        "optimistic", "pessimistic", "hopeful", "serious", "humorous", "funny", "encouraging",
        "sceptical", "skeptical", "agree", "disagree", "support", "tone", "emotional",
    }
)  # fmt: skip
"""Words that describe how something is said, not what it is about."""

PLACEHOLDERS = frozenset(
    {
        "", "topic", "topics", "label", "none", "null", "nil", "n/a", "na", "unknown", "general",
        "misc", "other", "string", "text", "post", "comment", "dm", "message", "short topic label",
        "...", "x", "todo", "tbd",
    }
)  # fmt: skip
"""Labels that name nothing (schema words, empty values)."""

_ECHO = re.compile(
    r"\bwindow \d|\bplan exactly\b|\bjson\b|\btarget.?post\b|\bmention.?user\b|\bsystem prompt\b"
)
"""Words of the plan instructions themselves: a small model sometimes copies the prompt's first
line ("Window 1. Plan exactly 2 actions") into the topic."""

_CONNECTORS = frozenset({"and", "or", "but", "very", "a", "an", "the", "tone", "not"})
_WORD = re.compile(r"[a-z0-9][a-z0-9'\-]*")


def usable_topic(topic: object) -> str:
    """The normalised, shortened topic, or ``""`` when ``topic`` is a tone word, a list of tone
    words ("supportive, neutral"), a placeholder, an echo of the plan instructions, or has no
    letters or digits at all."""
    if not isinstance(topic, str):
        return ""
    return _usable(topic)


@functools.lru_cache(maxsize=8192)
def _usable(topic: str) -> str:
    norm = normalise_topic(topic)
    if norm in PLACEHOLDERS or _ECHO.search(norm):
        return ""
    words = _WORD.findall(norm)
    content = [w for w in words if w not in _CONNECTORS]
    if not content or all(w in TONE_WORDS for w in content):
        return ""
    short = " ".join(norm.split(" ")[:MAX_TOPIC_WORDS])[:MAX_TOPIC_CHARS].strip(" ,;:-")
    return short if _WORD.search(short) else ""


def is_tone_word(topic: object) -> bool:
    """True when ``topic`` is made only of tone words (what the issue calls a tone-word topic)."""
    if not isinstance(topic, str):
        return False
    words = [w for w in _WORD.findall(normalise_topic(topic)) if w not in _CONNECTORS]
    return bool(words) and all(w in TONE_WORDS for w in words)


__all__ = ["MAX_TOPIC_WORDS", "PLACEHOLDERS", "TONE_WORDS", "is_tone_word", "usable_topic"]
