"""Cheap token estimates used where no tokenizer is at hand.

The scripted fake reports estimated usage so accounting works in tests and benchmarks, and the
token-per-minute limiter reserves an estimate before a call (then settles with the real count).
About four characters per token is the usual rule of thumb for English text.
"""

from __future__ import annotations

from friendsim.llm.base import LLMRequest

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Rough token count of ``text``: 0 for empty text, else at least 1."""
    if not text:
        return 0
    return max(1, len(text) // CHARS_PER_TOKEN)


def estimate_input_tokens(request: LLMRequest) -> int:
    """Rough prompt size of ``request`` (system text plus every message)."""
    chars = len(request.system) + sum(len(m.content) for m in request.messages)
    return max(1, chars // CHARS_PER_TOKEN)
