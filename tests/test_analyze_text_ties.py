"""Text-based tie evidence in ``analyze``: an LLM scores peers through the LLM layer, the scores
change the tie network, and the run's cache makes a second analysis replay them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_analyze_fixture import build_run_dir

from friendsim.analysis.analyze import analyze_run
from friendsim.llm.base import LLMRequest
from friendsim.llm.scripted import ScriptedLLM


def _text_run(tmp_path: Path) -> Path:
    rd = build_run_dir(tmp_path / "run", seed=3, n_agents=6, windows=3)
    manifest = json.loads((rd / "manifest.json").read_text(encoding="utf-8"))
    manifest["ties"]["evidence"] = "text"
    (rd / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return rd


def _score_all(value: int) -> Any:
    def answer(req: LLMRequest) -> Any:
        line = next(
            x for x in req.messages[-1].content.splitlines() if x.startswith("Peers to rate:")
        )
        peers = [p.strip() for p in line.split(":", 1)[1].split(",") if p.strip()]
        return {"scores": [{"peer": p, "score": value} for p in peers]}

    return answer


def test_text_evidence_scores_peers_and_is_replayed_from_the_run_cache(tmp_path: Path) -> None:
    rd = _text_run(tmp_path)
    high = ScriptedLLM(_score_all(5))
    first = analyze_run(rd, tie_llm=high)
    assert high.calls and all(c.label == "tie_score" for c in high.calls)
    assert any("text-based tie evidence" in n for n in first["notes"])

    # Same requests again: answered from the run's llm_cache.db, the model is never asked.
    silent = ScriptedLLM([])
    again = analyze_run(rd, tie_llm=silent)
    assert silent.calls == []
    assert again["network"] == first["network"]


def test_text_scores_drive_the_tie_strengths(tmp_path: Path) -> None:
    strong = analyze_run(_text_run(tmp_path / "a"), tie_llm=ScriptedLLM(_score_all(5)))
    weak = analyze_run(_text_run(tmp_path / "b"), tie_llm=ScriptedLLM(_score_all(0)))

    def mean_evidence(result: dict[str, Any]) -> float:
        rows = result["network"]["ties"]["per_window"]
        return sum(r["mean_evidence"] for r in rows) / len(rows)

    assert mean_evidence(weak) == 0.0  # score 0 => evidence 0 for every active pair
    assert mean_evidence(strong) > mean_evidence(weak)
