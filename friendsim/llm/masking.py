"""Answers with the environment's secret values masked, before anything keeps them.

Model output is untrusted: an answer that repeats an API key (a prompt injection that got hold of
one, a proxy echoing its headers into the body) would otherwise be stored in the LLM cache and
the event log and shown by every reader. :class:`SecretsMaskedLLM` replaces each secret *value*
of the environment (those :func:`~friendsim.llm.redact.secret_values` finds: the key variables
and every ``*_API_KEY``/``*_TOKEN``/``*_SECRET``) with ``***`` in the answer's text and in every
string of its parsed JSON. Only exact values: the key-shaped patterns the redactor also masks in
error texts (``sk-…``, ``user:password@``) would change ordinary words an agent writes (a model
writing "risk-assessment" or "10:30@cafe" is not leaking anything), and the text is what the
simulation studies. An answer with no secret in it is returned as it came (the same object).

It sits below the LLM cache (``build_llm``), so the cache and the log only ever hold the masked
answer and a replay reads back what the run saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.llm.redact import MASK, secret_values


class SecretsMaskedLLM:
    """``inner`` with the secret values of ``env`` (read once, here) masked in its answers."""

    def __init__(self, inner: LLM, env: Mapping[str, str] | None = None) -> None:
        self.inner = inner
        self._secrets = secret_values(env)

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: LLMRequest) -> Completion:
        out = await self.inner.complete(request)
        secrets = self._secrets
        if not secrets:
            return out
        text = _masked(out.text, secrets)
        parsed = _masked_value(out.parsed, secrets)
        if text is out.text and parsed is out.parsed:
            return out
        return replace(out, text=text, parsed=parsed)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _masked(text: str, secrets: Sequence[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _masked_value(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` (JSON-like) with every string masked; the same object when nothing changed."""
    if isinstance(value, str):
        return _masked(value, secrets)
    if isinstance(value, dict):
        items, changed = {}, False
        for k, v in value.items():
            k2, v2 = _masked_value(k, secrets), _masked_value(v, secrets)
            changed = changed or k2 is not k or v2 is not v
            items[k2] = v2
        return items if changed else value
    if isinstance(value, list):
        got = [_masked_value(v, secrets) for v in value]
        return value if all(a is b for a, b in zip(got, value, strict=True)) else got
    return value
