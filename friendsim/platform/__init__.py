"""The event-sourced social platform: log, projections, validation, feeds, bus, replay.

Public names are re-exported here; see :mod:`.service` (``Platform``), :mod:`.events` (the event
contract), :mod:`.store` (the ``events`` table), :mod:`.bus` and :mod:`.replay`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from friendsim._lazy import lazy_exports

if TYPE_CHECKING:
    from .bus import EventBus, Subscription
    from .clock import VirtualClock
    from .errors import (
        DuplicateAgentError,
        DuplicateFollowError,
        DuplicateVoteError,
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

__getattr__ = lazy_exports(
    __name__,
    {
        "EventBus": "friendsim.platform.bus",
        "Subscription": "friendsim.platform.bus",
        "VirtualClock": "friendsim.platform.clock",
        "DuplicateAgentError": "friendsim.platform.errors",
        "DuplicateFollowError": "friendsim.platform.errors",
        "DuplicateVoteError": "friendsim.platform.errors",
        "InvalidEventError": "friendsim.platform.errors",
        "InvalidTextError": "friendsim.platform.errors",
        "InvalidTopicError": "friendsim.platform.errors",
        "InvalidVoteError": "friendsim.platform.errors",
        "NotFollowingError": "friendsim.platform.errors",
        "PlatformClosedError": "friendsim.platform.errors",
        "PlatformError": "friendsim.platform.errors",
        "SchemaVersionError": "friendsim.platform.errors",
        "SelfFollowError": "friendsim.platform.errors",
        "SelfMessageError": "friendsim.platform.errors",
        "SelfVoteError": "friendsim.platform.errors",
        "UnknownAgentError": "friendsim.platform.errors",
        "UnknownMentionError": "friendsim.platform.errors",
        "UnknownMessageError": "friendsim.platform.errors",
        "UnknownPostError": "friendsim.platform.errors",
        "ChronologicalRanker": "friendsim.platform.feeds",
        "FeedQuery": "friendsim.platform.feeds",
        "FeedRanker": "friendsim.platform.feeds",
        "FullVisibilityRanker": "friendsim.platform.feeds",
        "InterestRanker": "friendsim.platform.feeds",
        "PopularityRanker": "friendsim.platform.feeds",
        "StaticRanker": "friendsim.platform.feeds",
        "make_ranker": "friendsim.platform.feeds",
        "Platform": "friendsim.platform.service",
        "PostView": "friendsim.platform.views",
    },
)

__all__ = [
    "ChronologicalRanker",
    "DuplicateAgentError",
    "DuplicateFollowError",
    "DuplicateVoteError",
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
