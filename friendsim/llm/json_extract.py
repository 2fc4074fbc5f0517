"""Find the JSON value in a model's text answer (model output is untrusted input).

Used when a server cannot enforce a schema: the answer may be bare JSON, JSON in a Markdown code
fence, or JSON surrounded by prose. Returns ``None`` when nothing decodes; never raises: a value
nested deeper than the decoder's recursion limit (``[[[[…]]]]``) is nothing that decodes, so the
caller treats it as any other invalid answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_MAX_STARTS = 64
_UNDECODABLE = (ValueError, RecursionError)


def extract_json(text: str) -> Any | None:
    """The first JSON object or array in ``text``, or ``None``."""
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
