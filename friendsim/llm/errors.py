"""Typed LLM-layer errors. Retry wrappers decide by type, callers by type, nobody by message."""

from __future__ import annotations


class LLMError(Exception):
    """Base of every error raised by the LLM layer.

    ``endpoint``: the member of an endpoint pool whose answer this is (set by the pool; never
    part of the message, so nothing recorded depends on which member answered)."""

    endpoint: str | None = None


class ProviderConfigError(LLMError):
    """A provider spec or its configuration is wrong (unknown provider, missing extra, bad URL)."""


class TransientLLMError(LLMError):
    """A failure worth retrying: rate limit, server error, timeout, lost connection.

    ``retry_after`` is the server's requested delay in seconds, when it gave one.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class RateLimitedError(TransientLLMError):
    """HTTP 429 or a local rate limit."""


class LLMTimeoutError(TransientLLMError):
    """The call did not finish in time."""


class LLMConnectionError(TransientLLMError):
    """The server could not be reached or dropped the connection.

    ``unreachable``: no connection could be opened at all (refused, no route, unknown host, none
    opened within the timeout), so nothing was sent: the server (of a pool: every member) is
    down, whatever the request.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        unreachable: bool = False,
    ):
        super().__init__(message, retry_after=retry_after, status=status)
        self.unreachable = unreachable


class ServerError(TransientLLMError):
    """HTTP 5xx."""


class PermanentLLMError(LLMError):
    """A failure that retrying will not fix (4xx other than 408/429).

    ``status`` is the HTTP status when there was one. 401/403 (bad or missing key), 404 (unknown
    model or path) and 400/422 (a request the server rejects) are *fatal* for a run: every
    further call would fail the same way (see :mod:`friendsim.llm.breaker`).
    """

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


def status_error_of(status: int, detail: str, retry_after: float | None) -> LLMError:
    """Our error for an HTTP error ``status`` (one mapping for the SDK and the lean paths):
    429 rate limited, 408 timeout, 5xx server error (all transient, with ``retry_after``),
    any other status permanent."""
    if status == 429:
        return RateLimitedError(detail, retry_after=retry_after, status=status)
    if status == 408:
        return LLMTimeoutError(detail, retry_after=retry_after, status=status)
    if status >= 500:
        return ServerError(detail, retry_after=retry_after, status=status)
    return PermanentLLMError(detail, status=status)


class MalformedResponseError(TransientLLMError):
    """The provider answered (even with status 200) with a body that cannot be understood.

    Transient: a garbled or cut body is a transport accident, retried like a truncated one.
    """


class ProviderStoppedError(LLMError):
    """The provider's circuit breaker is open: the run must stop (not record a failure).

    ``fatal``: a permanent error (bad key, unknown model, rejected request) -- the run is
    ``failed``; otherwise transient errors outlasted their retries -- the run is
    ``interrupted`` and can be resumed once the provider is back.
    """

    def __init__(self, message: str, *, fatal: bool, cause: str):
        super().__init__(message)
        self.fatal = fatal
        self.cause = cause


class CacheMissError(LLMError):
    """Replay-only cache mode found no recorded answer for a request; names the request."""

    def __init__(self, key: str, label: str, preview: str):
        super().__init__(
            f"no recorded LLM answer for request {key[:16]}… (label={label!r}): {preview!r}; "
            "replay-only mode never calls a live model"
        )
        self.key = key
        self.label = label


STOPS_THE_RUN: tuple[type[LLMError], ...] = (
    CacheMissError,
    ProviderConfigError,
    ProviderStoppedError,
)
"""The LLM errors no caller may turn into a recorded failure, whoever asked (an agent, the coach,
a moderator, a survey): a replay-only cache miss (the re-execution cannot be faithful), a
provider's configuration error, an open circuit breaker (the provider is down or rejects us).
They propagate to the runtime, which stops the run with the status that says so; recording them
as failures would let a run whose provider is gone end ``completed``."""


class BudgetExceededError(Exception):
    """The next call would take the run's spending past ``[llm].budget_usd``.

    Deliberately *not* an :class:`LLMError`: callers that turn LLM errors into recorded failures
    must not record this one. The runtime turns it into an interruption (resumable), so nothing
    of the unfinished phase is committed and a resume with a larger budget asks the same
    questions again (answers already paid for come from the record/replay cache).
    """

    def __init__(self, message: str, *, limit_usd: float, spent_usd: float) -> None:
        super().__init__(message)
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
