"""Pluggable sentiment scoring: text -> s in [-1, 1].

The paper (EMO reward, affective tone of ties) names no sentiment model. friendsim uses VADER by
default (``vaderSentiment`` ships its lexicon, so it runs offline and deterministically; we take the
``compound`` score, already in [-1, 1]). :class:`LexiconSentiment` is a tiny built-in word-list
model, deterministic and dependency-free, for tests and for runs that must not depend on VADER's
lexicon version.

Scores are cached per text (LRU) inside each model instance, because the same message is scored by
the EMO reward and by the tie-strength evidence. Models are stateless apart from that cache, so one
instance may be shared.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any, Protocol, runtime_checkable

from friendsim.registry import Registry, RegistryError

DEFAULT_SENTIMENT = "vader"
CACHE_SIZE = 65536


@runtime_checkable
class SentimentModel(Protocol):
    """Scores the sentiment of a text. ``score`` returns a float in [-1, 1] (0 = neutral)."""

    name: str

    def score(self, text: str) -> float: ...


class UnknownSentimentModelError(ValueError):
    """``get_sentiment`` was given a name it does not know; the message lists the known names."""


def _clip(x: float) -> float:
    return -1.0 if x < -1.0 else 1.0 if x > 1.0 else float(x)


def _fast_vader_class() -> type:
    """A subclass of VADER's analyzer with the same results, minus its quadratic hot spots.

    Stock VADER re-lowercases the whole text for every lexicon word (up to 4 times) and rebuilds
    its negation list for every check, and copies the text character by character to replace
    emojis. This subclass caches the lowercased tokens per text, tests negation against a set,
    and skips the emoji pass when the text has no emoji. Equality of ``compound`` with the stock
    analyzer is tested on generated texts (tests/test_sentiment.py).
    """
    from vaderSentiment import vaderSentiment as v

    negate = frozenset(v.NEGATE)
    special = v.SPECIAL_CASES
    booster = v.BOOSTER_DICT
    n_scalar = v.N_SCALAR

    def is_neg(word: str) -> bool:  # == v.negated([word]) for an already lowercased word
        return word in negate or "n't" in word

    class FastVader(v.SentimentIntensityAnalyzer):
        def __init__(self) -> None:
            super().__init__()
            self._emoji_chars = frozenset(self.emojis)
            self._words: list[str] | None = None
            self._lower: list[str] = []

        def _lowered(self, words: list[str]) -> list[str]:
            if words is not self._words:
                self._words = words
                self._lower = [str(w).lower() for w in words]
            return self._lower

        def polarity_scores(self, text: str) -> dict[str, float]:
            if self._emoji_chars.isdisjoint(text):
                return self._scores(text.strip())
            return super().polarity_scores(text)

        def _scores(self, text: str) -> dict[str, float]:
            sentitext = v.SentiText(text)
            sentiments: list[float] = []
            words = sentitext.words_and_emoticons
            lower = self._lowered(words)
            last = len(words) - 1
            for i, item in enumerate(lower):
                if item in booster:
                    sentiments.append(0)
                    continue
                if i < last and item == "kind" and lower[i + 1] == "of":
                    sentiments.append(0)
                    continue
                sentiments = self.sentiment_valence(0, sentitext, words[i], i, sentiments)
            sentiments = self._but_check(words, sentiments)
            return self.score_valence(sentiments, text)

        def _negation_check(self, valence: float, words: list[str], start_i: int, i: int) -> float:
            w = self._lowered(words)
            if start_i == 0:
                if is_neg(w[i - 1]):
                    valence = valence * n_scalar
            if start_i == 1:
                if w[i - 2] == "never" and (w[i - 1] == "so" or w[i - 1] == "this"):
                    valence = valence * 1.25
                elif w[i - 2] == "without" and w[i - 1] == "doubt":
                    pass
                elif is_neg(w[i - 2]):
                    valence = valence * n_scalar
            if start_i == 2:
                if (w[i - 3] == "never" and (w[i - 2] == "so" or w[i - 2] == "this")) or (
                    w[i - 1] == "so" or w[i - 1] == "this"
                ):
                    valence = valence * 1.25
                elif w[i - 3] == "without" and (w[i - 2] == "doubt" or w[i - 1] == "doubt"):
                    pass
                elif is_neg(w[i - 3]):
                    valence = valence * n_scalar
            return valence

        def _special_idioms_check(self, valence: float, words: list[str], i: int) -> float:
            w = self._lowered(words)
            onezero = f"{w[i - 1]} {w[i]}"
            twoonezero = f"{w[i - 2]} {w[i - 1]} {w[i]}"
            twoone = f"{w[i - 2]} {w[i - 1]}"
            threetwoone = f"{w[i - 3]} {w[i - 2]} {w[i - 1]}"
            threetwo = f"{w[i - 3]} {w[i - 2]}"
            for seq in (onezero, twoonezero, twoone, threetwoone, threetwo):
                if seq in special:
                    valence = special[seq]
                    break
            if len(w) - 1 > i:
                zeroone = f"{w[i]} {w[i + 1]}"
                if zeroone in special:
                    valence = special[zeroone]
            if len(w) - 1 > i + 1:
                zeroonetwo = f"{w[i]} {w[i + 1]} {w[i + 2]}"
                if zeroonetwo in special:
                    valence = special[zeroonetwo]
            for n_gram in (threetwoone, threetwo, twoone):
                if n_gram in booster:
                    valence = valence + booster[n_gram]
            return valence

    return FastVader


class VaderSentiment:
    """VADER (Hutto & Gilbert 2014) compound score. Lexicon ships with the package; offline.

    ``fast=True`` (default) uses an equivalent analyzer without stock VADER's quadratic hot
    spots (about 2-4x faster on social-media-length texts; same scores).
    """

    name = "vader"

    def __init__(self, *, cache_size: int = CACHE_SIZE, fast: bool = True) -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as exc:  # pragma: no cover - dependency is declared in pyproject
            raise ImportError(
                "VaderSentiment needs the 'vaderSentiment' package: pip install vaderSentiment"
            ) from exc
        analyzer: Any = _fast_vader_class()() if fast else SentimentIntensityAnalyzer()

        def _score(text: str) -> float:
            if not text or not text.strip():
                return 0.0
            return _clip(analyzer.polarity_scores(text)["compound"])

        self._score: Callable[[str], float] = lru_cache(maxsize=cache_size)(_score)

    def score(self, text: str) -> float:
        return self._score(text)


_POSITIVE = frozenset(
    """good great love like agree thanks thank happy glad helpful nice excellent awesome wonderful
    support supportive appreciate kind brilliant hope hopeful welcome yes fair interesting insightful
    amazing best better well congrats congratulations enjoy fun friend friends care""".split()
)
_NEGATIVE = frozenset(
    """bad terrible hate dislike disagree wrong awful sad angry annoying useless stupid worst worse
    horrible no never fail failure poor ridiculous nonsense liar lie lies afraid fear ugly boring
    attack blame harm hurt disappointing disappointed""".split()
)
_NEGATORS = frozenset({"not", "no", "never", "don't", "dont", "isn't", "isnt", "can't", "cant"})
_WORD = re.compile(r"[a-z']+")


class LexiconSentiment:
    """Tiny deterministic word-list model: (pos - neg) / (pos + neg) over matched words.

    A negator ("not", "never", ...) directly before a sentiment word flips it. Texts with no
    sentiment words score 0. Meant for tests (scores are easy to compute by hand) and as a
    dependency-free fallback.
    """

    name = "lexicon"

    def __init__(
        self,
        *,
        positive: frozenset[str] = _POSITIVE,
        negative: frozenset[str] = _NEGATIVE,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._positive = positive
        self._negative = negative
        self._score: Callable[[str], float] = lru_cache(maxsize=cache_size)(self._compute)

    def _compute(self, text: str) -> float:
        pos = neg = 0
        prev = ""
        for word in _WORD.findall(text.lower()):
            polarity = 1 if word in self._positive else -1 if word in self._negative else 0
            if polarity and prev in _NEGATORS:
                polarity = -polarity
            if polarity > 0:
                pos += 1
            elif polarity < 0:
                neg += 1
            prev = word
        total = pos + neg
        return 0.0 if total == 0 else (pos - neg) / total

    def score(self, text: str) -> float:
        return self._score(text)


class NeutralSentiment:
    """Scores every text 0 (turns EMO into a constant 0.5). For ablations."""

    name = "neutral"

    def score(self, text: str) -> float:
        return 0.0


SENTIMENT: Registry[SentimentModel] = Registry(
    "sentiment model", group="friendsim.sentiment", protocol=SentimentModel
)
"""The sentiment-model extension point (entry-point group ``friendsim.sentiment``)."""
SENTIMENT.register("vader", VaderSentiment, summary="VADER compound score (ships its lexicon)")
SENTIMENT.register("lexicon", LexiconSentiment, summary="tiny built-in word list")
SENTIMENT.register("neutral", NeutralSentiment, summary="always 0 (ablation)")


@cache
def get_sentiment(name: str = DEFAULT_SENTIMENT) -> SentimentModel:
    """The shared instance of the sentiment model called ``name`` (see :data:`SENTIMENT`).

    Instances are shared so their per-text caches are shared between rewards and ties.
    """
    try:
        model = SENTIMENT.create(name)
    except RegistryError as exc:
        raise UnknownSentimentModelError(str(exc)) from None
    return model if type(model) in _BUILT_IN else CheckedSentiment(model)


class SentimentScoreError(ValueError):
    """A sentiment model's score is not a number in [-1, 1]; the message names the model."""


class CheckedSentiment:
    """A plug-in sentiment model whose every score is checked: a number in [-1, 1], else
    :class:`SentimentScoreError` naming the model and the text (a string score failed deep
    inside the coach; 5.0 was taken as it was). friendsim's own models are not wrapped."""

    def __init__(self, inner: SentimentModel) -> None:
        self.inner = inner
        self.name = inner.name

    def score(self, text: str) -> float:
        value = self.inner.score(text)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not -1.0 <= value <= 1.0
        ):
            raise SentimentScoreError(
                f"sentiment model {self.name!r} scored {text[:40]!r} as {value!r}: a score must "
                "be a number in [-1, 1]"
            )
        return float(value)


_BUILT_IN = (VaderSentiment, LexiconSentiment, NeutralSentiment)
