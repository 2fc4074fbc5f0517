"""Feed rankers: one protocol (:mod:`.base`), one module per ranker."""

from __future__ import annotations

from .base import FeedQuery, FeedRanker, StaticRanker
from .chrono import ChronologicalRanker
from .full import FullVisibilityRanker
from .interest import InterestRanker
from .popularity import PopularityRanker


def make_ranker(name: str) -> FeedRanker:
    """A ranker with default settings by name: full, chrono, popularity, interest."""
    match name:
        case "full":
            return FullVisibilityRanker()
        case "chrono":
            return ChronologicalRanker()
        case "popularity":
            return PopularityRanker()
        case "interest":
            return InterestRanker()
    raise ValueError(f"unknown feed ranker {name!r}; choose full, chrono, popularity or interest")


__all__ = [
    "ChronologicalRanker",
    "FeedQuery",
    "FeedRanker",
    "FullVisibilityRanker",
    "InterestRanker",
    "PopularityRanker",
    "StaticRanker",
    "make_ranker",
]
