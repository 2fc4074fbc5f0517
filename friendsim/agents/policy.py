"""The decision protocol between the runtime and an agent's mind.

The runtime builds an :class:`Observation` from a committed snapshot of the platform, asks the
agent's :class:`Policy` for a :class:`Decision`, and applies the decided actions as platform
commands in a deterministic order. A policy never touches the platform: it only reads its
observation and returns values, so the same policy serves live runs, replays and tests.

Action types: the paper's POST, COM (comment), DM and NOT (do nothing), plus the timeline verbs
LIKE, DISLIKE, FOLLOW, UNFOLLOW and REPOST used in continuous mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ActionType = Literal["POST", "COM", "DM", "NOT", "LIKE", "DISLIKE", "FOLLOW", "UNFOLLOW", "REPOST"]
ToneName = Literal["supportive", "neutral", "critical"]
PAPER_ACTIONS: tuple[ActionType, ...] = ("POST", "COM", "DM", "NOT")
TIMELINE_ACTIONS: tuple[ActionType, ...] = (
    "POST",
    "COM",
    "DM",
    "NOT",
    "LIKE",
    "DISLIKE",
    "FOLLOW",
    "UNFOLLOW",
    "REPOST",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedItem:
    """A public item as an agent sees it (a post or a comment)."""

    post_id: int
    author: str
    text: str
    topic: str
    parent_id: int | None = None
    mentions: tuple[str, ...] = ()
    likes: int = 0
    dislikes: int = 0
    replies: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class InboxMessage:
    """A direct message addressed to the observing agent."""

    dm_id: int
    sender: str
    text: str
    topic: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class ReceivedVote:
    """A vote another agent cast on one of the observing agent's items (for relationship memory)."""

    voter: str
    post_id: int
    value: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Tip:
    """One coach tip (see ``GuidanceIssued``)."""

    action: str
    target: str | None
    topic: str
    invite_mention: bool
    tone: ToneName
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RewardFeedback:
    """Reward scores of one window for one agent, as computed from the log."""

    window: int
    components: Mapping[str, float]
    total: float
    summary: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Observation:
    """Everything an agent may use to decide, for one wake-up (a round or a timeline visit).

    ``feed`` is the ranked timeline (rounds mode: all public content of the previous round),
    ``inbox`` the DMs addressed to the agent since its last wake-up, ``guidance`` the latest coach
    tips addressed to it (empty when coaching is off), ``last_rewards``/``best_rewards`` its
    reward feedback. ``received_votes`` (optional) lists votes others cast on the agent's items
    since its last wake-up, feeding relationship memory (likes received). ``allowed`` restricts
    the allowed action types (round 1: ``("POST",)``).
    """

    agent_id: str
    window: int
    now: float
    theme: str
    n_actions: int
    allowed: tuple[ActionType, ...] = PAPER_ACTIONS
    feed: tuple[FeedItem, ...] = ()
    inbox: tuple[InboxMessage, ...] = ()
    known_users: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    followees: tuple[str, ...] = ()
    guidance: tuple[Tip, ...] = ()
    last_rewards: RewardFeedback | None = None
    best_rewards: RewardFeedback | None = None
    last_actions: tuple[str, ...] = ()
    received_votes: tuple[ReceivedVote, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Action:
    """One decided action, ready to become a platform command.

    ``target_post`` for COM/LIKE/DISLIKE/REPOST, ``recipient`` for DM/FOLLOW/UNFOLLOW,
    ``mention`` an agent id to @mention (or ``None``), ``text`` the generated content for
    POST/COM/DM/REPOST.
    """

    type: ActionType
    topic: str = ""
    tone: ToneName = "neutral"
    target_post: int | None = None
    recipient: str | None = None
    mention: str | None = None
    text: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Failure:
    """A decision step that failed after its retries (recorded as an ``ActionFailed`` event)."""

    stage: str
    reason: str
    detail: str = ""
    attempts: int = 1
    action: Mapping[str, Any] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """A policy's answer for one wake-up: the actions (text already generated) and failures."""

    actions: tuple[Action, ...] = ()
    failures: tuple[Failure, ...] = ()
    prompt_tokens: int = 0
    notes: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Ballot:
    """A policy's votes on public items: post id -> +1, -1 or 0."""

    votes: Mapping[int, int] = field(default_factory=dict)
    failures: tuple[Failure, ...] = ()


class Policy(Protocol):
    """How an agent decides. Implementations: the LLM policy and the seeded baseline policy."""

    async def decide(self, obs: Observation) -> Decision: ...

    async def vote(self, obs: Observation, items: tuple[FeedItem, ...]) -> Ballot: ...

    def record_outcome(self, window: int, applied: tuple[Action, ...]) -> None:
        """Told after the runtime applied (a subset of) the decided actions: update memory."""
        ...
