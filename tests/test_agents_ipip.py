"""Mini-IPIP: item keying, hand-computed scoring, administration through a scripted model."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from friendsim.agents import Persona, generate_personas
from friendsim.agents.generator import dominant_lambdas
from friendsim.agents.ipip import (
    MINI_IPIP,
    administer,
    agreement,
    population_agreement,
    score_mini_ipip,
    to_unit,
)
from friendsim.llm import ScriptedLLM
from friendsim.llm.base import LLMRequest


def test_item_set_matches_published_keying() -> None:
    assert [i.number for i in MINI_IPIP] == list(range(1, 21))
    assert Counter(i.trait for i in MINI_IPIP) == dict.fromkeys("OCEAN", 4)
    reverse = {i.number for i in MINI_IPIP if i.reverse}
    assert reverse == {6, 7, 8, 9, 10, 15, 16, 17, 18, 19, 20}
    assert MINI_IPIP[0].text == "Am the life of the party." and MINI_IPIP[0].trait == "E"
    assert MINI_IPIP[19].text == "Do not have a good imagination." and MINI_IPIP[19].trait == "O"


def test_scoring_hand_computed() -> None:
    answers = [5, 4, 3, 2, 1, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 1, 2, 3, 4, 5]
    # E: 5, 6-1, 5, 6-1 -> 5 | A: 4, 6-2, 4, 6-2 -> 4 | C: 3, 3, 3, 3 -> 3
    # N: 2, 6-4, 2, 6-4 -> 2 | O: 1, 6-5, 6-1, 6-5 -> (1+1+5+1)/4 = 2
    assert score_mini_ipip(answers) == {"O": 2.0, "C": 3.0, "E": 5.0, "A": 4.0, "N": 2.0}
    # all 5s: E = (5+1+5+1)/4 = 3; O = (5+1+1+1)/4 = 2; the others 3
    assert score_mini_ipip([5] * 20) == {"O": 2.0, "C": 3.0, "E": 3.0, "A": 3.0, "N": 3.0}
    assert to_unit({"O": 2.0, "C": 3.0, "E": 5.0, "A": 4.0, "N": 1.0}) == {
        "O": 0.25,
        "C": 0.5,
        "E": 1.0,
        "A": 0.75,
        "N": 0.0,
    }
    with pytest.raises(ValueError, match="item 3"):
        score_mini_ipip([1, 1, 6] + [1] * 17)
    with pytest.raises(ValueError, match="20 answers"):
        score_mini_ipip([1] * 19)


def test_agreement_figures() -> None:
    target = {"O": 0.25, "C": 0.5, "E": 1.0, "A": 0.75, "N": 0.0}
    same = agreement(dict(target), target)
    assert same.mae == 0.0 and same.correlation == pytest.approx(1.0)
    shifted = agreement({k: v * 0.5 for k, v in target.items()}, target)
    assert shifted.abs_error["E"] == 0.5 and shifted.correlation == pytest.approx(1.0)
    assert shifted.mae == pytest.approx((0.125 + 0.25 + 0.5 + 0.375 + 0.0) / 5)
    flat = agreement(dict.fromkeys("OCEAN", 0.5), target)
    assert math.isnan(flat.correlation)


def _answers_for(p: Persona) -> list[int]:
    """A perfectly consistent respondent: answer = 1 + 4 * trait, reversed where keyed."""
    out = []
    for item in MINI_IPIP:
        level = 1 + round(4 * p.big5[item.trait])
        out.append(6 - level if item.reverse else level)
    return out


async def test_administer_scores_consistent_respondent() -> None:
    p = Persona(id="x", name="X", big5={"O": 0.75, "C": 0.25, "E": 1.0, "A": 0.5, "N": 0.0},
                lambdas=dominant_lambdas("EMO"))  # fmt: skip
    llm = ScriptedLLM(["I am not sure", {"answers": [3] * 19}, {"answers": _answers_for(p)}])
    res = await administer(p, llm, theme="climate change")
    assert res.failure is None
    assert res.scores == {"O": 4.0, "C": 2.0, "E": 5.0, "A": 3.0, "N": 1.0}
    assert res.agreement is not None and res.agreement.mae == 0.0
    assert len(llm.calls) == 3 and llm.calls[0].json_schema is not None
    assert "Have frequent mood swings." in llm.calls[0].messages[0].content
    assert "X" in llm.calls[0].system


async def test_true_false_answers_are_reasked_not_scored_as_ones() -> None:
    """JSON true/false is not an answer on the 1-5 scale: read as 1 and 0 it scored an agent
    that answered ``true`` to every item as "very inaccurate" on all of them."""
    p = generate_personas(1, seed=1)[0]
    llm = ScriptedLLM([{"answers": [True] * 20}, {"answers": _answers_for(p)}])
    res = await administer(p, llm, theme="t")
    assert len(llm.calls) == 2 and "true/false" in llm.calls[1].messages[-1].content
    assert res.failure is None and res.answers == tuple(_answers_for(p))


async def test_administer_fails_after_retries_and_population_agreement() -> None:
    p = generate_personas(1, seed=1)[0]
    bad = ScriptedLLM(lambda req: {"answers": [9] * 20})
    res = await administer(p, bad, theme="t")
    assert res.scores is None and res.failure is not None
    assert res.failure.attempts == 4 and res.failure.reason == "out_of_range"

    personas = generate_personas(12, seed=3)
    by_name = {p.name: p for p in personas}

    def answer(req: LLMRequest) -> dict[str, list[int]]:
        who = next(p for name, p in by_name.items() if f"You are {name} " in req.system)
        return {"answers": _answers_for(who)}

    results = [await administer(p, ScriptedLLM(answer), theme="t") for p in personas]
    corr = population_agreement(personas, [*results, res])
    assert all(r > 0.8 for r in corr.values()), corr  # only 1-5 quantisation separates them
