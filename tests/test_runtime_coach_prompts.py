"""With coaching on, the coach's tips reach the LLM agents' plan prompts and the log holds guidance
events; with coaching off there are neither (the paper's ablation is one flag)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from friendsim.llm.scripted import ScriptedLLM
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import parse_config
from friendsim.runtime.scripted_mind import plausible_responder


async def _run(tmp_path: Path, *, coach: bool) -> tuple[ScriptedLLM, list[tuple[str, str]]]:
    cfg = parse_config(
        {
            "experiment": {"name": "coach-prompts", "seed": 5, "rounds": 3, "n_actions": 2},
            "agents": {"count": 4, "policy": "llm"},
            "llm": {"provider": "scripted"},
            "coach": {"enabled": coach, "kind": "rule"},
        }
    )
    llm = ScriptedLLM(plausible_responder(0))
    out = tmp_path / ("on" if coach else "off")
    await run_experiment(cfg, out_dir=out, llm_factory=lambda spec: llm)
    with sqlite3.connect(out / "events.db") as con:
        rows = con.execute("SELECT kind, payload FROM events ORDER BY seq").fetchall()
    return llm, rows


def _plan_prompts(llm: ScriptedLLM) -> list[str]:
    return ["\n".join(m.content for m in req.messages) for req in llm.calls if req.label == "plan"]


@pytest.mark.parametrize("coach", [True, False])
async def test_tips_in_prompts_and_guidance_in_log_only_when_coaching(
    tmp_path: Path, coach: bool
) -> None:
    llm, rows = await _run(tmp_path, coach=coach)
    plans = _plan_prompts(llm)
    assert len(plans) == 4 * 3  # 4 agents x 3 rounds
    guidance = [p for k, p in rows if k == "guidance_issued"]
    with_tips = [p for p in plans if "<tip " in p]
    if coach:
        assert len(guidance) == 4 * 3  # one per agent per closed round
        # rounds 2 and 3: every agent's plan prompt carries the coach's tips
        assert len(with_tips) == 4 * 2
        assert all("coach" in p for p in with_tips)
    else:
        assert guidance == []
        assert with_tips == []
