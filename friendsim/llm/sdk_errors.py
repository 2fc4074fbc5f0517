"""Map the official SDKs' exceptions onto :mod:`friendsim.llm.errors`, by type.

Both the ``anthropic`` and ``openai`` SDKs share one exception hierarchy shape (APIStatusError
with ``status_code`` and ``response``, APITimeoutError under APIConnectionError, ...), so one
function serves both, given the SDK module. Messages name the provider, the HTTP status and the
server's short error text (redacted: a server may echo request headers, keys included).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from types import ModuleType

from friendsim.llm.errors import (
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    MalformedResponseError,
    PermanentLLMError,
    status_error_of,
)
from friendsim.llm.redact import redact_text

_MAX_DETAIL = 300


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a server asked us to wait: ``retry-after-ms``, else ``retry-after`` as seconds
    or an HTTP date. ``None`` when absent or unparsable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def map_sdk_error(exc: BaseException, sdk: ModuleType, provider: str) -> LLMError:
    """Translate an exception raised by ``sdk`` (the imported module) into our error types."""
    if isinstance(exc, sdk.APITimeoutError):
        return LLMTimeoutError(f"{provider}: request timed out")
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc
        return LLMConnectionError(
            f"{provider}: connection failed ({type(cause).__name__})",
            unreachable=_could_not_connect(cause),
        )
    if isinstance(exc, sdk.APIResponseValidationError):
        return MalformedResponseError(f"{provider}: response failed validation: {_short(exc)}")
    if isinstance(exc, sdk.APIStatusError):
        status = int(exc.status_code)
        retry_after = parse_retry_after(exc.response.headers)
        return status_error_of(status, f"{provider}: HTTP {status}: {_short(exc)}", retry_after)
    return PermanentLLMError(f"{provider}: {type(exc).__name__}: {_short(exc)}")


def _could_not_connect(cause: BaseException) -> bool:
    """Whether an SDK's connection error is a failure to open a connection, not a connection
    lost with the request on it: httpx's ``ConnectError`` (by name: the SDKs may bring their own
    copy of httpx under another module name) or a refused connection."""
    if isinstance(cause, ConnectionRefusedError):
        return True
    return any(kind.__name__ == "ConnectError" for kind in type(cause).__mro__)


def _short(exc: BaseException) -> str:
    text = redact_text(str(exc))
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "…"
