"""Text from plug-ins that UTF-8 cannot encode (a lone surrogate) never ends a run with "commit
failed": each kind of plug-in's bad text becomes what its other invalid output becomes, and the
log never holds it.

Each test is a real small run (SQLite file, the run's assembly) with one plug-in fake from
:mod:`friendsim.testing` emitting ``"\\ud800"``. Before the platform checked text, every one of
them failed: the commit of the batch holding the text raised ``UnicodeEncodeError``, the platform
closed, and the run ended ``failed`` with ``PlatformClosedError``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from friendsim.agents.policies import POLICIES, PolicyContext
from friendsim.agents.survey import Question, SurveyReply
from friendsim.coach.kinds import COACHES
from friendsim.moderation.base import ModerationItem, Review, Verdict
from friendsim.moderation.kinds import MODERATORS
from friendsim.platform.events import (
    ActionFailed,
    BroadcastSent,
    Event,
    GuidanceIssued,
    ModerationDecided,
    PostCreated,
    SurveyAnswered,
    event_from_row,
)
from friendsim.registry import Registry
from friendsim.runtime.assembly import RunResult
from friendsim.runtime.interventions import INTERVENTIONS
from friendsim.testing import (
    FakeCoach,
    FakeIntervention,
    FakeModerator,
    ScriptedPolicy,
    factory,
    run_small,
    small_config,
)
from friendsim.vocabulary import Failure, Tip

BAD = "bad \ud800 text"
"""What the plug-ins emit: a lone surrogate at character 5."""
SHOWN = "bad \ufffd text"
"""How it is recorded where it is recorded (a failure's text)."""
NAMED = "not valid Unicode (lone surrogate \\ud800 at character 5)"


@pytest.fixture
def plugins() -> Iterator[list[tuple[Registry[Any], str]]]:
    """Registrations made by a test, undone after it."""
    made: list[tuple[Registry[Any], str]] = []
    yield made
    for registry, name in made:
        registry.unregister(name)


def _register(
    made: list[tuple[Registry[Any], str]], registry: Registry[Any], name: str, make: Any
) -> None:
    registry.register(name, make, replace=True)
    made.append((registry, name))


def _events(result: RunResult) -> list[Event]:
    """Every row of the run's log, decoded as friendsim reads it, none of them holding a
    surrogate (not even spelled as a JSON escape)."""
    with sqlite3.connect(result.run_dir / "events.db") as con:
        rows = con.execute(
            "SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"
        ).fetchall()
    assert rows
    for row in rows:  # UTF-8 refuses a surrogate
        json.dumps(json.loads(row[4]), ensure_ascii=False).encode("utf-8")
    return [event_from_row(*r) for r in rows]


def _failures(events: Sequence[Event], stage: str) -> list[ActionFailed]:
    return [e for e in events if isinstance(e, ActionFailed) and e.stage == stage]


def test_a_policy_s_text_is_a_failed_command_and_the_run_goes_on(
    tmp_path: Path, plugins: list[tuple[Registry[Any], str]]
) -> None:
    """Treated as an empty or over-long text is: the platform refuses the post
    (``invalid_text``, naming the field), the runtime records it with the action, whose text
    shows U+FFFD, and the run completes. (Before: ``failed``, ``PlatformClosedError``.)"""
    _register(plugins, POLICIES, "bad-text", ScriptedPolicy.factory(text=BAD))
    result = run_small(tmp_path / "run", small_config(agents={"policy": "bad-text"}))

    assert result.manifest.status == "completed"
    assert [t.window for t in result.windows] == [1, 2]
    events = _events(result)
    assert not [e for e in events if isinstance(e, PostCreated)]
    failed = _failures(events, "command")
    assert len(failed) == 4 * 2 * 2  # every action of every agent in every round
    for f in failed:
        assert f.reason == "invalid_text"
        assert (
            f.detail
            == f"post_created by {f.actor!r}: text: {NAMED}; the log (UTF-8) cannot store it"
        )
        assert f.action == {"type": "POST", "topic": "testing", "tone": "neutral", "text": SHOWN}


def test_a_policy_s_topic_is_a_failed_command_too(
    tmp_path: Path, plugins: list[tuple[Registry[Any], str]]
) -> None:
    _register(plugins, POLICIES, "bad-topic", ScriptedPolicy.factory(topic=BAD))
    result = run_small(tmp_path / "run", small_config(agents={"policy": "bad-topic"}))

    assert result.manifest.status == "completed"
    failed = _failures(_events(result), "command")
    assert len(failed) == 16
    assert {f.reason for f in failed} == {"invalid_text"}
    assert all(f"topic: {NAMED}" in f.detail for f in failed)


def test_a_coach_s_tip_is_that_coach_s_error_and_the_rule_coach_stands_in(
    tmp_path: Path, plugins: list[tuple[Registry[Any], str]]
) -> None:
    """As for a coach that returns something other than tips: ``coach_error`` naming the tip's
    field, the rule coach's tips recorded instead, the run ``degraded`` (guidance lost)."""
    tip = Tip(
        action="POST", target=None, topic="soil", invite_mention=False, tone="neutral", text=BAD
    )
    _register(plugins, COACHES, "bad-tips", factory(FakeCoach((tip,))))
    result = run_small(tmp_path / "run", small_config(coach={"kind": "bad-tips"}))

    assert result.manifest.status == "degraded"
    assert [t.window for t in result.windows] == [1, 2]
    events = _events(result)
    failed = _failures(events, "coach")
    assert len(failed) == 4 * 2
    for f in failed:
        assert f.reason == "coach_error"
        assert f.detail == (
            f"TypeError: coach 'fake' returned a tip the log cannot hold: tips[0].text: {NAMED}"
        )
    guidance = [e for e in events if isinstance(e, GuidanceIssued)]
    assert len(guidance) == 8 and {g.coach for g in guidance} == {"fake:fallback"}
    assert all(g.tips and tip not in g.tips for g in guidance)


def test_a_coach_s_error_message_is_recorded_with_u_fffd(
    tmp_path: Path, plugins: list[tuple[Registry[Any], str]]
) -> None:
    """A coach that raises with the text in its message: the failure's record shows U+FFFD
    (a failure's record must not fail), the rule coach stands in."""
    _register(plugins, COACHES, "bad-raise", factory(FakeCoach(error=ValueError(BAD))))
    result = run_small(tmp_path / "run", small_config(coach={"kind": "bad-raise"}))

    assert result.manifest.status == "degraded"
    failed = _failures(_events(result), "coach")
    assert len(failed) == 8
    assert {(f.reason, f.detail) for f in failed} == {("coach_error", f"ValueError: {SHOWN}")}


def test_a_moderator_s_verdict_is_that_moderator_s_error_and_the_item_stays(
    tmp_path: Path, plugins: list[tuple[Registry[Any], str]]
) -> None:
    """As for an answer that is not a review: ``moderator_error`` naming the verdict's field,
    no decision, the run ``degraded`` (reviews lost)."""
    verdict = Verdict(action="label", label=BAD)
    moderator = FakeModerator(marker="", marker_verdicts=(verdict,))
    _register(plugins, MODERATORS, "bad-label", factory(moderator))
    result = run_small(
        tmp_path / "run", small_config(moderation={"enabled": True, "kind": "bad-label"})
    )

    assert result.manifest.status == "degraded"
    events = _events(result)
    posts = [e for e in events if isinstance(e, PostCreated)]
    assert posts and len(moderator.seen) == len(posts)
    assert not [e for e in events if isinstance(e, ModerationDecided)]
    failed = _failures(events, "moderation")
    assert [f.action for f in failed] == [
        {"post_id": p.post_id, "moderator": "fake"} for p in posts
    ]
    assert {(f.reason, f.detail) for f in failed} == {
        (
            "moderator_error",
            f"moderator 'fake' answered a verdict the log cannot hold: verdicts[0].label: {NAMED}",
        )
    }


class _RaisingModerator:
    name = "raising"
    concurrent = False

    async def review(self, item: ModerationItem) -> Review:
        raise ValueError(BAD)


def test_a_moderator_s_error_message_is_recorded_with_u_fffd(
    tmp_path: Path, plugins: list[tuple[Registry[Any], str]]
) -> None:
    _register(plugins, MODERATORS, "bad-raise", factory(_RaisingModerator()))
    result = run_small(
        tmp_path / "run", small_config(moderation={"enabled": True, "kind": "bad-raise"})
    )

    assert result.manifest.status == "degraded"
    failed = _failures(_events(result), "moderation")
    assert failed
    assert {f.detail for f in failed} == {f"moderator 'raising' raised ValueError: {SHOWN}"}


def test_an_intervention_s_broadcast_is_a_failed_effect_and_the_run_goes_on(
    tmp_path: Path, plugins: list[tuple[Registry[Any], str]]
) -> None:
    """As for an injected item the platform refuses: ``ActionFailed(stage="intervention")``
    with the error's code, nothing broadcast, the run completes."""
    fake = FakeIntervention(broadcast=BAD)
    _register(plugins, INTERVENTIONS, "bad-broadcast", factory(fake))
    result = run_small(
        tmp_path / "run", small_config(interventions=[{"kind": "bad-broadcast", "window": 1}])
    )

    assert result.manifest.status == "completed"
    assert fake.windows == [1]
    events = _events(result)
    assert not [e for e in events if isinstance(e, BroadcastSent)]
    failed = _failures(events, "intervention")
    assert [(f.window, f.reason, f.action) for f in failed] == [
        (1, "invalid_text", {"sender": "platform"})
    ]
    assert failed[0].detail == f"broadcast_sent: text: {NAMED}; the log (UTF-8) cannot store it"
    assert [t.window for t in result.windows] == [1, 2]


class _Respondent(ScriptedPolicy):
    """Posts as :class:`ScriptedPolicy` does and answers surveys with ``reply``."""

    reply = SurveyReply()

    async def answer(
        self, *, survey: str, window: int, questions: Sequence[Question]
    ) -> SurveyReply:
        return self.reply


def _respondents(reply: SurveyReply) -> Any:
    def make(*, context: PolicyContext) -> _Respondent:
        policy = _Respondent(n_actions=context.n_actions)
        policy.reply = reply
        return policy

    return make


SURVEY = [{"name": "s", "windows": [1], "questions": ["stance"]}]


@pytest.mark.parametrize(
    ("reply", "reason", "detail"),
    [
        (
            SurveyReply(failure=Failure(stage="survey", reason="refused", detail=BAD)),
            "refused",
            SHOWN,
        ),
        (
            SurveyReply(answers={BAD: 1}),
            "missing_answer",
            "question 'stance' needs an integer answer",
        ),
    ],
    ids=["failure-detail", "answer-key"],
)
def test_a_survey_reply_s_text_is_a_failed_answer_and_the_run_goes_on(
    tmp_path: Path,
    plugins: list[tuple[Registry[Any], str]],
    reply: SurveyReply,
    reason: str,
    detail: str,
) -> None:
    """A survey answer holds integers by question id: a key that is not one is an invalid
    answer; a reported failure's text is recorded with U+FFFD. (Before, the failure's detail
    failed the commit.)"""
    _register(plugins, POLICIES, "respondent", _respondents(reply))
    result = run_small(
        tmp_path / "run", small_config(agents={"policy": "respondent"}, surveys=SURVEY)
    )

    assert result.manifest.status == "completed"
    events = _events(result)
    assert not [e for e in events if isinstance(e, SurveyAnswered)]
    failed = _failures(events, "survey")
    assert len(failed) == 4
    assert {(f.reason, f.detail) for f in failed} == {(reason, detail)}
