"""Text that UTF-8 can encode: untrusted strings (a model's answer, a plug-in's output) may hold
surrogate code points (a lone ``"\\ud800"``, from a JSON escape or a Python string), which no
file, database or terminal can encode. One cleaning for every layer that takes such text (the
model providers, the platform's failure records)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SURROGATE = re.compile("[\ud800-\udfff]")
"""A surrogate code point: never valid on its own in text."""


def clean_text(text: str) -> str:
    """``text`` as valid Unicode: a surrogate pair stored as two code points becomes its
    character, every other surrogate U+FFFD (``text`` itself when it has none)."""
    if SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_value(value: Any) -> Any:
    """``value`` with :func:`clean_text` applied to every string in it: mappings (keys too, into
    a dict), lists and tuples are walked and rebuilt; anything else is returned as it is."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {
            clean_text(k) if isinstance(k, str) else k: clean_value(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [clean_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple([clean_value(v) for v in value])
    return value
