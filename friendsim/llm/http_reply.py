"""A server's whole HTTP answer, and our error for an HTTP error answer (both lean paths).

:func:`status_error` maps an HTTP error answer as the SDK mapping does (429 rate limited with
Retry-After, 408 timeout, 5xx server error, other 4xx permanent, with its status). Messages name
the provider and the server's redacted error text (a server may echo request headers, keys
included), never a header.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from friendsim.llm.errors import LLMError, status_error_of
from friendsim.llm.redact import redact_text
from friendsim.llm.sdk_errors import parse_retry_after

_MAX_DETAIL = 300


@dataclass(frozen=True, kw_only=True, slots=True)
class HTTPReply:
    """A server's answer: status, headers (names lower-cased) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def error_text(reply: HTTPReply) -> str:
    """The server's short explanation of an error answer: ``error.message`` of a JSON body (the
    OpenAI shape), else the body's text; redacted (a server may echo request headers, keys
    included) and cut to a few hundred characters."""
    text = reply.body.decode("utf-8", "replace")
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            text = err["message"]
        elif isinstance(err, str):
            text = err
        elif isinstance(data.get("message"), str):
            text = data["message"]
    text = redact_text(" ".join(text.split()))
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "…"


def status_error(provider: str, reply: HTTPReply) -> LLMError:
    """Our error for a non-2xx answer (the same classes as the SDK mapping)."""
    status = reply.status
    detail = f"{provider}: HTTP {status}: {error_text(reply)}"
    return status_error_of(status, detail, parse_retry_after(reply.headers))
