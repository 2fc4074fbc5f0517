"""The check every server base URL passes: provider specs, endpoints files and the HTTP clients.

A base URL is ``http(s)://host[:port][/path]``: a host and no credentials. ``user:password@`` is refused because a URL is shown in messages, the manifest
and logs, and would be sent as the ``Host`` header: a key belongs in the environment variable
named by ``[llm] api_key_env``. Messages show the URL with any ``user:password@`` masked.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from friendsim.llm.redact import mask_userinfo

CREDENTIALS_HINT = (
    "put no credentials in an endpoint URL; the API key goes in the environment variable "
    "named by [llm] api_key_env"
)


def url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a server's base URL (a sentence naming the URL, its
    credentials masked), or ``None`` when it is a good one."""
    shown = mask_userinfo(url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{shown!r} is not an http(s)://host URL"
    if "@" in parts.netloc:
        return f"{shown!r} carries credentials (user:password@): {CREDENTIALS_HINT}"
    return None


def host_header(parts: SplitResult) -> str:
    """The ``Host`` header of a request to ``parts``: host and port, never any userinfo."""
    return parts.netloc.rpartition("@")[2]
