"""What a run says when the model behind its coach or its moderator fails.

A provider that is down (its circuit breaker opens) stops the run whoever asked: the agents, the
coach or the moderator. Before, the coach and the moderator turned the breaker's error into a
recorded fallback, window after window, and a run whose coach model was gone from the first
call ended ``completed``, exit 0. A request lost to a provider error that does not stop the
run (one rejected call) is a loss the run reports: ``degraded``, with the count in the
manifest's totals. A model's invalid answer is its behaviour: the run stays ``completed``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from friendsim.coach.llm import read_context
from friendsim.llm.base import LLM, LLMRequest
from friendsim.llm.errors import PermanentLLMError, ServerError
from friendsim.llm.scripted import Reply, ScriptedLLM
from friendsim.replay.resume import resume
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import ExperimentConfig, parse_config
from friendsim.runtime.scripted_mind import plausible_responder
from friendsim.runtime.status import RunInterrupted

COACH, MODERATOR = "scripted:coach", "scripted:moderator"


def coached(mode: str = "rounds") -> ExperimentConfig:
    """LLM agents on one provider, an LLM coach on another; three windows."""
    experiment: dict[str, Any] = {"name": "c", "seed": 1, "rounds": 3, "n_actions": 2}
    if mode == "continuous":
        experiment.update(mode="continuous", window_length=600.0, tick=60.0, wake_rate=2.0)
    return parse_config(
        {
            "experiment": experiment,
            "agents": {"count": 4, "policy": "llm"},
            "llm": {"provider": "scripted", "retries": 0, "concurrency": 4},
            "coach": {"enabled": True, "kind": "llm", "provider": COACH},
        }
    )


def moderated() -> ExperimentConfig:
    """Baseline agents and an LLM moderator on its own provider."""
    return parse_config(
        {
            "experiment": {"name": "m", "seed": 2, "rounds": 3, "n_actions": 2},
            "agents": {"count": 6, "policy": "baseline"},
            "coach": {"enabled": False},
            "llm": {"provider": "scripted", "retries": 0, "concurrency": 4},
            "moderation": {"enabled": True, "kind": "llm", "provider": MODERATOR},
        }
    )


def coach_window(request: LLMRequest) -> tuple[str, int]:
    """``(agent, window)`` of a coach request (its context names both)."""
    context = read_context(request.messages[0].content)
    return context["user"], context["after_round"]


def models(fails: dict[str, Callable[[LLMRequest], Any]]) -> Callable[[str], LLM]:
    """Every spec answers through the scripted mind, except where ``fails[spec](request)``
    returns an error (or an answer) instead."""
    mind = plausible_responder(0)

    def factory(spec: str) -> LLM:
        def respond(request: LLMRequest) -> Reply:
            if spec in fails and (out := fails[spec](request)) is not None:
                return out
            return mind(request)

        return ScriptedLLM(respond, model="mind")

    return factory


def rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"
        ).fetchall()


def manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "manifest.json").read_text())


def down() -> ServerError:
    return ServerError("stub: 503 model down", status=503)


@pytest.mark.parametrize(("mode", "from_window"), [("rounds", 1), ("rounds", 3), ("continuous", 2)])
def test_a_coach_whose_provider_is_down_stops_the_run_and_its_resume_gives_the_whole_log(
    tmp_path: Path, mode: str, from_window: int
) -> None:
    """From window 1 the coach never answered; from window 3 (the last) it failed only after
    the run's last window, where a failed window end used to pass unnoticed (and from window 2
    in continuous mode). Either way the run
    stops ``interrupted`` (``provider_down``) with that window's end committed and none of its
    guidance recorded, no fallback in the log; ``--resume`` with the coach back asks for that
    guidance and ends with the log of a run whose coach never failed."""
    whole = asyncio.run(
        run_experiment(coached(mode), out_dir=tmp_path / "whole", llm_factory=models({}))
    )
    assert whole.manifest.status == "completed"

    run = tmp_path / "run"
    failing = models({COACH: lambda r: down() if coach_window(r)[1] >= from_window else None})
    with pytest.raises(RunInterrupted, match="503 model down") as stopped:
        asyncio.run(run_experiment(coached(mode), out_dir=run, llm_factory=failing))
    assert stopped.value.reason == "provider_down"
    m = manifest(run)
    assert m["status"] == "interrupted" and m["stop_reason"] == "provider_down"
    # The window whose guidance failed is complete in the log, and the manifest counts it.
    assert m["windows"] == from_window
    assert m["totals"]["wakes"] == sum(w.wakes for w in whole.windows[:from_window])
    log = rows(run / "events.db")
    ended = [json.loads(p)["window"] for _, _, k, _, p in log if k == "window_ended"]
    assert ended == list(range(1, from_window + 1))
    guided = {json.loads(p)["window"] for _, _, k, _, p in log if k == "guidance_issued"}
    assert guided == set(range(1, from_window))
    assert not [p for _, _, k, _, p in log if k == "action_failed" and "llm_error" in p]

    report = asyncio.run(resume(run, llm_factory=models({})))
    assert report.status == "completed"
    assert rows(run / "events.db") == rows(tmp_path / "whole" / "events.db")


def test_one_coach_request_lost_to_the_provider_makes_the_run_degraded(tmp_path: Path) -> None:
    """One rejected call (a 409: permanent, not fatal) loses a02's window-2 guidance; the rule
    coach's tips stand in, recorded as such, and the run ends ``degraded`` with the loss
    counted: the run's coaching was not all the model's."""
    rejected = models(
        {COACH: lambda r: PermanentLLMError("stub: 409", status=409)
         if coach_window(r) == ("a02", 2) else None}
    )  # fmt: skip
    done = asyncio.run(run_experiment(coached(), out_dir=tmp_path / "r", llm_factory=rejected))
    assert done.manifest.status == "degraded"
    assert done.manifest.totals["lost_guidance"] == 1
    assert done.manifest.totals["lost_actions"] == 0
    log = rows(tmp_path / "r" / "events.db")
    failed = [json.loads(p) for _, _, k, _, p in log if k == "action_failed"]
    lost = [f for f in failed if f["reason"] != "invalid_output"]  # the scripted mind's own
    assert [(f["stage"], f["reason"], f["action"]["agent"], f["window"]) for f in lost] == [
        ("coach", "llm_error", "a02", 2)
    ]
    guided = {
        (g["agent"], g["window"]): g["coach"]
        for g in (json.loads(p) for _, _, k, _, p in log if k == "guidance_issued")
    }
    assert guided[("a02", 2)] == "llm:fallback" and len(guided) == 4 * 3


def test_a_coach_models_invalid_answer_is_not_a_loss(tmp_path: Path) -> None:
    """The model answering a02's window-2 context with garbage every time is its behaviour:
    the fallback is recorded (``invalid_output``, as for the scripted mind's own invalid tips)
    and the run is ``completed``."""
    garbage = models({COACH: lambda r: "not json" if coach_window(r) == ("a02", 2) else None})
    done = asyncio.run(run_experiment(coached(), out_dir=tmp_path / "r", llm_factory=garbage))
    assert done.manifest.status == "completed" and done.manifest.totals["lost_guidance"] == 0
    failed = [json.loads(p) for _, _, k, _, p in rows(tmp_path / "r" / "events.db")
              if k == "action_failed"]  # fmt: skip
    assert {(f["stage"], f["reason"]) for f in failed} == {("coach", "invalid_output")}
    assert ("a02", 2) in {(f["action"]["agent"], f["window"]) for f in failed}
    assert any("not json" in f["detail"] or "JSON" in f["detail"] for f in failed)


def test_a_moderator_whose_provider_is_down_stops_the_run(tmp_path: Path) -> None:
    """Every review used to become a recorded ``llm_error`` and the run ``completed`` with
    nothing moderated; now the open breaker stops it, resumable."""
    with pytest.raises(RunInterrupted, match="503 model down") as stopped:
        asyncio.run(
            run_experiment(moderated(), out_dir=tmp_path / "r",
                           llm_factory=models({MODERATOR: lambda r: down()}))
        )  # fmt: skip
    assert stopped.value.reason == "provider_down"
    assert manifest(tmp_path / "r")["status"] == "interrupted"
    kinds = {k for _, _, k, _, _ in rows(tmp_path / "r" / "events.db")}
    assert "action_failed" not in kinds and "moderation_decided" not in kinds

    report = asyncio.run(resume(tmp_path / "r", llm_factory=models({})))
    assert report.status == "completed"
    whole = asyncio.run(run_experiment(moderated(), out_dir=tmp_path / "w", llm_factory=models({})))
    assert whole.manifest.status == "completed"
    assert rows(tmp_path / "r" / "events.db") == rows(tmp_path / "w" / "events.db")


def test_one_review_lost_to_the_provider_makes_the_run_degraded(tmp_path: Path) -> None:
    first: list[str] = []

    def reject_first(request: LLMRequest) -> Any:
        if not first or first[0] == request.messages[0].content:
            first[:1] = [request.messages[0].content]
            return PermanentLLMError("stub: 409", status=409)
        return None

    done = asyncio.run(
        run_experiment(moderated(), out_dir=tmp_path / "r",
                       llm_factory=models({MODERATOR: reject_first}))
    )  # fmt: skip
    assert done.manifest.status == "degraded"
    assert done.manifest.totals["lost_reviews"] == 1
    failed = [json.loads(p) for _, _, k, _, p in rows(tmp_path / "r" / "events.db")
              if k == "action_failed"]  # fmt: skip
    assert [(f["stage"], f["reason"]) for f in failed] == [("moderation", "llm_error")]


def test_the_analysis_of_a_run_that_lost_something_or_stopped_says_so(tmp_path: Path) -> None:
    """``friendsim analyze`` (its notes, which the report and the human output print) names a
    degraded run's losses and where a stopped run stopped; a completed run has no such note."""
    from friendsim.analysis.analyze import analyze_run

    rejected = models(
        {COACH: lambda r: PermanentLLMError("stub: 409", status=409)
         if coach_window(r) == ("a02", 2) else None}
    )  # fmt: skip
    asyncio.run(run_experiment(coached(), out_dir=tmp_path / "degraded", llm_factory=rejected))
    notes = analyze_run(tmp_path / "degraded")["notes"]
    assert (
        "degraded run: every window ran, but 1 coach guidance lost to provider errors or a coach "
        "that raised (the rule coach's tips stood in)"
    ) in notes

    down_from_3 = models({COACH: lambda r: down() if coach_window(r)[1] >= 2 else None})
    with pytest.raises(RunInterrupted):
        asyncio.run(
            run_experiment(coached(), out_dir=tmp_path / "stopped", llm_factory=down_from_3)
        )
    notes = analyze_run(tmp_path / "stopped")["notes"]
    assert (
        "interrupted run (provider_down): it stopped after 2 complete windows; the figures "
        "cover what its log holds"
    ) in notes

    asyncio.run(run_experiment(coached(), out_dir=tmp_path / "whole", llm_factory=models({})))
    assert not [n for n in analyze_run(tmp_path / "whole")["notes"] if " run" in n]


def test_a_run_that_lost_guidance_is_re_run_to_the_same_log(tmp_path: Path) -> None:
    """The rejected coach request is kept as a recorded failure: ``replay --rerun`` fails it
    again without asking, the rule coach's tips stand in again, and the re-run is identical
    and ``degraded`` too."""
    from friendsim.replay.rerun import rerun

    rejected = models(
        {COACH: lambda r: PermanentLLMError("stub: 409", status=409)
         if coach_window(r) == ("a02", 2) else None}
    )  # fmt: skip
    asyncio.run(run_experiment(coached(), out_dir=tmp_path / "r", llm_factory=rejected))
    asked: list[tuple[str, int]] = []

    def record(request: LLMRequest) -> None:
        asked.append(coach_window(request))

    report = asyncio.run(
        rerun(tmp_path / "r", tmp_path / "again", llm_factory=models({COACH: record}))
    )
    assert report.identical and not asked  # every coach answer and failure came from the record
    assert manifest(tmp_path / "again")["status"] == "degraded"
    assert manifest(tmp_path / "again")["totals"]["lost_guidance"] == 1


def test_an_old_run_that_lost_guidance_is_refused_naming_the_coach_not_the_agents(
    tmp_path: Path,
) -> None:
    """A run recorded before the cache kept failed requests (its ``llm_failures`` table gone)
    whose coach lost a02's window-2 guidance cannot be re-run: the refusal counts what was lost
    by whom asked it, a coach guidance request, not a model-backed decision of an agent, which
    the run never lost; nothing is created and the run is untouched."""
    from friendsim.replay.rerun import rerun
    from friendsim.rundir.errors import RunInputError

    rejected = models(
        {COACH: lambda r: PermanentLLMError("stub: 409", status=409)
         if coach_window(r) == ("a02", 2) else None}
    )  # fmt: skip
    done = asyncio.run(run_experiment(coached(), out_dir=tmp_path / "r", llm_factory=rejected))
    assert done.manifest.totals["lost_guidance"] == 1 and done.manifest.totals["lost_actions"] == 0
    db = sqlite3.connect(tmp_path / "r" / "llm_cache.db")
    try:
        db.execute("DROP TABLE llm_failures")
        db.commit()
    finally:
        db.close()
    before = rows(tmp_path / "r" / "events.db")
    with pytest.raises(RunInputError) as refused:
        asyncio.run(rerun(tmp_path / "r", tmp_path / "again", llm_factory=models({})))
    message = str(refused.value)
    assert "lost 1 coach guidance request to provider errors (the first in window 2)" in message
    assert "decision" not in message
    assert not (tmp_path / "again").exists()
    assert rows(tmp_path / "r" / "events.db") == before


def test_survey_answers_lost_to_the_provider_make_the_run_degraded(tmp_path: Path) -> None:
    """A survey answer the provider refused used to be recorded as an ``action_failed`` and
    nothing more: the run ended ``completed``, exit 0, with a panel missing. Now it is a loss
    counted like the coach's and the moderator's, and analysis says so."""
    from friendsim.analysis.analyze import analyze_run

    cfg = parse_config(
        {
            "experiment": {"name": "s", "seed": 1, "rounds": 2, "n_actions": 1},
            "agents": {"count": 4, "policy": "llm"},
            "llm": {"provider": "scripted", "retries": 0, "concurrency": 4},
            "coach": {"enabled": False},
            "surveys": [{"name": "panel", "windows": [1, 2], "questions": ["stance"]}],
        }
    )
    refused: list[str | None] = []

    def refuse_a01_in_window_2(request: LLMRequest) -> Any:
        if request.label == "survey" and request.agent == "a01":
            refused.append(request.agent)
            if len(refused) == 2:
                return PermanentLLMError("stub: 409", status=409)
        return None

    llm = models({"scripted": refuse_a01_in_window_2})
    done = asyncio.run(run_experiment(cfg, out_dir=tmp_path / "r", llm_factory=llm))
    assert refused == ["a01", "a01"]
    assert done.manifest.status == "degraded"
    assert done.manifest.totals["lost_answers"] == 1
    assert done.manifest.totals["lost_actions"] == 0
    log = rows(tmp_path / "r" / "events.db")
    failed = [json.loads(p) for _, _, k, _, p in log if k == "action_failed"]
    assert [(f["stage"], f["reason"], f["window"]) for f in failed] == [("survey", "llm_error", 2)]
    answered = [json.loads(p)["window"] for _, _, k, a, p in log if k == "survey_answered"]
    assert sorted(answered) == [1, 1, 1, 1, 2, 2, 2]
    assert (
        "degraded run: every window ran, but 1 survey answers lost to provider errors or a "
        "policy that raised (those agents went unsurveyed)"
    ) in analyze_run(tmp_path / "r")["notes"]

    whole = asyncio.run(run_experiment(cfg, out_dir=tmp_path / "w", llm_factory=models({})))
    assert whole.manifest.status == "completed" and whole.manifest.totals["lost_answers"] == 0


def test_the_analysis_of_a_completed_run_says_what_failed_without_being_lost(
    tmp_path: Path,
) -> None:
    """A model whose plans are never valid JSON leaves the run ``completed`` (its behaviour, not
    a loss), with nothing applied: the analysis used to say nothing of it. It now notes the
    recorded failures by stage and reason; a run where nothing failed has no such note."""
    from friendsim.analysis.analyze import analyze_run

    cfg = parse_config(
        {
            "experiment": {"name": "g", "seed": 1, "rounds": 2, "n_actions": 1},
            "agents": {"count": 4, "policy": "llm"},
            "llm": {"provider": "scripted", "retries": 0, "reprompts": 0},
            "coach": {"enabled": False},
        }
    )
    garbage = models({"scripted": lambda r: "no json here" if r.label == "plan" else None})
    done = asyncio.run(run_experiment(cfg, out_dir=tmp_path / "g", llm_factory=garbage))
    assert done.manifest.status == "completed" and done.manifest.totals["actions"] == 0
    failed = [json.loads(p) for _, _, k, _, p in rows(tmp_path / "g" / "events.db")
              if k == "action_failed"]  # fmt: skip
    reasons = {(f["stage"], f["reason"]) for f in failed}
    assert len(reasons) == 1 and len(failed) == 8
    ((stage, reason),) = reasons
    notes = analyze_run(tmp_path / "g")["notes"]
    assert f"8 recorded failures (action_failed, by stage/reason): {stage}/{reason} 8" in notes

    asyncio.run(run_experiment(cfg, out_dir=tmp_path / "w", llm_factory=models({})))
    assert not [n for n in analyze_run(tmp_path / "w")["notes"] if "recorded failure" in n]
