from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from friendsim.analysis.sentiment import (
    LexiconSentiment,
    NeutralSentiment,
    SentimentModel,
    UnknownSentimentModelError,
    VaderSentiment,
    get_sentiment,
)


def test_lexicon_scores_by_hand() -> None:
    m = LexiconSentiment()
    assert m.score("I love this, great idea") == 1.0
    assert m.score("this is terrible and wrong") == -1.0
    assert m.score("good but bad and awful") == pytest.approx((1 - 2) / 3)
    assert m.score("the weather report") == 0.0
    assert m.score("this is not good") == -1.0  # negator flips


def test_vader_orders_texts_by_polarity() -> None:
    m = VaderSentiment()
    pos = m.score("Thank you, this is a wonderful and helpful post!")
    neg = m.score("This is a horrible, stupid and dishonest argument.")
    assert pos > 0.5
    assert neg < -0.5
    assert m.score("") == 0.0
    assert m.score("The meeting is at noon.") == 0.0


def test_cache_returns_same_value_and_hits() -> None:
    m = VaderSentiment()
    a = m.score("I really like your point about solar")
    b = m.score("I really like your point about solar")
    assert a == b
    info = m._score.cache_info()  # type: ignore[attr-defined]
    assert info.hits >= 1


def test_get_sentiment_registry() -> None:
    assert get_sentiment("vader") is get_sentiment("vader")
    assert get_sentiment("lexicon").name == "lexicon"
    assert isinstance(get_sentiment(), SentimentModel)
    assert get_sentiment().name == "vader"
    assert NeutralSentiment().score("I love it") == 0.0
    with pytest.raises(UnknownSentimentModelError, match="bert"):
        get_sentiment("bert")


@given(st.text(max_size=200))
def test_scores_in_range(text: str) -> None:
    for m in (get_sentiment("vader"), get_sentiment("lexicon")):
        s = m.score(text)
        assert -1.0 <= s <= 1.0


def _vader_words() -> list[str]:
    from vaderSentiment import vaderSentiment as v

    lexicon = sorted(v.SentimentIntensityAnalyzer().lexicon)
    return (
        lexicon[::4]
        + list(v.NEGATE)
        + list(v.BOOSTER_DICT)
        + [w for k in v.SPECIAL_CASES for w in k.split()]
        + ["but", "kind", "of", "never", "so", "this", "without", "doubt", "least", "at", "very"]
        + ["no", "or", "nor", "GREAT", "BAD", "Not", ":)", ":-(", "😀", "💔", "don't", "isn't", "!"]
    )


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from(_vader_words()), min_size=0, max_size=30),
    st.sampled_from(["", "!", "!!!", "??", "?", ".", " 😀"]),
    st.booleans(),
)
def test_fast_vader_equals_stock_vader(words: list[str], end: str, shout: bool) -> None:
    text = " ".join(w.upper() if shout and i % 3 == 0 else w for i, w in enumerate(words)) + end
    fast, stock = _pair()
    assert fast.score(text) == stock.score(text)


@functools.cache
def _pair() -> tuple[VaderSentiment, VaderSentiment]:
    return VaderSentiment(cache_size=0), VaderSentiment(cache_size=0, fast=False)
