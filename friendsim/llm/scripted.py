"""A scripted fake LLM for tests and benchmarks (ships in the package, like httpx's MockTransport).

Answers come from a queue of replies or from a function of the request. A reply is a ``str``
(the completion text), a mapping (serialised as JSON text; ``parsed`` holds it when the request
asked for JSON), a ready :class:`Completion`, or an exception instance, which is raised (to test
retries and error paths). An optional fixed latency models a remote model's response time.
Usage is estimated (about four characters per token) so accounting and limits work.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeAlias

from friendsim.llm.base import Completion, LLMRequest, Usage
from friendsim.llm.errors import LLMError
from friendsim.llm.tokens import estimate_input_tokens, estimate_tokens

Reply: TypeAlias = str | Mapping[str, Any] | Completion | BaseException
Responder: TypeAlias = Callable[[LLMRequest], Reply | Awaitable[Reply]]


class ScriptExhaustedError(LLMError):
    """The reply queue is empty and no default reply was configured."""


class ScriptedLLM:
    """An :class:`~friendsim.llm.base.LLM` that answers from a script.

    ``script`` is either an iterable of replies (consumed in call order) or a responder function
    (sync or async) called with each request. When the queue runs dry, ``default`` answers; with
    no default a :class:`ScriptExhaustedError` says how many replies the script held and names
    the request's label (not its call number: the text of a failure a run records must not
    depend on how many calls this client answered before, which a resumed run, replaying
    recorded failures without sending them, does not repeat). ``calls`` records every request.
    """

    def __init__(
        self,
        script: Iterable[Reply] | Responder | None = None,
        *,
        model: str = "scripted",
        latency_s: float = 0.0,
        default: Reply | None = None,
        provider: str = "scripted",
    ) -> None:
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")
        self._responder: Responder | None = None
        self._queue: deque[Reply] = deque()
        if callable(script):
            self._responder = script
        elif script is not None:
            self._queue.extend(script)
        self._scripted = len(self._queue)
        self._model = model
        self._provider = provider
        self._latency_s = latency_s
        self._default = default
        self.calls: list[LLMRequest] = []
        self.closed = False

    @property
    def model(self) -> str:
        return f"{self._provider}:{self._model}"

    def push(self, *replies: Reply) -> None:
        """Append replies to the queue."""
        self._queue.extend(replies)
        self._scripted += len(replies)

    @property
    def remaining(self) -> int:
        """Replies still queued."""
        return len(self._queue)

    async def complete(self, request: LLMRequest) -> Completion:
        self.calls.append(request)
        if self._latency_s > 0:
            await asyncio.sleep(self._latency_s)
        reply = await self._next_reply(request)
        if isinstance(reply, BaseException):
            raise reply
        return self._to_completion(request, reply)

    async def _next_reply(self, request: LLMRequest) -> Reply:
        if self._responder is not None:
            reply = self._responder(request)
            if inspect.isawaitable(reply):
                reply = await reply
            return reply
        if self._queue:
            return self._queue.popleft()
        if self._default is not None:
            return self._default
        raise ScriptExhaustedError(
            f"ScriptedLLM {self.model!r}: no scripted reply left (its script held "
            f"{self._scripted}; label={request.label!r})"
        )

    def _to_completion(self, request: LLMRequest, reply: Reply) -> Completion:
        match reply:
            case Completion():
                return reply
            case str():
                text = reply
                parsed = _try_json(text) if request.json_schema is not None else None
            case Mapping():
                text = json.dumps(reply, ensure_ascii=False)
                parsed = dict(reply) if request.json_schema is not None else None
            case _:
                raise TypeError(f"unsupported scripted reply type {type(reply).__name__}")
        usage = Usage(
            input_tokens=estimate_input_tokens(request), output_tokens=estimate_tokens(text)
        )
        return Completion(
            text=text,
            model=self._model,
            usage=usage,
            parsed=parsed,
            latency_s=self._latency_s,
            provider=self._provider,
        )

    async def aclose(self) -> None:
        self.closed = True


def _try_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def create_scripted_llm(name: str = "", **options: Any) -> ScriptedLLM:
    """Registry factory for ``scripted`` / ``scripted:<name>`` specs; options go to ScriptedLLM."""
    return ScriptedLLM(model=name or "scripted", **options)
