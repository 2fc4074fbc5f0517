"""A sentiment-model plug-in's scores are checked: a number in [-1, 1], else an error naming the
model, not a comparison error deep inside the coach, nor a score of 5 taken as it is."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from friendsim.analysis.sentiment import (
    SENTIMENT,
    LexiconSentiment,
    SentimentScoreError,
    get_sentiment,
)
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import parse_config


@pytest.mark.parametrize("answer", [5.0, "positive", float("nan"), True])
def test_a_plugin_score_outside_the_contract_is_named(tmp_path: Path, answer: object) -> None:
    name = f"odd-{type(answer).__name__}-{answer!s}".lower()

    class Odd:
        def __init__(self) -> None:
            self.name = name

        def score(self, text: str) -> object:
            return answer

    SENTIMENT.register(name, Odd)
    try:
        cfg = parse_config(
            {
                "experiment": {"name": "s", "seed": 1, "rounds": 2, "n_actions": 3},
                "agents": {"count": 4, "policy": "baseline"},
                "rewards": {"sentiment": name},
            }
        )
        with pytest.raises(Exception) as raised:
            asyncio.run(run_experiment(cfg, out_dir=tmp_path / "r"))
    finally:
        SENTIMENT.unregister(name)
    chain = []
    exc: BaseException | None = raised.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(e, SentimentScoreError) for e in chain), chain
    assert f"sentiment model {name!r} scored" in str(raised.value)
    assert "a score must be a number in [-1, 1]" in str(raised.value)


def test_friendsims_own_models_are_not_wrapped() -> None:
    assert type(get_sentiment("lexicon")) is LexiconSentiment
