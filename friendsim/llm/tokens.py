"""Cheap token estimates used where no tokenizer is at hand.

The scripted fake reports estimated usage so accounting works in tests and benchmarks, and the
token-per-minute limiter reserves an estimate before a call (then settles with the real count).
About four characters per token is the usual rule of thumb for English text.
"""

from __future__ import annotations

import json

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


MESSAGE_OVERHEAD_TOKENS = 4
"""Chat formats wrap every message (and the system text) in a few tokens of role markup."""

REQUEST_OVERHEAD_TOKENS = 3


def provider_input_tokens(request: LLMRequest, provider: str) -> int:
    """The prompt tokens a provider is expected to bill for ``request``.

    ``scripted`` (and other in-process fakes) bill exactly :func:`estimate_input_tokens`. The
    hosted and OpenAI-compatible providers also bill the role markup of each message and the JSON
    schema sent for structured output (OpenAI's ``response_format``, Anthropic's output format
    or tool definition), counted at the same characters-per-token rate.
    """
    if provider in ("scripted", ""):
        return estimate_input_tokens(request)
    chars = len(request.system) + sum(len(m.content) for m in request.messages)
    if request.json_schema is not None:
        chars += len(json.dumps(request.json_schema, separators=(",", ":")))
    turns = len(request.messages) + (1 if request.system else 0)
    return (
        max(1, chars // CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS * turns + REQUEST_OVERHEAD_TOKENS
    )
