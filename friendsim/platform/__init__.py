"""The event-sourced social platform: log, projections, validation, feeds, bus, replay.

Public names are re-exported here; see :mod:`.service` (``Platform``), :mod:`.events` (the event
contract), :mod:`.store` (the ``events`` table), :mod:`.bus` and :mod:`.replay`.
"""

from __future__ import annotations

from .bus import EventBus, Subscription
from .clock import VirtualClock
from .errors import (
    DuplicateAgentError,
    DuplicateFollowError,
    InvalidEventError,
    InvalidTextError,
    InvalidTopicError,
    InvalidVoteError,
    NotFollowingError,
    PlatformClosedError,
    PlatformError,
    SchemaVersionError,
    SelfFollowError,
    SelfMessageError,
    SelfVoteError,
    UnknownAgentError,
    UnknownMentionError,
    UnknownMessageError,
    UnknownPostError,
)
from .feeds import (
    ChronologicalRanker,
    FeedQuery,
    FeedRanker,
    FullVisibilityRanker,
    InterestRanker,
    PopularityRanker,
    StaticRanker,
    make_ranker,
)
from .service import Platform
from .views import PostView

__all__ = [
    "ChronologicalRanker",
    "DuplicateAgentError",
    "DuplicateFollowError",
    "EventBus",
    "FeedQuery",
    "FeedRanker",
    "FullVisibilityRanker",
    "InterestRanker",
    "InvalidEventError",
    "InvalidTextError",
    "InvalidTopicError",
    "InvalidVoteError",
    "NotFollowingError",
    "Platform",
    "PlatformClosedError",
    "PlatformError",
    "PopularityRanker",
    "PostView",
    "SchemaVersionError",
    "SelfFollowError",
    "SelfMessageError",
    "SelfVoteError",
    "StaticRanker",
    "Subscription",
    "UnknownAgentError",
    "UnknownMentionError",
    "UnknownMessageError",
    "UnknownPostError",
    "VirtualClock",
    "make_ranker",
]
