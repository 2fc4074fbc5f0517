"""The one async protocol every LLM provider implements, and the values it exchanges.

A provider turns an :class:`LLMRequest` into a :class:`Completion`. Wrappers (limits, retries,
accounting, caching) implement the same protocol around another provider, so they compose in
any order. Errors are exceptions from :mod:`friendsim.llm.errors`, never values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["user", "assistant"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    """One chat turn."""

    role: Role
    content: str


@dataclass(frozen=True, kw_only=True, slots=True)
class LLMRequest:
    """What the simulation asks of a model.

    ``system`` is the stable prefix (persona and rules) that providers may cache. ``json_schema``,
    when given, asks for structured output: the completion's ``parsed`` then holds the decoded JSON
    (validation against the schema is the caller's business: model output is untrusted).
    ``label`` names the purpose ("plan", "vote", "coach" ...) for accounting. ``stop``: sequences
    that end the answer (not included in it); providers without the feature ignore them.
    ``agent`` names the agent the request is made for (``None``: no agent, e.g. the coach); an
    endpoint pool routes an agent's requests to the same server so its prompt prefix stays
    cached there. ``agent`` is not part of the request's meaning: it is left out of
    :meth:`to_json` and the cache key.
    """

    system: str = ""
    messages: tuple[Message, ...]
    json_schema: Mapping[str, Any] | None = None
    temperature: float = 0.7
    max_tokens: int = 512
    seed: int | None = None
    label: str = "default"
    stop: tuple[str, ...] = ()
    agent: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A normalised, JSON-ready form (stable key order) used for cache keys and recording.

        ``stop`` appears only when set, so requests without stop sequences keep their keys."""
        out: dict[str, Any] = {
            "system": self.system,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "json_schema": self.json_schema,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        if self.stop:
            out["stop"] = list(self.stop)
        return out

    def cache_key(self, model: str) -> str:
        """SHA-256 of the normalised request and the model. ``label`` is not part of the key."""
        blob = json.dumps(
            {"model": model, "request": self.to_json()},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def user(content: str) -> Message:
    """Shorthand for a user message."""
    return Message(role="user", content=content)


@dataclass(frozen=True, kw_only=True, slots=True)
class Usage:
    """Token counts of one call. ``cached_input_tokens`` is the part of ``input_tokens`` served
    from the provider's prompt cache (read), ``cache_write_tokens`` what was written to it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    """A model's answer. ``parsed`` is set when the request had a ``json_schema`` and the text
    decoded as JSON; otherwise ``None``. ``latency_s`` is wall time spent (0 on a cache hit).
    ``batch`` marks an answer that came through a provider batch API (billed at batch prices)."""

    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    parsed: Any = None
    latency_s: float = 0.0
    cached: bool = False
    provider: str = ""
    batch: bool = False


@runtime_checkable
class LLM(Protocol):
    """An async language model. ``model`` identifies it in accounting, caches and manifests."""

    @property
    def model(self) -> str: ...

    async def complete(self, request: LLMRequest) -> Completion: ...

    async def aclose(self) -> None: ...
