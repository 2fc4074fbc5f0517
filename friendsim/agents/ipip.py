"""Mini-IPIP personality pre-survey (Donnellan, Oswald, Baird & Lucas 2006).

The 20 public-domain items, 4 per trait, answered on a 1-5 scale (1 very inaccurate .. 5 very
accurate). Scoring: reverse-keyed items are ``6 - answer``; a trait score is the mean of its 4
keyed answers (1..5), reported also rescaled to [0, 1] as ``(mean - 1) / 4`` to compare with the
persona's target Big Five. The Mini-IPIP's "Intellect/Imagination" scale stands for O.

:func:`administer` asks an agent (its persona system prompt plus the items) through its LLM with
structured output, re-asking invalid answers; :func:`agreement` compares the scored traits with
the persona targets (per-trait absolute error, mean absolute error, Pearson correlation over the
five traits); :func:`population_agreement` correlates each trait across many agents;
:func:`survey` does both for a whole population.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from friendsim.agents.asking import ask_validated, derive_seed
from friendsim.agents.persona import TRAITS, Persona
from friendsim.agents.prompting import render, system_prompt
from friendsim.agents.schema import OutputError, decode_json
from friendsim.llm.base import LLM, Completion
from friendsim.vocabulary import Failure


@dataclass(frozen=True, kw_only=True, slots=True)
class IPIPItem:
    """One Mini-IPIP item: its number (1-20), text, trait and keying."""

    number: int
    text: str
    trait: str
    reverse: bool


MINI_IPIP: tuple[IPIPItem, ...] = (
    IPIPItem(number=1, text="Am the life of the party.", trait="E", reverse=False),
    IPIPItem(number=2, text="Sympathize with others' feelings.", trait="A", reverse=False),
    IPIPItem(number=3, text="Get chores done right away.", trait="C", reverse=False),
    IPIPItem(number=4, text="Have frequent mood swings.", trait="N", reverse=False),
    IPIPItem(number=5, text="Have a vivid imagination.", trait="O", reverse=False),
    IPIPItem(number=6, text="Don't talk a lot.", trait="E", reverse=True),
    IPIPItem(
        number=7, text="Am not interested in other people's problems.", trait="A", reverse=True
    ),
    IPIPItem(
        number=8,
        text="Often forget to put things back in their proper place.",
        trait="C",
        reverse=True,
    ),
    IPIPItem(number=9, text="Am relaxed most of the time.", trait="N", reverse=True),
    IPIPItem(number=10, text="Am not interested in abstract ideas.", trait="O", reverse=True),
    IPIPItem(
        number=11, text="Talk to a lot of different people at parties.", trait="E", reverse=False
    ),
    IPIPItem(number=12, text="Feel others' emotions.", trait="A", reverse=False),
    IPIPItem(number=13, text="Like order.", trait="C", reverse=False),
    IPIPItem(number=14, text="Get upset easily.", trait="N", reverse=False),
    IPIPItem(
        number=15, text="Have difficulty understanding abstract ideas.", trait="O", reverse=True
    ),
    IPIPItem(number=16, text="Keep in the background.", trait="E", reverse=True),
    IPIPItem(number=17, text="Am not really interested in others.", trait="A", reverse=True),
    IPIPItem(number=18, text="Make a mess of things.", trait="C", reverse=True),
    IPIPItem(number=19, text="Seldom feel blue.", trait="N", reverse=True),
    IPIPItem(number=20, text="Do not have a good imagination.", trait="O", reverse=True),
)


class _Answers(BaseModel):
    model_config = ConfigDict(extra="ignore")

    answers: list[int] = Field(min_length=20, max_length=20)


IPIP_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answers": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1, "maximum": 5},
            "minItems": 20,
            "maxItems": 20,
        }
    },
    "required": ["answers"],
    "additionalProperties": False,
}


def score_mini_ipip(answers: Sequence[int]) -> dict[str, float]:
    """Trait scores on the 1-5 scale (mean of keyed items). Raises ValueError on bad answers."""
    if len(answers) != len(MINI_IPIP):
        raise ValueError(f"need {len(MINI_IPIP)} answers, got {len(answers)}")
    sums = dict.fromkeys(TRAITS, 0.0)
    counts = dict.fromkeys(TRAITS, 0)
    for item, a in zip(MINI_IPIP, answers, strict=True):
        if isinstance(a, bool) or not isinstance(a, int) or not 1 <= a <= 5:
            raise ValueError(f"answer to item {item.number} is {a!r}; must be an integer 1-5")
        sums[item.trait] += (6 - a) if item.reverse else a
        counts[item.trait] += 1
    return {t: sums[t] / counts[t] for t in TRAITS}


def to_unit(scores: Mapping[str, float]) -> dict[str, float]:
    """1-5 trait scores rescaled to [0, 1]."""
    return {t: (scores[t] - 1.0) / 4.0 for t in TRAITS}


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson correlation; NaN when either side has zero variance or fewer than 2 points."""
    n = len(xs)
    if n != len(ys) or n < 2:
        return math.nan
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return math.nan
    return sxy / math.sqrt(sxx * syy)


@dataclass(frozen=True, kw_only=True, slots=True)
class Agreement:
    """Agreement of measured [0, 1] traits with targets."""

    abs_error: Mapping[str, float]
    mae: float
    correlation: float


def agreement(measured01: Mapping[str, float], target: Mapping[str, float]) -> Agreement:
    """Per-trait absolute error, their mean, and the Pearson r over the five traits."""
    err = {t: abs(measured01[t] - target[t]) for t in TRAITS}
    return Agreement(
        abs_error=err,
        mae=sum(err.values()) / len(err),
        correlation=pearson([measured01[t] for t in TRAITS], [target[t] for t in TRAITS]),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class IPIPResult:
    """One agent's survey: raw answers, scores (1-5 and [0, 1]) and agreement, or a failure."""

    agent_id: str
    answers: tuple[int, ...] = ()
    scores: Mapping[str, float] | None = None
    scores01: Mapping[str, float] | None = None
    agreement: Agreement | None = None
    failure: Failure | None = None


def _parse(comp: Completion) -> tuple[int, ...]:
    value = decode_json(comp.parsed, comp.text)
    try:
        ans = _Answers.model_validate(value)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise OutputError(
            "bad_schema", f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
        ) from None
    raw = value.get("answers") if isinstance(value, dict) else None
    if isinstance(raw, list) and any(isinstance(a, bool) for a in raw):
        raise OutputError("bad_schema", "answers must be integers from 1 to 5, not true/false")
    bad = [i + 1 for i, a in enumerate(ans.answers) if not 1 <= a <= 5]
    if bad:
        raise OutputError("out_of_range", f"answers to items {bad} are not integers from 1 to 5")
    return tuple(ans.answers)


async def administer(
    persona: Persona, llm: LLM, *, theme: str, seed: int = 0, max_retries: int = 3
) -> IPIPResult:
    """Give the Mini-IPIP to the agent through ``llm`` and score it against its persona."""
    items = "\n".join(f"{it.number}. {it.text}" for it in MINI_IPIP)
    asked = await ask_validated(
        llm,
        stage="ipip",
        system=system_prompt(persona, theme),
        prompt=render("ipip", name=persona.name, items=items),
        parse=_parse,
        json_schema=IPIP_JSON_SCHEMA,
        label="ipip",
        max_retries=max_retries,
        temperature=0.0,
        max_tokens=200,
        seed=derive_seed(seed, persona.id, "ipip"),
    )
    if asked.value is None:
        return IPIPResult(agent_id=persona.id, failure=asked.failure)
    scores = score_mini_ipip(asked.value)
    unit = to_unit(scores)
    return IPIPResult(
        agent_id=persona.id,
        answers=asked.value,
        scores=scores,
        scores01=unit,
        agreement=agreement(unit, persona.big5),
    )


def population_agreement(
    personas: Sequence[Persona], results: Sequence[IPIPResult]
) -> dict[str, float]:
    """Per-trait Pearson r between target and measured scores across agents (failures skipped)."""
    by_id = {p.id: p for p in personas}
    ok = [r for r in results if r.scores01 is not None and r.agent_id in by_id]
    out: dict[str, float] = {}
    for t in TRAITS:
        xs = [by_id[r.agent_id].big5[t] for r in ok]
        ys = [r.scores01[t] for r in ok if r.scores01 is not None]
        out[t] = pearson(xs, ys)
    return out


async def survey(
    personas: Sequence[Persona], llm: LLM, *, theme: str, seed: int = 0
) -> tuple[list[IPIPResult], dict[str, Any]]:
    """Administer the Mini-IPIP to every persona (concurrently) and summarise agreement."""
    results = list(
        await asyncio.gather(*(administer(p, llm, theme=theme, seed=seed) for p in personas))
    )
    ok = [r for r in results if r.agreement is not None]
    corr = population_agreement(personas, results)
    summary = {
        "n": len(results),
        "failed": len(results) - len(ok),
        "mean_abs_error": {
            t: round(statistics.fmean(r.agreement.abs_error[t] for r in ok if r.agreement), 4)
            for t in TRAITS
        }
        if ok
        else {},
        "mae": round(statistics.fmean(r.agreement.mae for r in ok if r.agreement), 4)
        if ok
        else None,
        "trait_correlation_across_agents": {
            t: (None if math.isnan(v) else round(v, 4)) for t, v in corr.items()
        },
    }
    return results, summary
