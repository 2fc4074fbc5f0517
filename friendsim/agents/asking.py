"""Ask a model for a validated answer, re-asking with the validation error on bad output.

:func:`ask_validated` is the single place where model output meets validation. It never raises
on model output: after ``1 + max_retries`` invalid answers it returns a :class:`Failure`. Errors
of the LLM layer itself (provider down after the layer's own retries) also become a Failure
(reason ``llm_error``), except :class:`CacheMissError`, which must stop a replay loudly, and
:class:`ProviderConfigError` (no credentials, bad spec), which the runtime treats as fatal: a run
whose every call fails for want of a key must not end "completed".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from friendsim.agents.prompting import render, request_tokens
from friendsim.agents.schema import OutputError
from friendsim.llm.base import LLM, Completion, LLMRequest, Message, user
from friendsim.llm.errors import STOPS_THE_RUN, LLMError
from friendsim.vocabulary import Failure

T = TypeVar("T")

MAX_ECHO_CHARS = 1500
"""A bad answer echoed back to the model on a re-ask is cut to this length."""

MAX_ERROR_CHARS = 500
"""The validation error shown to the model on a re-ask is cut to this length (it may quote the
model's own output)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Asked(Generic[T]):
    """The outcome of :func:`ask_validated`: a value or a failure, and the prompt size."""

    value: T | None
    failure: Failure | None
    attempts: int
    prompt_tokens: int


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from the given parts (for ``LLMRequest.seed``)."""
    blob = ":".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


def _text_of(comp: object) -> str:
    text = getattr(comp, "text", "") if isinstance(comp, Completion) else ""
    return text if isinstance(text, str) else ""


async def ask_validated(
    llm: LLM,
    *,
    stage: str,
    system: str,
    prompt: str,
    parse: Callable[[Completion], T],
    json_schema: Mapping[str, Any] | None,
    label: str,
    max_retries: int = 3,
    temperature: float = 0.7,
    max_tokens: int = 512,
    seed: int | None = None,
    action: Mapping[str, Any] | None = None,
    history: Sequence[Message] = (),
    stop: Sequence[str] = (),
    agent: str | None = None,
) -> Asked[T]:
    """Ask, validate with ``parse`` (raising :class:`OutputError`), re-ask up to ``max_retries``.

    ``history`` (earlier turns, e.g. a plan and its answer) goes before ``prompt``; ``stop``
    sequences end the answer early (providers that support them); ``agent`` goes into each
    request (endpoint affinity, see :class:`LLMRequest`)."""
    messages: list[Message] = [*history, user(prompt)]
    first_tokens = 0
    last = OutputError("no_answer", "no answer")
    attempts = 0
    for attempt in range(1, max_retries + 2):
        attempts = attempt
        req = LLMRequest(
            system=system,
            messages=tuple(messages),
            json_schema=json_schema,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=None if seed is None else (seed + attempt - 1) & 0x7FFFFFFF,
            label=label,
            stop=tuple(stop),
            agent=agent,
        )
        if attempt == 1:
            first_tokens = request_tokens(req)
        try:
            comp = await llm.complete(req)
        except STOPS_THE_RUN:
            raise
        except LLMError as exc:
            return Asked(
                value=None,
                failure=Failure(stage=stage, reason="llm_error", detail=f"{type(exc).__name__}: {exc}",
                                attempts=attempt, action=action),
                attempts=attempt,
                prompt_tokens=first_tokens,
            )  # fmt: skip
        try:
            if not isinstance(comp, Completion):
                raise OutputError(
                    "bad_completion", f"the model returned {type(comp).__name__}, not a Completion"
                )
            return Asked(
                value=parse(comp), failure=None, attempts=attempt, prompt_tokens=first_tokens
            )
        except OutputError as err:
            last = err
        except (
            ValueError,
            TypeError,
            KeyError,
            IndexError,
            AttributeError,
            RecursionError,
            OverflowError,
        ) as exc:
            last = OutputError("bad_output", f"the answer could not be read ({type(exc).__name__})")
        echo = _text_of(comp)[:MAX_ECHO_CHARS] or "(empty)"
        messages.append(Message(role="assistant", content=echo))
        messages.append(user(render("repair", error=last.detail[:MAX_ERROR_CHARS])))
    return Asked(
        value=None,
        failure=Failure(
            stage=stage,
            reason=last.reason,
            detail=last.detail[:1000],
            attempts=attempts,
            action=action,
        ),
        attempts=attempts,
        prompt_tokens=first_tokens,
    )
