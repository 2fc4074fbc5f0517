"""The shared vocabulary of friendsim: value types every component speaks, and nothing else.

This module sits at the bottom of the package and imports nothing from friendsim, so the
platform, the agents, the coach, analysis and the runtime can all use these types without
depending on one another.

The decision protocol between the runtime and an agent's mind: the runtime builds an
:class:`Observation` from a committed snapshot of the platform, asks the agent's :class:`Policy`
for a :class:`Decision`, and applies the decided actions as platform commands in a
deterministic order. A policy never touches the platform: it only reads its
observation and returns values, so the same policy serves live runs, replays and tests.

Action types: the paper's POST, COM (comment), DM and NOT (do nothing), plus the timeline verbs
LIKE, DISLIKE, FOLLOW, UNFOLLOW and REPOST used in continuous mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

ActionType = Literal["POST", "COM", "DM", "NOT", "LIKE", "DISLIKE", "FOLLOW", "UNFOLLOW", "REPOST"]
PaperActionType = Literal["POST", "COM", "DM", "NOT"]
Tone = Literal["supportive", "neutral", "critical"]
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
    label: str | None = None
    """A moderator's fact-check label, shown to agents with the item."""


@dataclass(frozen=True, kw_only=True, slots=True)
class InboxMessage:
    """A direct message addressed to the observing agent (``dm_id`` >= 1, the platform's), or a
    broadcast's message (``dm_id`` from :func:`broadcast_id`, <= 0: :attr:`is_broadcast`) from
    a ``sender`` that is no user (nobody to reply to)."""

    dm_id: int
    sender: str
    text: str
    topic: str = ""

    @property
    def is_broadcast(self) -> bool:
        """Whether this is a broadcast's message rather than a direct message."""
        return self.dm_id <= 0


def broadcast_id(seq: int) -> int:
    """The ``dm_id`` of a broadcast in an inbox: minus the ``seq`` of its ``BroadcastSent``
    event. Direct messages are numbered from 1, so a broadcast's id is never a DM's, and two
    broadcasts never share one (a memory that remembers messages by id keeps each)."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError(f"a broadcast's id comes from a recorded event's seq >= 0, got {seq!r}")
    return -seq


@dataclass(frozen=True, kw_only=True, slots=True)
class ReceivedVote:
    """A vote another agent cast on one of the observing agent's items (for relationship memory)."""

    voter: str
    post_id: int
    value: int


_ACTION_TYPES: frozenset[str] = frozenset(get_args(ActionType))
_TONES: frozenset[str] = frozenset(get_args(Tone))
_TIP_FIELDS = ("action", "target", "topic", "invite_mention", "tone", "text")
_TIP_FIELD_SET = frozenset(_TIP_FIELDS)


@dataclass(frozen=True, kw_only=True, slots=True)
class Tip:
    """One coach tip, as recorded in ``GuidanceIssued`` and shown to the agent it addresses.

    ``action`` is the suggested action type, ``target`` a user id, ``"top-liked post"`` or
    ``None``, ``topic`` the suggested topic, ``invite_mention`` whether to @mention someone,
    ``tone`` the suggested tone and ``text`` the one-sentence tip. :meth:`to_dict` and
    :meth:`from_dict` convert losslessly to and from the JSON object stored in the event log.
    """

    action: ActionType
    target: str | None
    topic: str
    invite_mention: bool
    tone: Tone
    text: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored in the log (every field, under its own name)."""
        return {
            "action": self.action,
            "target": self.target,
            "topic": self.topic,
            "invite_mention": self.invite_mention,
            "tone": self.tone,
            "text": self.text,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tip:
        """The tip stored as ``data``; raises ``ValueError`` naming the first problem.

        Strict on purpose: the log is the source of truth, so a tip that is not exactly what
        :meth:`to_dict` writes is an error, never silently repaired.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a tip must be a JSON object, got {type(data).__name__}")
        if data.keys() != _TIP_FIELD_SET:
            missing = [k for k in _TIP_FIELDS if k not in data]
            unknown = sorted(set(data) - _TIP_FIELD_SET)
            raise ValueError(f"tip fields: missing {missing}, unknown {unknown}")
        action, target, tone = data["action"], data["target"], data["tone"]
        if action not in _ACTION_TYPES:
            raise ValueError(f"tip action {action!r} is not one of {sorted(_ACTION_TYPES)}")
        if tone not in _TONES:
            raise ValueError(f"tip tone {tone!r} is not one of {sorted(_TONES)}")
        if target is not None and not isinstance(target, str):
            raise ValueError(f"tip target must be a string or null, got {target!r}")
        if not isinstance(data["invite_mention"], bool):
            raise ValueError(
                f"tip invite_mention must be a boolean, got {data['invite_mention']!r}"
            )
        for key in ("topic", "text"):
            if not isinstance(data[key], str):
                raise ValueError(f"tip {key} must be a string, got {data[key]!r}")
        if cls is not Tip:
            return cls(
                action=action,
                target=target,
                topic=data["topic"],
                invite_mention=data["invite_mention"],
                tone=tone,
                text=data["text"],
            )
        tip = object.__new__(Tip)  # set slot by slot: a log holds tips for every agent and window
        _SET_ACTION(tip, action)
        _SET_TARGET(tip, target)
        _SET_TOPIC(tip, data["topic"])
        _SET_INVITE(tip, data["invite_mention"])
        _SET_TONE(tip, tone)
        _SET_TEXT(tip, data["text"])
        return tip


_SET_ACTION, _SET_TARGET, _SET_TOPIC, _SET_INVITE, _SET_TONE, _SET_TEXT = (
    Tip.__dict__[name].__set__ for name in _TIP_FIELDS
)
"""The slots' own setters (what ``friendsim._slots.setters`` finds; the vocabulary imports
nothing from the package): a frozen dataclass's ``__init__`` sets each field through
``object.__setattr__``."""


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

    The platform validates the command it becomes: text it refuses (empty, too long, or not
    valid Unicode: a lone surrogate, which UTF-8 and so the log cannot hold) is recorded as
    ``ActionFailed(stage="command", reason="invalid_text")`` and the run goes on. A policy
    repairs its text before if it wants it posted, as the LLM policy does.
    """

    type: ActionType
    topic: str = ""
    tone: Tone = "neutral"
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
    """How an agent decides. Implementations: the LLM policy and the seeded baseline policy.

    A policy that reads at most N feed items (a prompt that shows N) says so with an attribute
    ``max_feed_items = N``: the runtime then serves it, and logs as served, no more than N
    (:func:`feed_capacity`), so the log's exposure is what the agent was shown.
    """

    async def decide(self, obs: Observation) -> Decision: ...

    async def vote(self, obs: Observation, items: tuple[FeedItem, ...]) -> Ballot: ...

    def record_outcome(self, window: int, applied: tuple[Action, ...]) -> None:
        """Told after the runtime applied (a subset of) the decided actions: update memory."""
        ...


def feed_capacity(policy: object) -> int | None:
    """The most feed items ``policy`` reads (its ``max_feed_items``), ``None`` for no bound."""
    cap = getattr(policy, "max_feed_items", None)
    return cap if type(cap) is int and cap >= 1 else None


@dataclass(frozen=True, kw_only=True, slots=True)
class Loss:
    """One kind of thing a run that ran every window can still lose: a count in the manifest's
    ``totals`` under ``name``; any loss makes the run ``degraded`` rather than ``completed``.
    ``what`` completes "N ..." (the command line and analysis both say it so); ``where`` says
    where the record of each one is."""

    name: str
    what: str
    where: str


LOSSES: tuple[Loss, ...] = (
    Loss(
        name="lost_actions",
        what="model-backed decisions lost to provider errors",
        where="the manifest's llm_usage has the failures by class",
    ),
    Loss(
        name="policy_errors",
        what="decisions lost to a policy that raised",
        where="a bug in the policy: action_failed events with stage 'policy' or 'vote' name "
        "the exception",
    ),
    Loss(
        name="lost_guidance",
        what="coach guidance lost to provider errors or a coach that raised "
        "(the rule coach's tips stood in)",
        where="action_failed events with stage 'coach'",
    ),
    Loss(
        name="lost_reviews",
        what="moderation reviews lost to provider errors or a moderator that raised or answered "
        "no review (those posts went unmoderated)",
        where="action_failed events with stage 'moderation'",
    ),
    Loss(
        name="lost_answers",
        what="survey answers lost to provider errors or a policy that raised "
        "(those agents went unsurveyed)",
        where="action_failed events with stage 'survey'",
    ),
)
"""Every :class:`Loss`, in the order they are reported."""
