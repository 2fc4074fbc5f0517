"""Endpoints files: a fleet of OpenAI-compatible inference servers serving one model.

One endpoint per line, a base URL and optional ``key=value`` settings; ``#`` starts a comment::

    # vLLM on four GPU hosts
    http://gpu-a:8000/v1  weight=2  max_concurrency=64
    http://gpu-b:8000/v1  weight=2  max_concurrency=64
    http://gpu-c:8000/v1
    http://gpu-d:8000/v1  max_concurrency=16

``weight`` (default 1) scales a server's share: of agents (affinity) and of unlabelled requests
(least outstanding / weight). ``max_concurrency`` (default: no cap) is the most requests this
process keeps in flight on that server. A URL must pass :func:`~friendsim.llm.urls.url_problem`
(a host, a port from 1 to 65535, no ``user:password@``: the key goes in ``[llm] api_key_env``).
The file becomes a :class:`~friendsim.llm.pool.PooledLLM` for every ``openai:<model>`` spec that
names no URL (``[llm] endpoints_file``). Every problem is an :class:`EndpointsFileError` naming file and line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from friendsim.llm.errors import ProviderConfigError
from friendsim.llm.urls import url_problem

MAX_ENDPOINTS = 10_000


class EndpointsFileError(ProviderConfigError):
    """An endpoints file is wrong; the message names the file and the line."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint:
    """One server of a pool: its base URL, weight and cap on requests in flight."""

    url: str
    weight: float = 1.0
    max_concurrency: int | None = None


def parse_endpoints(text: str, *, source: str | Path = "<endpoints>") -> tuple[Endpoint, ...]:
    """Parse the text of an endpoints file (module docstring)."""
    out: list[Endpoint] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        url, *settings = line.split()
        problem = url_problem(url)
        if problem is not None:
            raise EndpointsFileError(f"{where}: {problem}")
        if url in seen:
            raise EndpointsFileError(f"{where}: {url} is listed twice")
        seen.add(url)
        weight, cap = 1.0, None
        for item in settings:
            key, eq, value = item.partition("=")
            if not eq:
                raise EndpointsFileError(
                    f"{where}: {item!r} is not key=value (known: weight, max_concurrency)"
                )
            if key == "weight":
                try:
                    weight = float(value)
                except ValueError:
                    weight = math.nan
                if not (math.isfinite(weight) and weight > 0):
                    raise EndpointsFileError(
                        f"{where}: weight must be a positive number, got {value!r}"
                    )
            elif key == "max_concurrency":
                if not value.isdigit() or int(value) < 1:
                    raise EndpointsFileError(
                        f"{where}: max_concurrency must be an integer >= 1, got {value!r}"
                    )
                cap = int(value)
            else:
                raise EndpointsFileError(
                    f"{where}: unknown setting {key!r} (known: weight, max_concurrency)"
                )
        out.append(Endpoint(url=url, weight=weight, max_concurrency=cap))
        if len(out) > MAX_ENDPOINTS:
            raise EndpointsFileError(f"{source}: more than {MAX_ENDPOINTS} endpoints")
    if not out:
        raise EndpointsFileError(f"{source}: lists no endpoint (one URL per line)")
    return tuple(out)


def load_endpoints(path: str | Path) -> tuple[Endpoint, ...]:
    """Read and parse an endpoints file."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise EndpointsFileError(f"{p}: endpoints file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EndpointsFileError(f"{p}: cannot read endpoints file: {exc}") from None
    return parse_endpoints(text, source=p)
