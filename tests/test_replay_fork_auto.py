"""A fork's ``provider = "auto"`` means the model its parent ran with, wherever it runs.

The parents here resolve ``auto`` under ``ANTHROPIC_API_KEY``; the forks run where
``OPENAI_API_KEY`` (or no key) makes ``auto`` mean another model. Forking a run with the very
config it was made with used to be refused (``[llm].provider differs ('anthropic:...' ->
'auto')``: the parent's ``auto`` is pinned to what it resolved, the fork's was compared as
written), and a coach's ``auto``, a setting a fork may switch, was switched to what ``auto``
means in the fork's environment. Now ``auto`` in the fork's config is the parent's model for
that part (agents, coach, moderator), so the fork continues the same population with the same
models; a concrete spec is taken as written (refused for the agents, a switch for the coach).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_replay_support import (
    ANTHROPIC,
    LOCAL,
    OPENAI,
    asked,
    by_spec,
    environment,
    mind_down_from,
    rows,
)

from friendsim.llm.base import LLM
from friendsim.llm.scripted import ScriptedLLM
from friendsim.replay.fork import fork
from friendsim.replay.rerun import rerun
from friendsim.replay.resume import resume
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import load_config
from friendsim.runtime.status import RunInterrupted

TOML = """\
[experiment]
name = "fork-auto"
seed = 11
rounds = {rounds}
n_actions = 2
window_length = 600.0

[agents]
count = 4
policy = "llm"

[llm]
provider = {provider}
concurrency = 4
retries = 0

[[llm.overrides]]
agents = ["a00"]
provider = {override}

[coach]
enabled = {coach}
kind = "llm"
provider = {coach_provider}

[feed]
limit = 40
"""


def write_config(
    path: Path,
    *,
    rounds: int = 3,
    provider: str = "auto",
    override: str = "auto",
    coach: bool = False,
    coach_provider: str = "auto",
) -> Path:
    path.write_text(
        TOML.format(
            rounds=rounds,
            provider=json.dumps(provider),
            override=json.dumps(override),
            coach=json.dumps(coach),
            coach_provider=json.dumps(coach_provider),
        )
    )
    return path


def manifest(run: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run / "manifest.json").read_text())
    return data


def cli(*args: str, auto: str) -> subprocess.CompletedProcess[str]:
    """``friendsim ARGS`` where ``auto`` means ``auto`` and both hosted providers can be made
    (their keys are fakes and their addresses a closed local port: every answer the commands
    here need is recorded, so none asks a model)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    env.update(
        ANTHROPIC_API_KEY="sk-ant-test",
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        ANTHROPIC_BASE_URL="http://127.0.0.1:9",
    )
    if auto == OPENAI:
        env["OPENAI_API_KEY"] = "sk-test-openai"
    assert auto in (OPENAI, ANTHROPIC)
    return subprocess.run(
        [sys.executable, "-m", "friendsim", *args],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip


def made_where_auto_is_anthropic(toml: Path, out: Path) -> dict[str, Any]:
    """Run ``toml`` into ``out`` where ``auto`` means Anthropic's model; its manifest."""
    with pytest.MonkeyPatch.context() as mp:
        environment(mp, ANTHROPIC)
        asyncio.run(
            run_experiment(load_config(toml), out_dir=out, config_path=toml, llm_factory=by_spec)
        )
    return manifest(out)


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three windows of LLM agents (one by an override) under ``provider = "auto"``, made
    where ``auto`` means Anthropic's model."""
    folder = tmp_path_factory.mktemp("fork-auto")
    toml = write_config(folder / "parent.toml")
    made = made_where_auto_is_anthropic(toml, folder / "parent")
    assert set(made["models"].values()) == {ANTHROPIC}
    assert made["config"]["llm"]["provider"] == "auto"
    return folder / "parent"


def window_end_seq(events: list[tuple[Any, ...]], w: int) -> int:
    return next(r[0] for r in events if r[2] == "window_ended" and json.loads(r[4])["window"] == w)


def test_the_config_a_run_was_made_with_forks_it_under_its_models(
    parent: Path, tmp_path: Path
) -> None:
    """``friendsim run parent.toml --fork RUN --at 1`` where ``auto`` now means OpenAI's model:
    the fork is made, changes nothing, and its whole log is the parent's, windows 2-3 included,
    every one of their requests answered by the parent's recorded Anthropic answers (another
    model would have missed them, and no model can be reached here); ``replay --rerun`` of it
    is identical, and so is a fork of the fork with the same config (whose recorded config
    names the models)."""
    out = tmp_path / "fork"
    done = cli(
        "run", str(parent.parent / "parent.toml"), "--fork", str(parent), "--at", "1",
        "--out", str(out), auto=OPENAI,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert rows(out / "events.db") == rows(parent / "events.db")
    made = manifest(out)
    assert made["status"] == "completed" and made["fork"]["changed"] == {}
    assert set(made["models"].values()) == {ANTHROPIC}
    assert made["config"]["llm"]["provider"] == ANTHROPIC
    assert made["config"]["llm"]["overrides"][0]["provider"] == ANTHROPIC
    again = cli("replay", str(out), "--rerun", "--out", str(tmp_path / "again"), auto=OPENAI)
    assert again.returncode == 0, again.stderr
    assert rows(tmp_path / "again" / "events.db") == rows(parent / "events.db")
    grand = cli(
        "run", str(parent.parent / "parent.toml"), "--fork", str(out), "--at", "2",
        "--out", str(tmp_path / "grand"), auto=OPENAI,
    )  # fmt: skip
    assert grand.returncode == 0, grand.stderr
    assert rows(tmp_path / "grand" / "events.db") == rows(parent / "events.db")
    assert manifest(tmp_path / "grand")["fork"]["changed"] == {}


def down_from(window: int) -> Callable[[str], LLM]:
    """:func:`by_spec`'s models, until the provider goes down for good at ``window``'s first
    plan."""
    respond = mind_down_from(window)

    def make(spec: str) -> LLM:
        asked.append(spec)
        provider, _, model = spec.partition(":")
        return ScriptedLLM(respond, provider=provider, model=model)

    return make


def test_a_longer_fork_asks_the_parents_model_live_and_resumes_and_reruns_with_it(
    parent: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent's config one window longer, forked at window 1 where ``auto`` means OpenAI's
    model: window 4, which no recorded answer covers, is asked of the parent's model (the only
    one made), after a prefix identical to the parent's. The same fork stopped by an outage in
    window 4 resumes, where ``auto`` means the local model, to the uninterrupted fork's log,
    and a re-run of that is identical, again asking the parent's model only."""
    longer = load_config(write_config(tmp_path / "longer.toml", rounds=4))
    environment(monkeypatch, OPENAI)
    asked.clear()
    report = asyncio.run(fork(parent, longer, at_window=1, out_dir=tmp_path / "fork",
                              llm_factory=by_spec))  # fmt: skip
    assert report.status == "completed" and report.changed == {"experiment.rounds": [3, 4]}
    assert asked == [ANTHROPIC]
    old, new = rows(parent / "events.db"), rows(tmp_path / "fork" / "events.db")
    prefix = window_end_seq(old, 1)
    assert new[:prefix] == old[:prefix]
    assert window_end_seq(new, 4) > window_end_seq(new, 3) > prefix
    assert set(manifest(tmp_path / "fork")["models"].values()) == {ANTHROPIC}

    cut = tmp_path / "cut"
    with pytest.raises(RunInterrupted, match="provider down"):
        asyncio.run(fork(parent, longer, at_window=1, out_dir=cut, llm_factory=down_from(4)))
    assert manifest(cut)["status"] == "interrupted"
    environment(monkeypatch, LOCAL)
    asked.clear()
    resumed = asyncio.run(resume(cut, llm_factory=by_spec))
    assert resumed.status == "completed"
    assert asked == [ANTHROPIC]
    assert rows(cut / "events.db") == new
    asked.clear()
    again = asyncio.run(rerun(cut, tmp_path / "again", llm_factory=by_spec))
    assert again.identical, again.diff
    assert asked == [ANTHROPIC]


def test_a_fork_naming_another_agents_model_is_still_refused_by_the_setting(
    parent: Path, tmp_path: Path
) -> None:
    """A concrete spec is taken as written: another ``[llm].provider`` than the parent's model
    (here the one ``auto`` now means) is refused, exit 2, naming it with both values; so is
    another override's, named as such: the ``auto`` beside it is the parent's model, not the
    difference (it used to be reported instead, ``'anthropic:...' -> 'auto'``)."""
    agents = write_config(tmp_path / "agents.toml", provider=OPENAI)
    done = cli("run", str(agents), "--fork", str(parent), "--at", "1",
               "--out", str(tmp_path / "a"), auto=OPENAI)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert (
        f"[llm].provider differs from the parent run ('{ANTHROPIC}' -> '{OPENAI}')" in done.stderr
    )
    assert "Traceback" not in done.stderr and not (tmp_path / "a").exists()

    override = write_config(tmp_path / "override.toml", override=OPENAI)
    done = cli("run", str(override), "--fork", str(parent), "--at", "1",
               "--out", str(tmp_path / "o"), auto=OPENAI)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "[llm].overrides differs from the parent run" in done.stderr
    assert f"'provider': '{OPENAI}'" in done.stderr
    assert "[llm].provider" not in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def coached(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three windows of agents on the local model (named) and an LLM coach under
    ``provider = "auto"``, made where ``auto`` means Anthropic's model."""
    folder = tmp_path_factory.mktemp("coach-auto")
    toml = write_config(folder / "coached.toml", provider=LOCAL, override=LOCAL, coach=True)
    made = made_where_auto_is_anthropic(toml, folder / "coached")
    assert made["coach_model"] == ANTHROPIC and set(made["models"].values()) == {LOCAL}
    assert any(r[2] == "guidance_issued" for r in rows(folder / "coached" / "events.db"))
    return folder / "coached"


def test_a_forks_auto_coach_is_the_parents_and_a_named_one_switches(
    coached: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coached run forked with its own config where ``auto`` means OpenAI's model keeps
    the parent's coach model: nothing changes and the log is the parent's (it used to switch
    the coach to OpenAI's model, ``changed`` naming ``coach.provider``). A fork naming OpenAI's
    model for the coach is a switch, from window 1's guidance on, and a re-run of it, where
    ``auto`` means the local model, asks each window's coach the model it ran with."""
    environment(monkeypatch, OPENAI)
    asked.clear()
    same = load_config(coached.parent / "coached.toml")
    report = asyncio.run(fork(coached, same, at_window=1, out_dir=tmp_path / "same",
                              llm_factory=by_spec))  # fmt: skip
    assert report.status == "completed" and report.changed == {}
    assert sorted(asked) == [ANTHROPIC, LOCAL]
    assert manifest(tmp_path / "same")["coach_model"] == ANTHROPIC
    assert rows(tmp_path / "same" / "events.db") == rows(coached / "events.db")

    asked.clear()
    named = load_config(
        write_config(tmp_path / "named.toml", provider=LOCAL, override=LOCAL, coach=True,
                     coach_provider=OPENAI)
    )  # fmt: skip
    switched = asyncio.run(fork(coached, named, at_window=1, out_dir=tmp_path / "switched",
                                llm_factory=by_spec))  # fmt: skip
    assert switched.changed == {"coach.provider": [ANTHROPIC, OPENAI]}
    assert sorted(asked) == [ANTHROPIC, LOCAL, OPENAI]  # the prefix's coach is the parent's
    assert manifest(tmp_path / "switched")["coach_model"] == OPENAI
    environment(monkeypatch, LOCAL)
    asked.clear()
    again = asyncio.run(rerun(tmp_path / "switched", tmp_path / "again", llm_factory=by_spec))
    assert again.identical, again.diff
    assert sorted(asked) == [ANTHROPIC, LOCAL, OPENAI]
