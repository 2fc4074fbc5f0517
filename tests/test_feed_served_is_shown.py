"""What an agent is served, and what the log records as served, is what its prompt shows."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from friendsim.llm import ScriptedLLM
from friendsim.llm.base import LLMRequest
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.scripted_mind import plausible_responder
from friendsim.testing import small_config

_POST = re.compile(r'<post id="(\d+)"')


@pytest.mark.parametrize("mode", ["rounds", "continuous"])
async def test_compact_prompts_are_served_and_logged_the_items_they_show(
    tmp_path: Path, mode: str
) -> None:
    mind = plausible_responder(0)
    shown: list[tuple[str, list[int]]] = []

    def respond(req: LLMRequest) -> object:
        if req.label == "plan" and len(req.messages) == 1:
            ids = [int(i) for i in _POST.findall(req.messages[0].content)]
            shown.append((req.agent or "", ids))
        return mind(req)

    experiment = {"rounds": 3, "n_actions": 3, "mode": mode}
    if mode == "continuous":
        experiment |= {"tick": 600.0, "wake_rate": 3.0}
    cfg = small_config(
        experiment=experiment,
        agents={"count": 8, "policy": "llm"},
        llm={"provider": "scripted", "prompt_profile": "compact"},
        feed={"ranker": "full", "limit": 40},
    )
    await run_experiment(
        cfg, out_dir=tmp_path / "run", llm_factory=lambda spec: ScriptedLLM(respond, model="s")
    )
    with sqlite3.connect(tmp_path / "run" / "events.db") as con:
        served = [
            (actor, list(json.loads(payload)["post_ids"]))
            for actor, payload in con.execute(
                "SELECT actor, payload FROM events WHERE kind = 'feed_served' ORDER BY seq"
            )
        ]
    assert served and max(len(ids) for _, ids in served) == 12  # the compact profile's 12
    # every plan prompt shows exactly the feed the log says its agent was served (round 1 of
    # the rounds mode serves no feed)
    assert sorted(s for s in shown if s[1]) == sorted(s for s in served if s[1])
    if mode == "continuous":  # the full feed without a window: the newest items
        with sqlite3.connect(tmp_path / "run" / "events.db") as con:
            seq, payload = con.execute(
                "SELECT seq, payload FROM events WHERE kind = 'feed_served'"
                " ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            newest = [
                r[0]
                for r in con.execute(
                    "SELECT post_id FROM posts WHERE seq < ? ORDER BY post_id DESC LIMIT 12", (seq,)
                )
            ]
        assert json.loads(payload)["post_ids"] == sorted(newest)
