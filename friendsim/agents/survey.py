"""Surveys of agents mid-run: the questions, their validation and how agents answer them.

A survey is a tuple of :class:`Question` s, each with an id, a text, an integer scale and
optional context for the agent's own memory (``seen``: whether the item was served to this
agent; ``label``: a fact-check label it was shown). Question ids: ``stance`` (agreement with
the theme, Likert 1-7), ``trust:<source>`` (trust in a source of injected items, 1-7),
``belief:<item>`` (how true the agent believes an injected item is, 1-7) and ``ipip:<n>`` (the
20 Mini-IPIP items, 1-5).

:func:`parse_answers` is the one validation: every question answered with an integer on its
scale, nothing else. :func:`ask_survey` asks a model with the agent's persona prompt, re-asking
invalid answers (:func:`~friendsim.agents.asking.ask_validated`), then returns a failure.
:func:`baseline_answers` is the null model's answer: seeded, from the persona (stance score,
Big Five) plus exposure: an item served to the agent is believed one point more, a labelled one
two points less, and trust in every source falls by one per labelled item the agent saw.

A policy answers surveys when it has the :class:`Respondent` method ``answer``; the built-in
baseline and LLM policies do.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from friendsim.agents.asking import Asked, ask_validated, derive_seed
from friendsim.agents.ipip import MINI_IPIP
from friendsim.agents.persona import Persona
from friendsim.agents.schema import OutputError, decode_json
from friendsim.llm.base import LLM, Completion
from friendsim.vocabulary import Failure


@dataclass(frozen=True, kw_only=True, slots=True)
class Question:
    """One survey question; ``lo``..``hi`` its integer scale."""

    id: str
    text: str
    lo: int = 1
    hi: int = 7
    seen: bool = False
    label: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SurveyReply:
    """Valid answers (question id -> integer), or the failure after the re-asks."""

    answers: Mapping[str, int] | None = None
    failure: Failure | None = None


@runtime_checkable
class Respondent(Protocol):
    """A policy that can answer a survey."""

    async def answer(
        self, *, survey: str, window: int, questions: Sequence[Question]
    ) -> SurveyReply: ...


def stance_question(theme: str) -> Question:
    return Question(
        id="stance",
        text=f"How strongly do you agree that {theme} calls for urgent action? "
        "(1 = strongly disagree, 7 = strongly agree)",
    )


def trust_question(source: str) -> Question:
    return Question(
        id=f"trust:{source}",
        text=f"How much do you trust {source} as a source of information? "
        "(1 = not at all, 7 = completely)",
    )


def belief_question(item_id: str, text: str, *, seen: bool, label: str | None) -> Question:
    shown = f' (you saw it with the note "{label}")' if label else ""
    return Question(
        id=f"belief:{item_id}",
        text=f'How true is this claim: "{text[:300]}"{shown}? (1 = certainly false, 7 = '
        "certainly true)",
        seen=seen,
        label=label,
    )


def ipip_questions() -> tuple[Question, ...]:
    return tuple(
        Question(
            id=f"ipip:{it.number}", text=f"{it.text} (1 = very inaccurate, 5 = very accurate)", hi=5
        )
        for it in MINI_IPIP
    )


def parse_answers(value: Any, questions: Sequence[Question]) -> dict[str, int]:
    """``{"answers": {question id: int}}`` checked against ``questions``; ``OutputError``
    naming the first problem otherwise."""
    if not isinstance(value, Mapping) or not isinstance(value.get("answers"), Mapping):
        raise OutputError("bad_schema", 'reply with {"answers": {"<question id>": <integer>}}')
    answers = value["answers"]
    out: dict[str, int] = {}
    for q in questions:
        a = answers.get(q.id)
        if isinstance(a, float) and a.is_integer():
            a = int(a)
        if type(a) is not int:
            raise OutputError("missing_answer", f"question {q.id!r} needs an integer answer")
        if not q.lo <= a <= q.hi:
            raise OutputError(
                "out_of_range", f"answer {a} to {q.id!r} is not from {q.lo} to {q.hi}"
            )
        out[q.id] = a
    extra = sorted(set(answers) - set(out))
    if extra:
        raise OutputError("unknown_question", f"no such questions: {extra[:5]}")
    return out


def survey_schema(questions: Sequence[Question]) -> dict[str, Any]:
    """JSON schema of the answer (structured output where the provider has it)."""
    return {
        "type": "object",
        "properties": {
            "answers": {
                "type": "object",
                "properties": {
                    q.id: {"type": "integer", "minimum": q.lo, "maximum": q.hi} for q in questions
                },
                "required": [q.id for q in questions],
                "additionalProperties": False,
            }
        },
        "required": ["answers"],
        "additionalProperties": False,
    }


def survey_prompt(questions: Sequence[Question]) -> str:
    lines = "\n".join(f'- "{q.id}": {q.text}' for q in questions)
    return (
        "A researcher asks you a few questions. Answer each in character with one integer on "
        "its scale. Reply with one JSON object only: "
        '{"answers": {"<question id>": <integer>, ...}}\n' + lines
    )


async def ask_survey(
    llm: LLM,
    *,
    system: str,
    agent: str,
    survey: str,
    window: int,
    questions: Sequence[Question],
    seed: int,
    max_retries: int = 3,
) -> Asked[dict[str, int]]:
    """Ask ``questions`` through ``llm`` as the agent whose persona prompt is ``system``."""

    def parse(comp: Completion) -> dict[str, int]:
        return parse_answers(decode_json(comp.parsed, comp.text), questions)

    return await ask_validated(
        llm,
        stage="survey",
        system=system,
        prompt=survey_prompt(questions),
        parse=parse,
        json_schema=survey_schema(questions),
        label="survey",
        max_retries=max_retries,
        temperature=0.0,
        max_tokens=40 + 12 * len(questions),
        seed=derive_seed(seed, agent, "survey", survey, window),
        action={"survey": survey, "window": window},
        agent=agent,
    )


def _clip(x: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, round(x)))


def baseline_answers(
    persona: Persona, questions: Sequence[Question], *, seed: int, survey: str, window: int
) -> dict[str, int]:
    """The null model's answers (see the module docstring); always valid."""
    rng = random.Random(f"{seed}:survey:{persona.id}:{survey}:{window}")
    labelled_seen: dict[str, int] = {}
    for q in questions:
        if q.id.startswith("belief:") and q.seen and q.label:
            labelled_seen["*"] = labelled_seen.get("*", 0) + 1
    out: dict[str, int] = {}
    by_number = {it.number: it for it in MINI_IPIP}
    for q in questions:
        noise = rng.gauss(0.0, 0.5)
        if q.id == "stance":
            out[q.id] = _clip(4 + 3 * persona.stance_score + noise, q.lo, q.hi)
        elif q.id.startswith("belief:"):
            x = 3.5 + (1.0 if q.seen else 0.0) - (2.0 if q.label else 0.0)
            out[q.id] = _clip(x + noise, q.lo, q.hi)
        elif q.id.startswith("trust:"):
            x = 4.0 + 0.5 * (persona.big5["A"] - 0.5) - labelled_seen.get("*", 0)
            out[q.id] = _clip(x + noise, q.lo, q.hi)
        elif q.id.startswith("ipip:") and int(q.id[5:]) in by_number:
            it = by_number[int(q.id[5:])]
            level = 1 + 4 * persona.big5[it.trait]
            out[q.id] = _clip((6 - level if it.reverse else level) + noise, q.lo, q.hi)
        else:
            out[q.id] = _clip((q.lo + q.hi) / 2 + noise, q.lo, q.hi)
    return out
