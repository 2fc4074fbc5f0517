"""Find the JSON value in a model's text answer (model output is untrusted input).

Used when a server cannot enforce a schema: the answer may be bare JSON, JSON in a Markdown code
fence, or JSON surrounded by prose. Returns ``None`` when nothing decodes; never raises: a value
nested deeper than the decoder's recursion limit (``[[[[…]]]]``) is nothing that decodes, so the
caller treats it as any other invalid answer.

Strings decoded from an answer may hold lone surrogates (the JSON escape ``\\ud800``), which no
file, database or terminal can encode: :func:`clean_text` and :func:`clean_value` replace them by
U+FFFD. Providers apply them where they decode an answer (its text, a tool's input); the value
:func:`extract_json` returns is already clean.
"""

from __future__ import annotations

import json
import re
from typing import Any

from friendsim._unicode import SURROGATE as _SURROGATE
from friendsim._unicode import clean_text, clean_value

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
__all__ = ["clean_text", "clean_value", "extract_json", "printable_line", "quoted"]

_MAX_STARTS = 64
_UNDECODABLE = (ValueError, RecursionError)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def quoted(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: how an error message quotes a value the
    model wrote (it is shown back to the model on a re-ask and stored in the log, so a
    100,000-character recipient must not make a 100,000-character re-ask)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def printable_line(text: str) -> str:
    """``text`` as one line of printable characters: tabs and line breaks become spaces, other
    control and format characters (NUL, escapes, bidi overrides) are dropped, as they are from
    agents' posts. For the short texts of untrusted model output that the log, the
    report and the live view show as they are (a coach's tips, a moderator's labels)."""
    spaced = "".join(" " if ch in _BREAKS else ch for ch in text)
    return "".join(ch for ch in spaced if ch.isprintable()).strip()


_BREAKS = frozenset("\t\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029")
"""What :meth:`str.splitlines` breaks on, and the tab: spaces in a one-line text."""


def extract_json(text: str) -> Any | None:
    """The first JSON object or array in ``text`` (its strings cleaned: :func:`clean_value`), or
    ``None``."""
    value = _first_json(text)
    if value is None or not (_SURROGATE.search(text) or _SURROGATE_ESCAPE.search(text)):
        return value  # no surrogate in the text or its escapes: none in the value
    try:
        return clean_value(value)
    except RecursionError:  # nested almost to the decoder's limit: treated as undecodable
        return None


def _first_json(text: str) -> Any | None:
    stripped = text.strip()
    if not stripped:
        return None
    try:
        return json.loads(stripped, strict=False)
    except _UNDECODABLE:
        pass
    for block in _FENCE.findall(stripped):
        try:
            return json.loads(block.strip(), strict=False)
        except _UNDECODABLE:
            continue
    decoder = json.JSONDecoder(strict=False)
    starts = [i for i, ch in enumerate(stripped) if ch in "{["][:_MAX_STARTS]
    for i in starts:
        try:
            value, _end = decoder.raw_decode(stripped, i)
        except _UNDECODABLE:
            continue
        return value
    return None
