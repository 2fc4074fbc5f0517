"""Helpers shared by the replay tests (no tests here): small real runs with the scripted mind."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from friendsim.llm.base import LLM, LLMRequest
from friendsim.llm.errors import ProviderStoppedError
from friendsim.llm.scripted import Reply, ScriptedLLM
from friendsim.rundir.log import snapshot
from friendsim.runtime.assembly import RunResult, run_experiment
from friendsim.runtime.config import ExperimentConfig, parse_config
from friendsim.runtime.scripted_mind import plausible_responder


def window_of(request: LLMRequest) -> int | None:
    """The window of an agent's plan request (its prompt starts ``Window N.``), else None."""
    if request.label != "plan":
        return None
    for m in request.messages:
        if m.role == "user" and (found := re.match(r"Window (\d+)\.", m.content)):
            return int(found.group(1))
    return None


def mind_down_from(window: int) -> Callable[[LLMRequest], Reply]:
    """The scripted mind, until the provider goes down for good at ``window``'s first plan."""
    mind = plausible_responder(0)

    def respond(request: LLMRequest) -> Reply:
        w = window_of(request)
        if w is not None and w >= window:
            raise ProviderStoppedError("stub: provider down", fatal=False, cause="outage")
        return mind(request)

    return respond


def mind_factory(spec: str) -> LLM:
    """Every provider spec answers through the deterministic scripted mind."""
    return ScriptedLLM(plausible_responder(0), model="mind")


ANTHROPIC = "anthropic:claude-haiku-4-5"
OPENAI = "openai:gpt-4o-mini"
LOCAL = "local:smollm2"

asked: list[str] = []
"""The spec of every model :func:`by_spec` made (each caches its answers under its spec)."""


def by_spec(spec: str) -> LLM:
    """The scripted mind under the name of ``spec``, the name the registry's provider for it
    has (the cache's key): another spec is another model, whose answers are not in the cache of
    this one's, and a run's recorded answers answer the registry's provider of its spec."""
    asked.append(spec)
    provider, _, model = spec.partition(":")
    return ScriptedLLM(plausible_responder(0), provider=provider, model=model)


def environment(monkeypatch: pytest.MonkeyPatch, auto: str) -> None:
    """Keys under which ``provider = "auto"`` resolves to ``auto`` (none is sent anywhere:
    :func:`by_spec`)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    if auto == OPENAI:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    elif auto == ANTHROPIC:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")


def config(
    *,
    rounds: int = 3,
    agents: int = 4,
    policy: str = "llm",
    coach: bool = True,
    n_actions: int = 2,
    mode: str = "rounds",
    **rewards: Any,
) -> ExperimentConfig:
    data: dict[str, Any] = {
        "experiment": {
            "name": "replay-test",
            "seed": 11,
            "rounds": rounds,
            "n_actions": n_actions,
            "window_length": 600.0,
            "mode": mode,
            "tick": 60.0,
        },
        "agents": {"count": agents, "policy": policy},
        "llm": {"provider": "scripted", "cache": "read_through", "concurrency": 4},
        "coach": {"enabled": coach, "kind": "rule"},
        "feed": {"ranker": "full", "limit": 40},
    }
    if rewards:
        data["rewards"] = rewards
    return parse_config(data)


async def make_run(out: Path, cfg: ExperimentConfig | None = None) -> RunResult:
    return await run_experiment(cfg or config(), out_dir=out, llm_factory=mind_factory)


def rows(db: Path) -> list[tuple[Any, ...]]:
    """The events rows of ``db``, read from a copy (so the run's files stay byte-identical)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = snapshot(db, Path(tmp))
        conn = sqlite3.connect(copy)
        try:
            return conn.execute(
                "SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"
            ).fetchall()
        finally:
            conn.close()


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (names relative), for before/after comparisons.

    ``run.lock`` is left out: it is the writer's lock, not part of the run's record (a resume
    takes the old run's lock, writing its pid there, so no one else writes the run meanwhile).
    """
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "run.lock"
    }
