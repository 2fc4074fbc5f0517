"""In-memory indexes of the platform state, and the validation of every event against them.

The platform validates commands here without a database round trip: the indexes (agents, post ->
author, comment -> root, votes, follows, DM ids) are loaded once at open and kept in step with each
admitted event. :meth:`PlatformState.check` raises a :class:`~.errors.PlatformError` and changes
nothing; :meth:`PlatformState.apply` then updates the indexes and cannot fail. Both dispatch through
explicit per-kind dicts; commands, JSONL import and ``Platform.record`` all pass through ``check``,
so an imported log is held to the same rules as live commands. ``check`` also refuses any event
holding text UTF-8 cannot encode (``InvalidTextError``): the log could not store it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import aiosqlite

from . import errors as E
from .events import (
    COACH_ACTOR,
    EVENT_TYPES,
    MODERATION_ACTIONS,
    TEXT_FIELDS,
    TRUTH_LABELS,
    AgentRegistered,
    AgentSuspended,
    DirectMessageSent,
    Event,
    FeedChanged,
    FeedServed,
    Followed,
    GuidanceIssued,
    ItemInjected,
    ModerationDecided,
    PersonaChanged,
    PostCreated,
    SurveyAnswered,
    Unfollowed,
    VoteCast,
    VoteChanged,
    VoteCleared,
    WindowStarted,
    normalise_topic,
    unicode_problem,
)


class PlatformState:
    """Validation indexes. Attributes are read by the service; only ``apply`` mutates them."""

    def __init__(self, *, max_text: int = 2000) -> None:
        self.max_text = max_text
        self.agents: dict[str, Mapping[str, Any]] = {}
        self.post_author: dict[int, str] = {}
        self.post_root: dict[int, int] = {}  # comments only: comment id -> thread root id
        self.votes: dict[tuple[str, int], int] = {}
        self.followees: dict[str, set[str]] = {}
        self.dms: dict[int, tuple[str, str]] = {}
        self.next_post_id = 1
        self.next_dm_id = 1
        self.last_seq = 0
        self.last_t = -math.inf
        self.window = 0  # the window open (or last opened): suspensions are per window
        self.removed: set[int] = set()
        self.downranked: set[int] = set()
        self.labels: dict[int, str] = {}
        self.shadowbanned: set[str] = set()
        self.suspensions: dict[str, list[tuple[int, int | None]]] = {}
        self.injected: dict[int, str] = {}  # post id -> truth label
        self.author_posts: dict[str, int] = {}  # only counted once moderation is in use
        self.hidden = 0  # posts served to nobody else: removed or by a shadowbanned author
        self.normal_topics: set[str] = set()  # cache: strings known to be normalised topics
        self._normalised: dict[str, str] = {}  # cache: raw topic -> normalise_topic(raw)

    def remember_topic(self, topic: str) -> None:
        if len(self.normal_topics) > 100_000:
            self.normal_topics.clear()
        self.normal_topics.add(topic)

    def normalise(self, topic: str) -> str:
        """:func:`normalise_topic`, memoised (topics repeat a lot)."""
        got = self._normalised.get(topic)
        if got is None:
            if len(self._normalised) > 100_000:
                self._normalised.clear()
            got = self._normalised[topic] = normalise_topic(topic)
        return got

    @classmethod
    async def load(cls, conn: aiosqlite.Connection, *, max_text: int = 2000) -> PlatformState:
        """Build the indexes from the materialised tables of ``conn`` (a few full scans)."""
        st = cls(max_text=max_text)
        async with conn.execute("SELECT agent_id, attributes FROM agents") as cur:
            async for agent_id, attrs in cur:
                st.agents[agent_id] = json.loads(attrs)
                st.followees[agent_id] = set()
        async with conn.execute("SELECT post_id, author, root_id FROM posts") as cur:
            for post_id, author, root_id in await cur.fetchall():
                st.post_author[post_id] = author
                if root_id is not None:
                    st.post_root[post_id] = root_id
        async with conn.execute("SELECT voter, post_id, value FROM votes") as cur:
            for voter, post_id, value in await cur.fetchall():
                st.votes[(voter, post_id)] = value
        async with conn.execute("SELECT follower, target FROM follows") as cur:
            for follower, target in await cur.fetchall():
                st.followees[follower].add(target)
        async with conn.execute("SELECT dm_id, sender, recipient FROM dms") as cur:
            for dm_id, sender, recipient in await cur.fetchall():
                st.dms[dm_id] = (sender, recipient)
        async with conn.execute("SELECT max(seq), max(t) FROM events") as cur:
            row = await cur.fetchone()
        if row and row[0] is not None:
            st.last_seq, st.last_t = int(row[0]), float(row[1])
        st.next_post_id = max(st.post_author, default=0) + 1
        st.next_dm_id = max(st.dms, default=0) + 1
        await st._load_instruments(conn)
        return st

    async def _load_instruments(self, conn: aiosqlite.Connection) -> None:
        async with conn.execute(
            "SELECT payload FROM events WHERE kind = 'window_started' ORDER BY seq DESC LIMIT 1"
        ) as cur:
            row = await cur.fetchone()
        if row is not None:
            self.window = int(json.loads(row[0])["window"])
        async with conn.execute("SELECT post_id, truth FROM injected_items") as cur:
            for post_id, truth in await cur.fetchall():
                self.injected[post_id] = truth
        async with conn.execute(
            "SELECT action, post_id, author, label FROM moderation ORDER BY seq"
        ) as cur:
            for action, post_id, author, label in await cur.fetchall():
                _moderate(self, action, post_id, author, label)
        async with conn.execute(
            "SELECT agent, from_window, until_window FROM suspensions ORDER BY seq"
        ) as cur:
            for agent, lo, hi in await cur.fetchall():
                self.suspensions.setdefault(agent, []).append((lo, hi))

    # --- moderation and suspension queries ------------------------------------------------------

    def suspended(self, agent: str, window: int) -> bool:
        """Whether ``agent`` may not act in ``window``."""
        spans = self.suspensions.get(agent)
        if not spans:
            return False
        return any(lo <= window and (hi is None or window <= hi) for lo, hi in spans)

    def served_to(self, post_id: int, reader: str) -> bool:
        """Whether ``post_id`` may be served to ``reader`` (moderation honoured)."""
        if post_id in self.removed:
            return False
        author = self.post_author.get(post_id)
        return not (author in self.shadowbanned and author != reader)

    def active(self, actor: Any, role: str) -> None:
        """``actor`` is registered and not suspended in the current window."""
        self.agent(actor, role)
        if self.suspensions and self.suspended(actor, self.window):
            raise E.SuspendedAgentError(f"{role} {actor!r} is suspended in window {self.window}")

    # --- checks -------------------------------------------------------------------------------

    def agent(self, agent_id: Any, role: str = "agent") -> None:
        if agent_id not in self.agents:
            raise E.UnknownAgentError(f"unknown {role} {agent_id!r}")

    def post(self, post_id: Any, role: str = "post") -> None:
        if type(post_id) is not int or post_id not in self.post_author:
            raise E.UnknownPostError(f"unknown {role} {post_id!r}")

    def text(self, text: Any, where: str, *, allow_empty: bool = False) -> None:
        if not isinstance(text, str):
            raise E.InvalidTextError(f"{where}: text must be a string, got {type(text).__name__}")
        if not allow_empty and not text.strip():
            raise E.InvalidTextError(f"{where}: text is empty")
        if len(text) > self.max_text:
            raise E.InvalidTextError(
                f"{where}: text has {len(text)} characters, the limit is {self.max_text}"
            )

    def mentions(self, mentions: tuple[str, ...], where: str) -> None:
        for m in mentions:
            if m not in self.agents:
                raise E.UnknownMentionError(f"{where}: mentions unknown user {m!r}")
        if len(set(mentions)) != len(mentions):
            raise E.InvalidEventError(f"{where}: duplicate mentions {list(mentions)}")

    def check(self, e: Event) -> None:
        """Raise a PlatformError if ``e`` cannot follow the current state; change nothing.

        Every kind is also held to one rule on its text (:data:`~.events.TEXT_FIELDS`): a
        string UTF-8 cannot encode (a lone surrogate such as ``"\\ud800"``, which a plug-in's
        text can hold) is an :class:`~.errors.InvalidTextError` naming the field, never an
        event whose commit would fail and close the platform."""
        if e.seq != self.last_seq + 1:
            raise E.InvalidEventError(
                f"event seq {e.seq} ({e.kind}) does not follow the last seq {self.last_seq}"
            )
        if not isinstance(e.t, int | float) or not math.isfinite(e.t) or e.t < self.last_t:
            raise E.InvalidEventError(
                f"event seq {e.seq} ({e.kind}): time {e.t!r} is before the last event's {self.last_t}"
            )
        if EVENT_TYPES.get(e.kind) is not type(e):
            raise E.InvalidEventError(f"event seq {e.seq}: unknown kind {e.kind!r}")
        _CHECKS[e.kind](self, e)
        for name in TEXT_FIELDS[e.kind]:
            problem = unicode_problem(getattr(e, name), name)
            if problem is not None:
                by = "" if e.actor is None else f" by {e.actor!r}"
                raise E.InvalidTextError(
                    f"{e.kind}{by}: {problem}; the log (UTF-8) cannot store it"
                )

    def apply(self, e: Event) -> None:
        """Update the indexes for an event that passed :meth:`check`."""
        _APPLY[e.kind](self, e)
        self.last_seq = e.seq
        self.last_t = e.t


def _check_agent_registered(st: PlatformState, e: AgentRegistered) -> None:
    if not isinstance(e.actor, str) or not e.actor.strip():
        raise E.InvalidEventError(f"agent id must be a non-empty string, got {e.actor!r}")
    if e.actor == COACH_ACTOR:
        raise E.InvalidEventError(f"agent id {COACH_ACTOR!r} is reserved for the coach")
    if e.actor in st.agents:
        raise E.DuplicateAgentError(f"agent {e.actor!r} is already registered")
    if not isinstance(e.name, str):
        raise E.InvalidEventError(f"agent {e.actor!r}: name must be a string")
    if not isinstance(e.attributes, Mapping):
        raise E.InvalidEventError(f"agent {e.actor!r}: attributes must be a mapping")
    try:
        json.dumps(dict(e.attributes))
    except (TypeError, ValueError) as exc:
        raise E.InvalidEventError(f"agent {e.actor!r}: attributes are not JSON: {exc}") from exc


def _check_post_created(st: PlatformState, e: PostCreated) -> None:
    st.active(e.actor, "author")
    where = f"post by {e.actor!r}"
    if e.post_id != st.next_post_id:
        raise E.InvalidEventError(f"{where}: post id {e.post_id!r}, expected {st.next_post_id}")
    st.text(e.text, where, allow_empty=e.quote_of is not None)
    if not e.topic or e.topic not in st.normal_topics:
        if not isinstance(e.topic, str) or not e.topic or normalise_topic(e.topic) != e.topic:
            raise E.InvalidTopicError(f"{where}: topic {e.topic!r} is empty or not normalised")
        st.remember_topic(e.topic)
    st.mentions(e.mentions, where)
    if e.parent_id is not None:
        st.post(e.parent_id, "parent post")
        root = st.post_root.get(e.parent_id, e.parent_id)
        if e.root_id != root:
            raise E.InvalidEventError(f"{where}: root_id {e.root_id!r}, thread root is {root}")
    elif e.root_id is not None:
        raise E.InvalidEventError(f"{where}: root_id set on a top-level post")
    if e.quote_of is not None:
        st.post(e.quote_of, "quoted post")
    if st.removed and (e.parent_id in st.removed or e.quote_of in st.removed):
        raise E.ModeratedPostError(f"{where}: replies to or quotes a removed post")


def _vote_target(st: PlatformState, e: VoteCast | VoteChanged | VoteCleared) -> int:
    st.active(e.actor, "voter")
    assert e.actor is not None
    st.post(e.post_id)
    author = st.post_author[e.post_id]
    if e.author != author:
        raise E.InvalidEventError(f"vote on post {e.post_id}: author {e.author!r} != {author!r}")
    if author == e.actor:
        raise E.SelfVoteError(f"{e.actor!r} cannot vote on its own post {e.post_id}")
    if e.post_id in st.removed and e.kind == "vote_cast":
        raise E.ModeratedPostError(f"vote by {e.actor!r} on removed post {e.post_id}")
    return st.votes.get((e.actor, e.post_id), 0)


def _check_vote_cast(st: PlatformState, e: VoteCast) -> None:
    old = _vote_target(st, e)
    if e.value not in (1, -1) or type(e.value) is not int:
        raise E.InvalidVoteError(f"vote value must be +1 or -1, got {e.value!r}")
    if old != 0:
        raise E.InvalidEventError(f"{e.actor!r} already voted {old} on post {e.post_id}")


def _check_vote_changed(st: PlatformState, e: VoteChanged) -> None:
    old = _vote_target(st, e)
    if old == 0 or e.old != old or e.value != -old:
        raise E.InvalidEventError(
            f"vote change on post {e.post_id} by {e.actor!r}: {e.old}->{e.value}, current {old}"
        )


def _check_vote_cleared(st: PlatformState, e: VoteCleared) -> None:
    old = _vote_target(st, e)
    if old == 0 or e.old != old:
        raise E.InvalidEventError(
            f"vote clear on post {e.post_id} by {e.actor!r}: old {e.old}, current {old}"
        )


def _check_followed(st: PlatformState, e: Followed) -> None:
    st.active(e.actor, "follower")
    st.agent(e.target, "follow target")
    assert e.actor is not None
    if e.actor == e.target:
        raise E.SelfFollowError(f"{e.actor!r} cannot follow itself")
    if e.target in st.followees[e.actor]:
        raise E.DuplicateFollowError(f"{e.actor!r} already follows {e.target!r}")


def _check_unfollowed(st: PlatformState, e: Unfollowed) -> None:
    st.active(e.actor, "follower")
    st.agent(e.target, "unfollow target")
    assert e.actor is not None
    if e.target not in st.followees[e.actor]:
        raise E.NotFollowingError(f"{e.actor!r} does not follow {e.target!r}")


def _check_dm_sent(st: PlatformState, e: DirectMessageSent) -> None:
    st.active(e.actor, "DM sender")
    st.agent(e.recipient, "DM recipient")
    if e.actor == e.recipient:
        raise E.SelfMessageError(f"{e.actor!r} cannot send a DM to itself")
    where = f"DM from {e.actor!r} to {e.recipient!r}"
    if e.dm_id != st.next_dm_id:
        raise E.InvalidEventError(f"{where}: dm id {e.dm_id!r}, expected {st.next_dm_id}")
    st.text(e.text, where)
    if e.topic not in st.normal_topics:
        if not isinstance(e.topic, str) or normalise_topic(e.topic) != e.topic:
            raise E.InvalidTopicError(f"{where}: topic {e.topic!r} is not normalised")
        st.remember_topic(e.topic)
    st.mentions(e.mentions, where)
    if e.reply_to is not None:
        pair = st.dms.get(e.reply_to) if type(e.reply_to) is int else None
        if pair is None:
            raise E.UnknownMessageError(f"{where}: replies to unknown DM {e.reply_to!r}")
        if set(pair) != {e.actor, e.recipient}:
            raise E.UnknownMessageError(
                f"{where}: DM {e.reply_to} is between {pair[0]!r} and {pair[1]!r}, "
                "not this conversation"
            )


def _check_feed_served(st: PlatformState, e: FeedServed) -> None:
    st.agent(e.actor, "feed reader")
    for pid in e.post_ids:
        st.post(pid, "served post")
    if len(e.topics) != len(e.post_ids):
        raise E.InvalidEventError(
            f"feed for {e.actor!r}: {len(e.topics)} topics for {len(e.post_ids)} posts"
        )
    if len(set(e.post_ids)) != len(e.post_ids):
        raise E.InvalidEventError(f"feed for {e.actor!r}: duplicate post ids")
    if st.hidden:
        for pid in e.post_ids:
            if not st.served_to(pid, e.actor):  # type: ignore[arg-type]
                raise E.ModeratedPostError(
                    f"feed for {e.actor!r}: post {pid} was removed or its author shadowbanned"
                )


def _check_guidance(st: PlatformState, e: GuidanceIssued) -> None:
    st.agent(e.agent, "guidance recipient")


def _check_actor_optional(st: PlatformState, e: Event) -> None:
    if e.actor is not None:
        st.agent(e.actor, "actor")


def _check_nothing(st: PlatformState, e: Event) -> None:
    return None


def _check_window_started(st: PlatformState, e: WindowStarted) -> None:
    if type(e.window) is not int or e.window < 1:
        raise E.InvalidEventError(f"window number must be an int >= 1, got {e.window!r}")


def _check_injected(st: PlatformState, e: ItemInjected) -> None:
    st.post(e.post_id, "injected post")
    if e.post_id in st.injected:
        raise E.InvalidEventError(f"post {e.post_id} is already marked as injected")
    if e.truth not in TRUTH_LABELS:
        raise E.InvalidEventError(f"injected item truth {e.truth!r} is not one of {TRUTH_LABELS}")
    if not isinstance(e.item_id, str) or not e.item_id:
        raise E.InvalidEventError(f"injected post {e.post_id}: item id must be a non-empty string")


def _window_span(lo: Any, hi: Any, where: str) -> None:
    if type(lo) is not int or lo < 1:
        raise E.InvalidEventError(f"{where}: from_window must be an int >= 1, got {lo!r}")
    if hi is not None and (type(hi) is not int or hi < lo):
        raise E.InvalidEventError(f"{where}: until_window {hi!r} is before from_window {lo}")


def _check_moderation(st: PlatformState, e: ModerationDecided) -> None:
    st.post(e.post_id, "moderated post")
    where = f"moderation of post {e.post_id}"
    if e.action not in MODERATION_ACTIONS:
        raise E.InvalidEventError(f"{where}: action {e.action!r} not one of {MODERATION_ACTIONS}")
    if st.post_author[e.post_id] != e.author:
        raise E.InvalidEventError(f"{where}: author {e.author!r} is not the post's author")
    if e.action == "label" and not (isinstance(e.label, str) and e.label.strip()):
        raise E.InvalidEventError(f"{where}: a label decision needs a label text")
    if e.action == "suspend":
        _window_span(e.from_window, e.until_window, where)
    elif e.from_window is not None or e.until_window is not None:
        raise E.InvalidEventError(f"{where}: only a suspension has from/until windows")


def _check_suspended(st: PlatformState, e: AgentSuspended) -> None:
    st.agent(e.agent, "suspended agent")
    _window_span(e.from_window, e.until_window, f"suspension of {e.agent!r}")


def _check_persona_changed(st: PlatformState, e: PersonaChanged) -> None:
    st.agent(e.agent, "agent")
    if not isinstance(e.fields, Mapping) or not e.fields:
        raise E.InvalidEventError(f"persona change of {e.agent!r}: fields must be a mapping")


def _check_feed_changed(st: PlatformState, e: FeedChanged) -> None:
    if not isinstance(e.ranker, str) or not e.ranker or type(e.limit) is not int or e.limit < 1:
        raise E.InvalidEventError(f"feed change: ranker {e.ranker!r}, limit {e.limit!r}")


def _check_answered(st: PlatformState, e: SurveyAnswered) -> None:
    st.agent(e.actor, "survey respondent")
    if not isinstance(e.answers, Mapping) or not all(
        isinstance(k, str) and k and type(v) is int for k, v in e.answers.items()
    ):
        raise E.InvalidEventError(f"survey answers of {e.actor!r} must map question ids to ints")


_CHECKS: dict[str, Callable[[PlatformState, Any], None]] = {
    "agent_registered": _check_agent_registered,
    "post_created": _check_post_created,
    "vote_cast": _check_vote_cast,
    "vote_changed": _check_vote_changed,
    "vote_cleared": _check_vote_cleared,
    "followed": _check_followed,
    "unfollowed": _check_unfollowed,
    "dm_sent": _check_dm_sent,
    "feed_served": _check_feed_served,
    "window_started": _check_window_started,
    "window_ended": _check_nothing,
    "guidance_issued": _check_guidance,
    "action_failed": _check_actor_optional,
    "intervention_applied": _check_nothing,
    "item_injected": _check_injected,
    "broadcast_sent": _check_nothing,
    "feed_changed": _check_feed_changed,
    "persona_changed": _check_persona_changed,
    "agent_suspended": _check_suspended,
    "moderation_decided": _check_moderation,
    "survey_answered": _check_answered,
}


def _apply_agent(st: PlatformState, e: AgentRegistered) -> None:
    st.agents[e.actor] = dict(e.attributes)  # type: ignore[index]
    st.followees[e.actor] = set()  # type: ignore[index]


def _apply_post(st: PlatformState, e: PostCreated) -> None:
    st.post_author[e.post_id] = e.actor  # type: ignore[assignment]
    if st.shadowbanned and e.actor is not None:
        st.author_posts[e.actor] = st.author_posts.get(e.actor, 0) + 1
        if e.actor in st.shadowbanned:
            st.hidden += 1
    if e.root_id is not None:
        st.post_root[e.post_id] = e.root_id
    st.next_post_id = e.post_id + 1


def _apply_vote_set(st: PlatformState, e: VoteCast | VoteChanged) -> None:
    st.votes[(e.actor, e.post_id)] = e.value  # type: ignore[index]


def _apply_vote_cleared(st: PlatformState, e: VoteCleared) -> None:
    del st.votes[(e.actor, e.post_id)]  # type: ignore[arg-type]


def _apply_followed(st: PlatformState, e: Followed) -> None:
    st.followees[e.actor].add(e.target)  # type: ignore[index]


def _apply_unfollowed(st: PlatformState, e: Unfollowed) -> None:
    st.followees[e.actor].discard(e.target)  # type: ignore[index]


def _apply_dm(st: PlatformState, e: DirectMessageSent) -> None:
    st.dms[e.dm_id] = (e.actor, e.recipient)  # type: ignore[assignment]
    st.next_dm_id = e.dm_id + 1


def _apply_nothing(st: PlatformState, e: Event) -> None:
    return None


def _apply_window_started(st: PlatformState, e: WindowStarted) -> None:
    st.window = e.window


def _apply_injected(st: PlatformState, e: ItemInjected) -> None:
    st.injected[e.post_id] = e.truth


def _moderate(st: PlatformState, action: str, post_id: int, author: str, label: str) -> None:
    match action:
        case "remove":
            if st.served_to(post_id, ""):
                st.hidden += 1
            st.removed.add(post_id)
        case "label":
            st.labels[post_id] = label
        case "downrank":
            st.downranked.add(post_id)
        case "shadowban":
            if author not in st.shadowbanned:
                if not st.author_posts:
                    for a in st.post_author.values():
                        st.author_posts[a] = st.author_posts.get(a, 0) + 1
                removed = sum(1 for p in st.removed if st.post_author.get(p) == author)
                st.hidden += st.author_posts.get(author, 0) - removed
                st.shadowbanned.add(author)


def _apply_moderation(st: PlatformState, e: ModerationDecided) -> None:
    _moderate(st, e.action, e.post_id, e.author, e.label)
    if e.action == "suspend":
        assert e.from_window is not None
        st.suspensions.setdefault(e.author, []).append((e.from_window, e.until_window))


def _apply_suspended(st: PlatformState, e: AgentSuspended) -> None:
    st.suspensions.setdefault(e.agent, []).append((e.from_window, e.until_window))


_APPLY: dict[str, Callable[[PlatformState, Any], None]] = {
    "agent_registered": _apply_agent,
    "post_created": _apply_post,
    "vote_cast": _apply_vote_set,
    "vote_changed": _apply_vote_set,
    "vote_cleared": _apply_vote_cleared,
    "followed": _apply_followed,
    "unfollowed": _apply_unfollowed,
    "dm_sent": _apply_dm,
    "feed_served": _apply_nothing,
    "window_started": _apply_window_started,
    "window_ended": _apply_nothing,
    "guidance_issued": _apply_nothing,
    "action_failed": _apply_nothing,
    "intervention_applied": _apply_nothing,
    "item_injected": _apply_injected,
    "broadcast_sent": _apply_nothing,
    "feed_changed": _apply_nothing,
    "persona_changed": _apply_nothing,
    "agent_suspended": _apply_suspended,
    "moderation_decided": _apply_moderation,
    "survey_answered": _apply_nothing,
}
