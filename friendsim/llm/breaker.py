"""A per-provider circuit breaker: stop a run instead of recording failure after failure.

Sits in the stack above the retry layer (and the record/replay cache), so it sees only what is
left after retries. Two ways to open:

- a *permanent* error that will fail every further call the same way -- HTTP 401/403 (the key),
  404 (unknown model or path), 400/422 (a request the server rejects) -- opens it at once as
  ``fatal``: the run ends ``failed`` with one line naming provider, model, endpoint (of a pool,
  the member that answered so) and the variable that holds the key (a provider configuration error, such as an unset key variable,
  passes through unchanged: it is bad input, exit 2);
- ``threshold`` *consecutive* transient errors that outlasted their retries (a dead server, 500 on
  every call, a hang past every timeout) open it as not fatal: the run ends ``interrupted`` and
  can be resumed once the provider is back.

A window whose failures spend the run's failure budget while a provider cannot be reached (its
latest calls failed, past their retries, to open a connection at all: refused, no route, no
connection within the timeout; of a pool, on every member), fewer in a row than ``threshold``
(a small window, or a high threshold), was lost to that outage, not to the agents:
:meth:`CircuitBreakerLLM.outage` opens the breaker then (not fatal), so the run ends
``interrupted`` as when it opens by itself.

The call that opens the breaker, and every call after it, raises
:class:`~friendsim.llm.errors.ProviderStoppedError` -- which the engine treats as "stop the run",
never as an agent's failed action, so nothing of the wake in flight is committed and a resumed
run re-asks exactly those requests. One success resets the consecutive count.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import structlog

from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.llm.errors import (
    LLMConnectionError,
    LLMError,
    PermanentLLMError,
    ProviderConfigError,
    ProviderStoppedError,
    TransientLLMError,
)

_log = structlog.get_logger(__name__)

FATAL_STATUSES = frozenset({400, 401, 403, 404, 422})
DEFAULT_THRESHOLD = 3


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderIdentity:
    """What a user needs to fix a provider: its spec, model, endpoint and key variable."""

    provider: str
    model: str
    endpoint: str
    key_env: str | None

    def describe(self) -> str:
        key = f"key from ${self.key_env}" if self.key_env else "no API key configured"
        return f"provider {self.provider}, model {self.model}, endpoint {self.endpoint}, {key}"


def identify(llm: LLM) -> ProviderIdentity:
    """Read provider, model, endpoint and key variable off a provider (pools: every endpoint)."""
    while getattr(llm, "endpoint", None) is None and not getattr(llm, "members", None):
        inner = getattr(llm, "inner", None)
        if inner is None:
            break
        llm = inner
    provider, _, model = llm.model.partition(":")
    if not model:
        provider, model = "", provider
    members = getattr(llm, "members", None)
    if members:
        endpoints = [str(getattr(m, "name", "?")) for m in members]
        first = getattr(members[0], "llm", None)
        key_env = getattr(first, "key_env", None) if first is not None else None
        return ProviderIdentity(
            provider=provider, model=model, endpoint=" ".join(endpoints), key_env=key_env
        )
    return ProviderIdentity(
        provider=provider,
        model=model,
        endpoint=str(getattr(llm, "endpoint", None) or "(in process)"),
        key_env=getattr(llm, "key_env", None),
    )


def is_fatal(exc: LLMError) -> bool:
    """Whether ``exc`` will recur on every call (see the module docstring)."""
    if isinstance(exc, ProviderConfigError):
        return True
    return isinstance(exc, PermanentLLMError) and exc.status in FATAL_STATUSES


class CircuitBreakerLLM:
    """Opens on a fatal error or ``threshold`` consecutive transient failures (module docstring)."""

    def __init__(
        self, inner: LLM, identity: ProviderIdentity, *, threshold: int = DEFAULT_THRESHOLD
    ) -> None:
        if threshold < 1:
            raise ValueError(f"breaker threshold must be >= 1, got {threshold}")
        self.inner = inner
        self.identity = identity
        self.threshold = threshold
        self.consecutive = 0
        self.unreachable: list[LLMConnectionError] = []
        """The latest calls' errors while each failed to reach the provider (reset by a call
        that succeeds or fails otherwise)."""
        self.opened: ProviderStoppedError | None = None

    @property
    def model(self) -> str:
        return self.inner.model

    def _open(self, exc: LLMError, *, fatal: bool) -> ProviderStoppedError:
        if self.opened is None:
            identity = self.identity
            if fatal:
                what = f"rejected the request ({type(exc).__name__}: {exc})"
                if exc.endpoint is not None:  # one member of a pool: name it, not the fleet
                    identity = replace(identity, endpoint=exc.endpoint)
            else:
                what = (
                    f"failed {self.consecutive} calls in a row after retries "
                    f"(last: {type(exc).__name__}: {exc})"
                )
            self.opened = ProviderStoppedError(
                f"{identity.describe()}: {what}", fatal=fatal, cause=type(exc).__name__
            )
            _log.warning("llm_breaker_open", fatal=fatal, provider=self.identity.provider)
        return self.opened

    async def complete(self, request: LLMRequest) -> Completion:
        if self.opened is not None:  # refused unsent: a fresh error with no provider cause
            opened = self.opened
            raise ProviderStoppedError(str(opened), fatal=opened.fatal, cause="breaker_open")
        try:
            completion = await self.inner.complete(request)
        except (ProviderStoppedError, ProviderConfigError):
            raise  # a configuration error is bad input (exit 2), reported as it is
        except TransientLLMError as exc:
            self.consecutive += 1
            if isinstance(exc, LLMConnectionError) and exc.unreachable:
                self.unreachable.append(exc)
            else:
                self.unreachable.clear()
            if self.consecutive >= self.threshold:
                raise self._open(exc, fatal=False) from exc
            raise
        except LLMError as exc:
            if is_fatal(exc):
                raise self._open(exc, fatal=True) from exc
            raise
        self.consecutive = 0
        self.unreachable.clear()
        return completion

    def outage(self, lost: str) -> ProviderStoppedError | None:
        """When the latest call could not reach the provider past its retries (module
        docstring), open the breaker (not fatal) as an outage, ``lost`` saying what it cost, and
        return its error; otherwise (the provider was reached) ``None``."""
        if self.opened is not None or not self.unreachable:
            return None
        exc = self.unreachable[-1]
        what = (
            f"unreachable: its last {len(self.unreachable)} calls could not connect after "
            f"retries (last: {type(exc).__name__}: {exc}); {lost}"
        )
        self.opened = ProviderStoppedError(
            f"{self.identity.describe()}: {what}", fatal=False, cause=type(exc).__name__
        )
        _log.warning("llm_breaker_open", fatal=False, provider=self.identity.provider)
        return self.opened

    async def aclose(self) -> None:
        await self.inner.aclose()
