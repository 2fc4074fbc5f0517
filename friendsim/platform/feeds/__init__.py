"""Feed rankers: one protocol (:mod:`.base`), one module per ranker, and their registry.

:data:`RANKERS` maps a name to a factory and a params model; other packages add rankers through
the ``friendsim.rankers`` entry-point group (see :mod:`friendsim.registry`), so ``[feed] ranker``
can name them without friendsim being edited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from friendsim.registry import Registry

from .base import FeedQuery, FeedRanker, FeedView, StaticRanker
from .chrono import ChronologicalRanker
from .full import FullVisibilityRanker
from .interest import InterestRanker
from .popularity import PopularityRanker


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChronoParams(_Params):
    horizon: float = Field(default=86_400.0, gt=0)


class PopularityParams(_Params):
    half_life: float = Field(default=3_600.0, gt=0)
    horizon: float = Field(default=86_400.0, gt=0)
    candidates: int = Field(default=500, ge=1)
    reply_weight: float = 2.0
    dislike_weight: float = 1.0


class InterestParams(_Params):
    half_life: float = Field(default=21_600.0, gt=0)
    horizon: float = Field(default=86_400.0, gt=0)
    candidates: int = Field(default=200, ge=1)
    profile_size: int = Field(default=100, ge=1)
    topic_weight: float = 1.0
    homophily_weight: float = 0.5
    base: float = 0.05


RANKERS: Registry[FeedRanker] = Registry(
    "feed ranker", group="friendsim.rankers", protocol=FeedRanker
)
"""The feed-ranker extension point (entry-point group ``friendsim.rankers``)."""
RANKERS.register("full", FullVisibilityRanker, summary="every public item of the window (paper)")
RANKERS.register(
    "chrono", ChronologicalRanker, params=ChronoParams, summary="followees, newest first"
)
RANKERS.register(
    "popularity", PopularityRanker, params=PopularityParams, summary="engagement with decay"
)
RANKERS.register("interest", InterestRanker, params=InterestParams, summary="topics and homophily")


def make_ranker(name: str, params: Mapping[str, Any] | None = None) -> FeedRanker:
    """The ranker ``name`` built with ``params`` (validated by its params model)."""
    return RANKERS.create(name, params)


__all__ = [
    "RANKERS",
    "ChronologicalRanker",
    "FeedQuery",
    "FeedRanker",
    "FeedView",
    "FullVisibilityRanker",
    "InterestRanker",
    "PopularityRanker",
    "StaticRanker",
    "make_ranker",
]
