"""The redactor: no API key reaches the run directory, a log line or the terminal.

Every text friendsim writes from untrusted sources -- an error body a server sent back (which
may echo request headers), an ``action_failed`` detail, the manifest, a structured log event, an
error line on stderr -- passes :func:`redact_text` (or :func:`redact_value` for JSON-like data).
It removes

- the values of the key variables: ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, every variable
  named by an ``api_key_env`` (providers call :func:`register_key_env`), and any environment
  variable whose name ends in ``_API_KEY``, ``_TOKEN`` or ``_SECRET``;
- key-shaped tokens: ``sk-…``, ``Bearer …``, ``x-api-key: …`` / ``api_key=…`` / ``"api-key": "…"``
  / ``FOO_API_KEY=…`` (but not the words after ``$FOO_API_KEY:``, a variable's name, not its value);
- the ``user:pass@`` userinfo of URLs, and ``user:password@`` before a host wherever it appears
  (a ``Host`` header, a URL without its scheme).

Values shorter than 6 characters are not treated as secrets (they would erase ordinary words).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

MASK = "***"
_MIN_SECRET = 6
_KEY_ENVS: set[str] = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}
_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET")
_USERINFO: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<=://)[^/@\s]+@"), MASK + "@"),  # scheme://anything@
    # user:password@host anywhere: tried only where a user name can start, and neither part
    # crosses a ":" (so linear time on any text); quotes and brackets end a part (JSON stays JSON)
    (
        re.compile(
            r"(?<![^\s/@:\"'<>{}\[\](),;=])[^\s/@:\"'<>{}\[\](),;=]+:[^\s/@:\"'<>{}\[\]]+@(?=[\w\[])"
        ),
        MASK + "@",
    ),
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"sk-[A-Za-z0-9_\-]{6,}"), "sk-" + MASK),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-~+/=]{6,}"), r"\1" + MASK),
    # a key label and its value: x-api-key: …, api_key=…, "api-key": "…", FOO_API_KEY=…; not
    # a reference to a variable ($OPENAI_API_KEY: what follows is a message, never the key)
    (
        re.compile(
            r"(?i)(?<![\w$])((?:[a-z_]\w*_)?(?:x-)?api[-_]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}&]+"
        ),
        r"\1" + MASK,
    ),
    *_USERINFO,
)


def mask_userinfo(text: str) -> str:
    """``text`` with the ``user:password@`` of every URL or host in it replaced by ``***@``."""
    for pattern, repl in _USERINFO:
        text = pattern.sub(repl, text)
    return text


def register_key_env(name: str) -> None:
    """Treat the value of environment variable ``name`` as a secret from now on."""
    _KEY_ENVS.add(name)


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The secret values currently in the environment, longest first."""
    env = os.environ if env is None else env
    found = {
        value
        for name, value in env.items()
        if (name in _KEY_ENVS or name.endswith(_SUFFIXES)) and len(value) >= _MIN_SECRET
    }
    return sorted(found, key=len, reverse=True)


def redact_text(text: str, env: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret value and key-shaped token replaced by ``***``."""
    return _redact(text, secret_values(env))


def _redact(text: str, secrets: list[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact_value(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """A copy of JSON-like ``value`` with :func:`redact_text` applied to every string (the
    environment is read once per call, not once per string: a manifest holds thousands)."""
    return _redact_value(value, secret_values(env), {})


def _redact_value(value: Any, secrets: list[str], done: dict[str, str]) -> Any:
    if isinstance(value, str):
        out = done.get(value)
        if out is None:
            out = done[value] = _redact(value, secrets)
        return out
    if isinstance(value, Mapping):
        return {k: _redact_item(v, secrets, done) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_item(v, secrets, done) for v in value]
    return value


def _redact_item(value: Any, secrets: list[str], done: dict[str, str]) -> Any:
    """:func:`_redact_value` of one member, with the commonest members (numbers, strings seen
    before) answered at once: a manifest holds several per agent."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is str:
        out = done.get(value)
        if out is not None:
            return out
    return _redact_value(value, secrets, done)


_PLAIN = frozenset({int, float, bool, type(None)})


def structlog_redactor(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: redact every value of the event dict."""
    for k, v in event.items():
        if isinstance(v, str | Mapping | list | tuple):
            event[k] = redact_value(v)
    return event
