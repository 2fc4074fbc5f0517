"""Surveys at configured windows: valid answers stored, invalid ones re-asked then failures."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from friendsim.agents.schema import OutputError
from friendsim.agents.survey import (
    SurveyReply,
    belief_question,
    ipip_questions,
    parse_answers,
    stance_question,
)
from friendsim.llm.errors import BudgetExceededError
from friendsim.llm.scripted import ScriptedLLM
from friendsim.platform.events import Event, event_from_row
from friendsim.replay.rerun import rerun
from friendsim.replay.resume import resume
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import ConfigError, parse_config
from friendsim.runtime.scripted_mind import plausible_responder
from friendsim.runtime.status import RunInterrupted

ITEMS = [
    {"id": "f1", "text": "Claim F.", "topic": "energy", "source": "Buzz", "truth": "false"},
    {"id": "t1", "text": "Claim T.", "topic": "science", "source": "WS", "truth": "true"},
]


def events(run: Path) -> list[Event]:
    with sqlite3.connect(run / "events.db") as con:
        return [event_from_row(*r) for r in con.execute("SELECT * FROM events ORDER BY seq")]


def config(policy: str = "baseline", **over: Any) -> Any:
    data: dict[str, Any] = {
        "experiment": {"name": "s", "seed": 1, "rounds": 4, "n_actions": 1},
        "agents": {"count": 4, "policy": policy},
        "llm": {"provider": "scripted", "retries": 0, "reprompts": 2},
        "coach": {"enabled": False},
        "rewards": {"sentiment": "lexicon"},
        "interventions": [{"kind": "inject", "window": 2, "items": ITEMS}],
        "surveys": [
            {"name": "panel", "windows": [1, 3], "questions": ["stance", "trust", "belief", "ipip"]}
        ],
    }
    data.update(over)
    return parse_config(data)


def test_parse_answers_names_the_problem() -> None:
    qs = (stance_question("climate"), belief_question("f1", "x", seen=True, label=None))
    assert parse_answers({"answers": {"stance": 7, "belief:f1": 1}}, qs) == {
        "stance": 7,
        "belief:f1": 1,
    }
    for bad, reason in [
        ({"answers": {"stance": 8, "belief:f1": 1}}, "out_of_range"),
        ({"answers": {"stance": 3}}, "missing_answer"),
        ({"answers": {"stance": "3", "belief:f1": 1}}, "missing_answer"),
        ({"answers": {"stance": 3, "belief:f1": 1, "other": 2}}, "unknown_question"),
        ({"stance": 3}, "bad_schema"),
    ]:
        with pytest.raises(OutputError) as ei:
            parse_answers(bad, qs)
        assert ei.value.reason == reason
    assert len(ipip_questions()) == 20 and all(q.hi == 5 for q in ipip_questions())


@pytest.mark.parametrize("policy", ["baseline", "llm"])
async def test_survey_answers_stored_at_their_windows(tmp_path: Path, policy: str) -> None:
    cfg = config(policy)
    factory = (lambda s: ScriptedLLM(plausible_responder(0))) if policy == "llm" else None
    await run_experiment(cfg, out_dir=tmp_path / "run", llm_factory=factory)
    evs = events(tmp_path / "run")
    answered = [e for e in evs if e.kind == "survey_answered"]
    assert sorted({(e.window, e.actor) for e in answered}) == [  # type: ignore[attr-defined]
        (w, a) for w in (1, 3) for a in ("a00", "a01", "a02", "a03")
    ]
    for e in answered:
        qs = set(e.answers)  # type: ignore[attr-defined]
        assert "stance" in qs and sum(q.startswith("ipip:") for q in qs) == 20
        if e.window == 1:  # type: ignore[attr-defined]
            assert not any(q.startswith(("belief:", "trust:")) for q in qs)  # nothing injected yet
        else:
            assert {"belief:f1", "belief:t1", "trust:Buzz", "trust:WS"} <= qs
        assert all(1 <= v <= (5 if q.startswith("ipip:") else 7) for q, v in e.answers.items())  # type: ignore[attr-defined]
        # asked at the end of the window: after its vote phase, before WindowEnded
    ended = {e.window: e.seq for e in evs if e.kind == "window_ended"}  # type: ignore[attr-defined]
    assert all(e.seq < ended[e.window] for e in answered)  # type: ignore[attr-defined]
    with sqlite3.connect(tmp_path / "run" / "events.db") as con:
        n = con.execute("SELECT count(*) FROM survey_answers").fetchone()[0]
    assert n == sum(len(e.answers) for e in answered)  # type: ignore[attr-defined]
    report = await rerun(tmp_path / "run", tmp_path / "again", llm_factory=factory)
    assert report.identical


async def test_invalid_answers_reasked_then_recorded_as_failures(tmp_path: Path) -> None:
    responder = plausible_responder(0)
    asked: list[Any] = []

    def answer(req: Any) -> Any:
        if req.label == "survey":
            asked.append(req)
            if req.agent == "a01":
                return {"answers": {"stance": 9}}  # always invalid
            if len(req.messages) == 1:
                return "I would rather not say"  # invalid first, valid when re-asked
        return responder(req)

    cfg = config(
        "llm", surveys=[{"name": "p", "windows": [2], "questions": ["stance"]}], interventions=[]
    )
    await run_experiment(cfg, out_dir=tmp_path / "run", llm_factory=lambda s: ScriptedLLM(answer))
    evs = events(tmp_path / "run")
    ok = {e.actor: e.answers for e in evs if e.kind == "survey_answered"}  # type: ignore[attr-defined]
    assert sorted(ok) == ["a00", "a02", "a03"]
    (failed,) = [e for e in evs if e.kind == "action_failed" and e.stage == "survey"]  # type: ignore[attr-defined]
    assert failed.actor == "a01" and failed.attempts == 3  # type: ignore[attr-defined]
    assert failed.action == {"survey": "p", "window": 2}  # type: ignore[attr-defined]
    assert sum(r.agent == "a01" for r in asked) == 3
    assert sum(r.agent == "a00" for r in asked) == 2  # re-asked once with the problem named
    reask = next(r for r in asked if r.agent == "a00" and len(r.messages) > 1)
    assert "JSON" in reask.messages[-1].content or "reply" in reask.messages[-1].content.lower()


def test_survey_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"\[surveys\]\[0\]\.windows"):
        config(surveys=[{"windows": [0]}])
    with pytest.raises(ConfigError, match=r"\[surveys\]\[0\]\.questions"):
        config(surveys=[{"windows": [1], "questions": ["mood"]}])


def test_two_surveys_of_one_name_are_a_config_error() -> None:
    """Their answers were one survey's in the log (``survey_answered.survey``), and they drew
    the same sample: two ``[[surveys]]`` without a name were both "survey"."""
    with pytest.raises(ConfigError) as err:
        config(surveys=[{"windows": [1, 2], "questions": ["stance"]}, {"windows": [2]}])
    assert err.value.key == "[surveys][1].name"
    assert "'survey' names [surveys][0] too" in err.value.problem
    named = config(surveys=[{"windows": [2]}, {"name": "pulse", "windows": [2]}])
    assert [s.name for s in named.surveys] == ["survey", "pulse"]


async def test_sampled_survey_is_seeded(tmp_path: Path) -> None:
    cfg = config(surveys=[{"name": "half", "windows": [2], "sample": 0.5, "questions": ["stance"]}])
    await run_experiment(cfg, out_dir=tmp_path / "a")
    await run_experiment(cfg, out_dir=tmp_path / "b")
    who = [
        sorted(e.actor for e in events(tmp_path / d) if e.kind == "survey_answered") for d in "ab"
    ]
    assert who[0] == who[1] and len(who[0]) == 2
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["config"]["surveys"][0]["sample"] == 0.5


def test_survey_window_after_the_run_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        config(surveys=[{"windows": [1, 4, 99]}])  # 4 rounds: window 99 is never asked
    assert err.value.key == "[surveys][0].windows"
    assert "window 99 is after the run's last window (4)" in err.value.problem
    assert config(surveys=[{"windows": [4]}]).surveys[0].windows == (4,)


class OddRespondent:
    """The baseline policy, except for its survey answers: each agent's is wrong its own way."""

    def __init__(self, inner: Any, agent: str) -> None:
        self.inner, self.agent = inner, agent

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def answer(self, *, survey: str, window: int, questions: Any) -> SurveyReply:
        odd: dict[str, Any] = {
            "a00": {"stance": 99},
            "a01": {"stance": 3, "mood": 1},
            "a02": {"stance": "7"},
        }
        if self.agent == "a03":
            raise ZeroDivisionError("division by zero in the plug-in")
        return SurveyReply(answers=odd[self.agent])


async def test_a_plugin_policy_s_answers_are_held_to_the_questions(tmp_path: Path) -> None:
    """A policy's answers are checked like a model's: an answer off its scale, to a question
    not asked or not an integer is that agent's named failure, not a recorded answer (a string
    crashed the run); a policy that raises loses that answer (the run ended ``failed``)."""
    from friendsim.agents.policies import POLICIES, BaselineParams, _baseline

    def odd(*, context: Any, **params: Any) -> Any:
        return OddRespondent(_baseline(context=context, **params), context.persona.id)

    POLICIES.register("odd-respondent-for-test", odd, params=BaselineParams)
    try:
        cfg = config(
            surveys=[{"name": "p", "windows": [2], "questions": ["stance"]}], interventions=[]
        )
        cfg = cfg.model_copy(
            update={"agents": cfg.agents.model_copy(update={"policy": "odd-respondent-for-test"})}
        )
        result = await run_experiment(cfg, out_dir=tmp_path / "run")
    finally:
        POLICIES.unregister("odd-respondent-for-test")
    evs = events(tmp_path / "run")
    assert not [e for e in evs if e.kind == "survey_answered"]
    failed = {e.actor: e for e in evs if e.kind == "action_failed" and e.stage == "survey"}  # type: ignore[attr-defined]
    assert {a: f.reason for a, f in failed.items()} == {  # type: ignore[attr-defined]
        "a00": "out_of_range",
        "a01": "unknown_question",
        "a02": "missing_answer",
        "a03": "policy_error",
    }
    assert "ZeroDivisionError" in failed["a03"].detail  # type: ignore[attr-defined]
    assert result.manifest.status == "degraded"
    assert result.manifest.totals["lost_answers"] == 1


def mind_with(survey: Callable[[Any], Any]) -> Callable[[str], ScriptedLLM]:
    """The scripted mind, with ``survey(request)`` answering the survey requests."""
    responder = plausible_responder(0)

    def answer(req: Any) -> Any:
        return survey(req) if req.label == "survey" else responder(req)

    return lambda spec: ScriptedLLM(answer, model="mind")


LLM_SURVEYED = {"surveys": [{"name": "p", "windows": [2], "questions": ["stance"]}]}


async def test_a_budget_spent_by_a_survey_interrupts_the_run_which_resumes_as_uninterrupted(
    tmp_path: Path,
) -> None:
    """The budget reached by a survey's request stops the run ``interrupted`` (resumable), as it
    does in a wake (it ended ``failed``), with nothing of that survey recorded."""
    responder = plausible_responder(0)
    await run_experiment(
        config("llm", **LLM_SURVEYED), out_dir=tmp_path / "full", llm_factory=mind_with(responder)
    )

    def spent(req: Any) -> Any:
        if req.agent == "a02":
            raise BudgetExceededError("budget reached", limit_usd=0.01, spent_usd=0.01)
        return responder(req)

    with pytest.raises(RunInterrupted) as stopped:
        await run_experiment(
            config("llm", **LLM_SURVEYED), out_dir=tmp_path / "run", llm_factory=mind_with(spent)
        )
    assert stopped.value.reason == "budget"
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["stop_reason"] == "budget"
    assert not [e for e in events(tmp_path / "run") if e.kind == "survey_answered"]

    report = await resume(tmp_path / "run", llm_factory=mind_with(responder))
    assert report.status == "completed"
    assert events(tmp_path / "run") == events(tmp_path / "full")


async def test_a_stop_request_during_a_survey_is_honoured_without_waiting_for_its_answers(
    tmp_path: Path,
) -> None:
    """Ctrl-C while a survey waits on a slow model stops the run there (it waited for every
    answer first), with nothing of the survey recorded; the resume ends as uninterrupted."""
    responder = plausible_responder(0)
    stop, never = asyncio.Event(), asyncio.Event()

    async def slow(req: Any) -> Any:
        if req.agent == "a01":
            stop.set()
            await never.wait()  # a model that would answer much later
        return responder(req)

    with pytest.raises(RunInterrupted):
        await asyncio.wait_for(
            run_experiment(
                config("llm", **LLM_SURVEYED),
                out_dir=tmp_path / "run",
                llm_factory=mind_with(slow),
                stop=stop,
            ),
            timeout=60,
        )
    evs = events(tmp_path / "run")
    assert not [e for e in evs if e.kind == "survey_answered"]
    assert [e.window for e in evs if e.kind == "window_ended"] == [1]  # type: ignore[attr-defined]

    await run_experiment(
        config("llm", **LLM_SURVEYED), out_dir=tmp_path / "full", llm_factory=mind_with(responder)
    )
    await resume(tmp_path / "run", llm_factory=mind_with(responder))
    assert events(tmp_path / "run") == events(tmp_path / "full")
