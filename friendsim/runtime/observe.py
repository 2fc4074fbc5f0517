"""What an agent sees: building :class:`Observation` values from committed platform state.

The runtime keeps a small, bounded record per agent (:class:`AgentContext`): the users and topics
it has come across (most recent first, capped so prompts stay bounded as rounds grow), what it
did last window, and a one-line summary of every window it acted in (so "best round so far" can
say what the agent did then). Reward scores come from the coach service, which computes them
from the log; the runtime only converts them to :class:`RewardFeedback`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Protocol

from friendsim.platform.events import DirectMessageSent
from friendsim.platform.views import PostView
from friendsim.vocabulary import (
    Action,
    FeedItem,
    InboxMessage,
    RewardFeedback,
    Tip,
)


class ScoresLike(Protocol):
    """The fields of ``friendsim.analysis.rewards.AgentScores`` the runtime reads."""

    @property
    def window(self) -> int: ...
    @property
    def components(self) -> Mapping[str, float]: ...
    @property
    def total(self) -> float: ...


class CoachView(Protocol):
    """The part of ``friendsim.coach.service.CoachService`` the runtime uses."""

    async def window_done(self, window: int) -> Mapping[str, ScoresLike]: ...
    def coaching(self, window: int) -> bool: ...
    def latest_guidance(self, agent: str) -> tuple[Tip, ...]: ...
    def last_scores(self, agent: str) -> ScoresLike | None: ...
    def best_scores(self, agent: str) -> ScoresLike | None: ...


def feed_item(view: PostView) -> FeedItem:
    """A platform post view as the agent-facing :class:`FeedItem`."""
    return FeedItem(
        post_id=view.post_id,
        author=view.author,
        text=view.text,
        topic=view.topic,
        parent_id=view.parent_id,
        mentions=tuple(view.mentions),
        likes=view.likes,
        dislikes=view.dislikes,
        replies=view.replies,
        label=view.label,
    )


def inbox_message(dm: DirectMessageSent) -> InboxMessage:
    """A DM event as the agent-facing :class:`InboxMessage`."""
    return InboxMessage(dm_id=dm.dm_id, sender=dm.actor or "", text=dm.text, topic=dm.topic)


def describe(action: Action) -> str:
    """A short human-readable line for one applied action (used in prompts and summaries)."""
    topic = f" on '{action.topic}'" if action.topic else ""
    mention = f" @{action.mention}" if action.mention else ""
    match action.type:
        case "POST":
            return f"POST{topic} ({action.tone}){mention}"
        case "COM":
            return f"COM on post {action.target_post}{topic} ({action.tone}){mention}"
        case "DM":
            return f"DM to {action.recipient}{topic} ({action.tone})"
        case "LIKE" | "DISLIKE" | "REPOST":
            return f"{action.type} post {action.target_post}"
        case "FOLLOW" | "UNFOLLOW":
            return f"{action.type} {action.recipient}"
        case _:
            return action.type


class AgentContext:
    """Runtime-side, bounded memory of one agent: who and what it has seen, what it did."""

    __slots__ = (
        "_known",
        "_summaries",
        "_topics",
        "agent_id",
        "last_actions",
        "max_known",
        "max_topics",
    )

    def __init__(
        self,
        agent_id: str,
        *,
        max_known: int = 50,
        max_topics: int = 20,
        acquaintances: Iterable[str] = (),
    ) -> None:
        self.agent_id = agent_id
        self.max_known = max_known
        self.max_topics = max_topics
        self._known: OrderedDict[str, None] = OrderedDict()
        self._topics: OrderedDict[str, None] = OrderedDict()
        self._summaries: dict[int, str] = {}
        self.last_actions: tuple[str, ...] = ()
        for user in acquaintances:
            self._touch(self._known, user, self.max_known)

    @staticmethod
    def _touch(store: OrderedDict[str, None], key: str, cap: int) -> None:
        if not key:
            return
        store[key] = None
        store.move_to_end(key)
        while len(store) > cap:
            store.popitem(last=False)

    def saw(self, feed: Iterable[FeedItem], inbox: Iterable[InboxMessage]) -> None:
        """Note the authors, mentioned users and topics of what the agent was shown."""
        me = self.agent_id
        for item in feed:
            if item.author != me:
                self._touch(self._known, item.author, self.max_known)
            for m in item.mentions:
                if m != me:
                    self._touch(self._known, m, self.max_known)
            self._touch(self._topics, item.topic, self.max_topics)
        for msg in inbox:
            if not msg.is_broadcast:  # a broadcast's sender is no user to write to
                self._touch(self._known, msg.sender, self.max_known)
            self._touch(self._topics, msg.topic, self.max_topics)

    def acted(self, window: int, applied: tuple[Action, ...]) -> None:
        """Note what the agent did in ``window`` (its last actions and the window summary)."""
        lines = tuple(describe(a) for a in applied)
        self.last_actions = lines
        for a in applied:
            if a.recipient and a.recipient != self.agent_id:
                self._touch(self._known, a.recipient, self.max_known)
            self._touch(self._topics, a.topic, self.max_topics)
        if lines:
            previous = self._summaries.get(window)
            self._summaries[window] = "; ".join(([previous] if previous else []) + list(lines))[
                :400
            ]

    @property
    def known_users(self) -> tuple[str, ...]:
        """Known users, most recently seen first."""
        return tuple(reversed(self._known))

    @property
    def topics(self) -> tuple[str, ...]:
        """Topics seen, most recent first."""
        return tuple(reversed(self._topics))

    def feedback(self, scores: ScoresLike | None) -> RewardFeedback | None:
        """Reward scores as :class:`RewardFeedback`, with the summary of that window's actions."""
        if scores is None:
            return None
        return RewardFeedback(
            window=scores.window,
            components=dict(scores.components),
            total=float(scores.total),
            summary=self._summaries.get(scores.window, ""),
        )
