"""An LLM moderator whose provider is ``auto`` is re-executed with the model the run used.

``auto`` resolves from the environment's keys (``OPENAI_API_KEY``, then ``ANTHROPIC_API_KEY``,
else the local model), and each model's answers are cached under its own name. The manifest
records the moderator's resolved spec (``moderation_model``) and a re-execution pins
``[moderation].provider`` to it, in every phase (a fork's earlier phases from the parent's
record), so a re-run where ``auto`` now means another model still asks the recorded questions
and gives the identical log. Before, only the agents' and the coach's ``auto`` were pinned: a run
whose only model was its moderator missed the cache there and was refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from test_replay_support import (
    ANTHROPIC,
    LOCAL,
    OPENAI,
    asked,
    by_spec,
    config,
    environment,
    rows,
)

from friendsim.replay.fork import fork
from friendsim.replay.rerun import rerun
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import ExperimentConfig, parse_config


def moderated(*, rounds: int, reprompts: int = 2, provider: str | None = None) -> ExperimentConfig:
    """Baseline agents and no coach (no other model whose ``auto`` would be pinned), an LLM
    moderator naming ``provider`` (none by default, so ``[llm].provider = "auto"`` is its)."""
    data: dict[str, Any] = config(rounds=rounds, policy="baseline", coach=False).model_dump(
        mode="json"
    )
    data["llm"]["provider"] = "auto"
    data["moderation"] = {"enabled": True, "kind": "llm", "params": {"reprompts": reprompts}}
    if provider is not None:
        data["moderation"]["provider"] = provider
    return parse_config(data)


def moderation_decisions(db: Path) -> int:
    return sum(1 for r in rows(db) if r[2] == "moderation_decided")


def test_a_rerun_where_auto_means_another_model_asks_the_moderator_the_run_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment(monkeypatch, ANTHROPIC)
    asyncio.run(run_experiment(moderated(rounds=3), out_dir=tmp_path / "run", llm_factory=by_spec))
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["moderation_model"] == ANTHROPIC
    assert manifest["config"]["llm"]["provider"] == "auto"
    assert moderation_decisions(tmp_path / "run" / "events.db") > 0
    for i, auto in enumerate((OPENAI, LOCAL)):
        environment(monkeypatch, auto)
        asked.clear()
        out = tmp_path / f"rerun-{i}"
        report = asyncio.run(rerun(tmp_path / "run", out, llm_factory=by_spec))
        assert report.identical, report.diff
        assert asked == [ANTHROPIC]
        again = json.loads((out / "manifest.json").read_text())
        assert again["moderation_model"] == ANTHROPIC


def test_every_phase_of_a_fork_keeps_the_moderator_it_ran_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent's moderator resolved ``auto`` under one environment, the fork's names
    another model (another ``[moderation]``, from window 2) and runs under a second one: the
    fork re-executes the parent's window with the parent's model, and a re-run of the fork,
    under a third environment, each window with the model it ran with."""
    environment(monkeypatch, ANTHROPIC)
    asyncio.run(
        run_experiment(moderated(rounds=2), out_dir=tmp_path / "parent", llm_factory=by_spec)
    )
    environment(monkeypatch, LOCAL)
    asked.clear()
    report = asyncio.run(
        fork(tmp_path / "parent", moderated(rounds=3, reprompts=1, provider=OPENAI),
             at_window=1, out_dir=tmp_path / "fork", llm_factory=by_spec)
    )  # fmt: skip
    assert report.status == "completed"
    assert sorted(asked) == [ANTHROPIC, OPENAI]
    manifest = json.loads((tmp_path / "fork" / "manifest.json").read_text())
    assert manifest["moderation_model"] == OPENAI
    (phase,) = manifest["fork"]["phases"]
    assert phase["changes"]["moderation.provider"] == ANTHROPIC
    assert moderation_decisions(tmp_path / "fork" / "events.db") > moderation_decisions(
        tmp_path / "parent" / "events.db"
    )
    environment(monkeypatch, LOCAL)
    asked.clear()
    again = asyncio.run(rerun(tmp_path / "fork", tmp_path / "again", llm_factory=by_spec))
    assert again.identical, again.diff
    assert sorted(asked) == [ANTHROPIC, OPENAI]


def test_a_forks_auto_moderator_is_the_parents_wherever_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fork's moderator still says ``auto`` (other parameters from window 2) and runs
    where ``auto`` means another model: it is the parent's model, in every window, and the
    fork reports the parameters as its only change. It used to resolve ``auto`` afresh and
    moderate the fork's windows with that other model."""
    environment(monkeypatch, ANTHROPIC)
    asyncio.run(
        run_experiment(moderated(rounds=2), out_dir=tmp_path / "parent", llm_factory=by_spec)
    )
    environment(monkeypatch, OPENAI)
    asked.clear()
    report = asyncio.run(
        fork(tmp_path / "parent", moderated(rounds=3, reprompts=1), at_window=1,
             out_dir=tmp_path / "fork", llm_factory=by_spec)
    )  # fmt: skip
    assert report.status == "completed"
    assert report.changed == {
        "experiment.rounds": [2, 3],
        "moderation.params": [{"reprompts": 2}, {"reprompts": 1}],
    }
    assert asked == [ANTHROPIC]
    manifest = json.loads((tmp_path / "fork" / "manifest.json").read_text())
    assert manifest["moderation_model"] == ANTHROPIC
    environment(monkeypatch, LOCAL)
    asked.clear()
    again = asyncio.run(rerun(tmp_path / "fork", tmp_path / "again", llm_factory=by_spec))
    assert again.identical, again.diff
    assert asked == [ANTHROPIC]
