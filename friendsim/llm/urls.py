"""The check every server base URL passes: provider specs, endpoints files and the HTTP clients.

A base URL is ``http(s)://host[:port][/path]``: a host, a port (when given) from 1 to 65535, and
no credentials. ``user:password@`` is refused because a URL is shown in messages, the manifest
and logs, and would be sent as the ``Host`` header: a key belongs in the environment variable
named by ``[llm] api_key_env``. Messages show the URL with any ``user:password@`` masked.
"""

from __future__ import annotations

import os
from urllib.parse import SplitResult, urlsplit

from friendsim.llm.redact import mask_userinfo

CREDENTIALS_HINT = (
    "put no credentials in an endpoint URL; the API key goes in the environment variable "
    "named by [llm] api_key_env"
)


def url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a server's base URL (a sentence naming the URL, its
    credentials masked), or ``None`` when it is a good one. Never raises."""
    shown = mask_userinfo(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL"
        return f"{shown!r} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{shown!r} is not an http(s)://host URL"
    if "@" in parts.netloc:
        return f"{shown!r} carries credentials (user:password@): {CREDENTIALS_HINT}"
    try:
        port = parts.port
    except ValueError:  # not a number, or beyond 65535
        port = 0
    if port == 0:
        return f"{shown!r} has a bad port {_port_text(parts)!r} (need a number from 1 to 65535)"
    return None


def _port_text(parts: SplitResult) -> str:
    """The port as written in ``parts`` (the text after the host's last ``:``)."""
    host = parts.netloc.rpartition("@")[2]
    return host.rpartition("]")[2].rpartition(":")[2]


def host_header(parts: SplitResult) -> str:
    """The ``Host`` header of a request to ``parts``: host and port, never any userinfo."""
    return parts.netloc.rpartition("@")[2]


def sdk_endpoint(base_url: str | None, env_var: str, default: str) -> str:
    """The base URL an official SDK sends to: ``base_url``, else the SDK's own environment
    variable (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``), else its public API. Messages name
    this URL, so a redirected SDK is not reported as talking to the public API. A bad URL in the
    variable is refused as a bad ``base_url`` is (``ValueError`` naming the variable)."""
    if base_url is not None:
        return base_url
    from_env = os.environ.get(env_var)
    if not from_env:
        return default
    if (problem := url_problem(from_env)) is not None:
        raise ValueError(f"{env_var}: {problem}")
    return from_env
