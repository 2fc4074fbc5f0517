"""End to end on the REAL embedded local model (llama.cpp + SmolLM2): a small rounds run produces
posts/comments/DMs and votes from real model output.

The e2e test is marked ``local_model``. It FAILS (never skips) when llama_cpp is missing, unless the environment
sets ``FRIENDSIM_SKIP_LOCAL=1``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sqlite3
from pathlib import Path

import pytest

from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import parse_config


def _require_llama_cpp() -> None:
    if os.environ.get("FRIENDSIM_SKIP_LOCAL") == "1":
        pytest.skip("FRIENDSIM_SKIP_LOCAL=1")
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail(
            "llama_cpp is not installed: pip install 'friendsim[local]' "
            "(or set FRIENDSIM_SKIP_LOCAL=1 to skip this test explicitly)"
        )


@pytest.mark.local_model
@pytest.mark.timeout(3000)
def test_rounds_run_on_the_real_local_model(tmp_path: Path) -> None:
    _require_llama_cpp()
    cfg = parse_config(
        {
            "experiment": {"name": "e2e", "seed": 3, "rounds": 2, "n_actions": 1},
            "agents": {"count": 4, "policy": "llm"},
            "llm": {
                "provider": "local:smollm2",
                "concurrency": 1,
                "max_tokens": 40,
                "plan_max_tokens": 140,
                "temperature": 0.3,
                "reprompts": 1,
            },
            "coach": {"enabled": True, "kind": "rule"},
            "feed": {"ranker": "full", "limit": 12},
        }
    )
    out = tmp_path / "run"
    result = asyncio.run(run_experiment(cfg, out_dir=out))
    assert result.manifest.status == "completed"
    assert set(result.manifest.models.values()) == {"local:smollm2"}
    usage = result.manifest.llm_usage["total"]
    assert usage["calls"] > 0 and usage["output_tokens"] > 0

    with sqlite3.connect(out / "events.db") as con:
        rows = con.execute("SELECT kind, actor, payload FROM events ORDER BY seq").fetchall()
    kinds = [k for k, _, _ in rows]
    content = [json.loads(p) for k, _, p in rows if k in ("post_created", "dm_sent")]
    assert content, "the model's plans and texts produced posts, comments or DMs"
    assert all(c["text"].strip() for c in content)
    assert kinds.count("vote_cast") > 0, "the model voted"
    assert kinds.count("window_ended") == 2
    # the texts really come from the model: they are in the LLM cache of the run
    with sqlite3.connect(out / "llm_cache.db") as cache:
        answers = [t for (t,) in cache.execute("SELECT text FROM llm_cache WHERE label='content'")]
    assert answers
    heads = [a.strip().strip("\"'")[:15] for a in answers if a.strip().strip("\"'")]
    assert any(h in c["text"] for h in heads for c in content)


def test_missing_llama_cpp_fails_unless_explicitly_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRIENDSIM_SKIP_LOCAL", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="llama_cpp is not installed"):
        _require_llama_cpp()
    monkeypatch.setenv("FRIENDSIM_SKIP_LOCAL", "1")
    with pytest.raises(pytest.skip.Exception):
        _require_llama_cpp()
