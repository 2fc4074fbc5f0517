"""The platform service: validated commands in, committed events out.

A command validates against the in-memory indexes (:mod:`.state`, no database round trip), builds
its event with the next ``seq`` and ``t = clock.now()``, updates the indexes and queues the event.
A rejected command raises a :class:`~.errors.PlatformError` and changes nothing: not memory, not
disk, no seq consumed. :meth:`Platform.flush` commits the queued events in one transaction
(append + projection, see :mod:`.store`) and then publishes them on :attr:`Platform.bus` in order.
When ``batch_size`` events are queued a command starts a background flush and returns, so the
next batch is validated while SQLite writes the previous one (on another core); a command waits
for the flush only when ``2 * batch_size`` events are queued (backpressure). Call ``flush()`` to
know that everything so far is durable: it returns the committed seq.

If a commit ever fails (disk full, a constraint the validation missed), the in-memory state is
ahead of the disk: the platform then refuses every further command with
:class:`~.errors.PlatformClosedError` (the log on disk stays consistent; reopen to resume). A
commit is never cut short by a cancellation of the task flushing (a second Ctrl-C: stop now):
it is carried to its end, its events published, and the cancellation raised after, so a run
stopped at once ends ``interrupted``, not ``failed`` on a platform its own stop broke.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, cast

import aiosqlite
import structlog

from friendsim._carry import carried
from friendsim._unicode import clean_value

from . import errors as E
from .bus import EventBus
from .clock import VirtualClock
from .events import (
    ActionFailed,
    AgentRegistered,
    AgentSuspended,
    BroadcastSent,
    DirectMessageSent,
    Event,
    FeedChanged,
    FeedServed,
    Followed,
    GuidanceIssued,
    InterventionApplied,
    ItemInjected,
    ModerationDecided,
    PersonaChanged,
    PostCreated,
    SurveyAnswered,
    Unfollowed,
    VoteChanged,
    VoteCleared,
    WindowEnded,
    WindowStarted,
    vote_cast,
)
from .feeds.base import (
    FeedQuery,
    FeedRanker,
    FeedView,
    ViewRanker,
    WindowRanker,
    keeps_last,
    ranks_views,
    same_for_every_reader,
    shares_windows,
)
from .state import PlatformState
from .store import Store
from .views import PostView, dms_between, dms_since, dms_to, fetch_posts, posts_between

log = structlog.get_logger(__name__)


RECORDABLE: tuple[type[Event], ...] = (
    WindowStarted,
    WindowEnded,
    GuidanceIssued,
    ActionFailed,
    InterventionApplied,
    ItemInjected,
    BroadcastSent,
    FeedChanged,
    PersonaChanged,
    AgentSuspended,
    ModerationDecided,
    SurveyAnswered,
)


_POSTS_UNCHANGED: frozenset[type[Event]] = frozenset(
    {
        AgentRegistered,
        Followed,
        Unfollowed,
        DirectMessageSent,
        FeedServed,
        WindowStarted,
        WindowEnded,
        GuidanceIssued,
        ActionFailed,
        BroadcastSent,
        FeedChanged,
        PersonaChanged,
        AgentSuspended,
        SurveyAnswered,
    }
)
"""Event types whose projection never touches the ``posts`` or ``mentions`` rows (any other
type, one added later included, ends what a shared feed ranking may reuse)."""


class Platform:
    """The social platform of one run, backed by one SQLite file. Create with :meth:`open`."""

    def __init__(
        self, store: Store, state: PlatformState, clock: VirtualClock, *, batch_size: int
    ) -> None:
        self._store = store
        self._state = state
        self.clock = clock
        self._batch_size = batch_size
        self._pending: list[Event] = []
        self._flush_lock = asyncio.Lock()
        self._broken: BaseException | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self._closing = False
        self.committed_seq = state.last_seq
        self.bus = EventBus(store.read_events, last_published=state.last_seq)
        self._attributes_view = MappingProxyType(state.agents)
        self._feed_view = FeedView(store.reader)
        self._posts_version = 0
        """Bumped by each commit that may change the ``posts`` or ``mentions`` rows."""
        self._shared_feed: tuple[tuple[Any, ...], list[PostView]] | None = None

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: VirtualClock | None = None,
        batch_size: int = 1000,
        max_text: int = 2000,
        synchronous: str = "NORMAL",
    ) -> Platform:
        """Open or create the platform database at ``path`` and load the validation indexes.

        Reopening an existing run resumes it: ``seq`` continues and the clock is moved forward to
        the last logged event's time if it is behind.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_text < 1:
            raise ValueError(f"max_text must be >= 1, got {max_text}")
        store = await Store.open(path, synchronous=synchronous)
        try:
            state = await PlatformState.load(store.writer, max_text=max_text)
        except BaseException:
            await store.close()
            raise
        clock = clock if clock is not None else VirtualClock()
        if math.isfinite(state.last_t) and clock.now() < state.last_t:
            clock.advance_to(state.last_t)
        return cls(store, state, clock, batch_size=batch_size)

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._store.path

    @property
    def last_seq(self) -> int:
        """Last seq assigned (pending or committed)."""
        return self._state.last_seq

    @property
    def log_sha256(self) -> str | None:
        """The digest of the whole log as committed (see :attr:`Store.log_sha256`), or ``None``
        when this platform did not write every row of it (a resumed log): read it back then."""
        return self._store.log_sha256

    @property
    def pending(self) -> int:
        """Number of admitted events not committed yet."""
        return len(self._pending)

    @property
    def db(self) -> aiosqlite.Connection:
        """The read connection (aiosqlite), committed state only; for rankers and analysis."""
        return self._store.reader

    async def flush(self) -> int:
        """Commit the queued events in one transaction, publish them in order; ``committed_seq``."""
        async with self._flush_lock:
            if self._broken is not None:
                raise E.PlatformClosedError(f"platform is broken: {self._broken!r}")
            if not self._pending:
                return self.committed_seq
            batch, self._pending = self._pending, []
            cancelled = False
            try:
                commit = asyncio.ensure_future(self._store.commit(batch))
                cancelled = await carried(commit) > 0
                commit.result()
            except BaseException as exc:
                self._broken = exc
                log.error("platform.commit_failed", first_seq=batch[0].seq, error=repr(exc))
                raise E.PlatformClosedError(
                    f"commit of events {batch[0].seq}..{batch[-1].seq} failed ({exc!r}); "
                    "the platform refuses further commands, reopen it to resume from the log"
                ) from exc
            self.committed_seq = batch[-1].seq
            if not all(type(e) in _POSTS_UNCHANGED for e in batch):
                self._posts_version += 1
            await self.bus.publish(batch)
            if cancelled:
                raise asyncio.CancelledError
            return self.committed_seq

    async def close(self) -> None:
        """Flush, end the bus subscriptions, close the database. Idempotent."""
        if self._closed or self._closing:
            return
        self._closing = True  # refuse commands from now on; then drain what was admitted
        try:
            if self._broken is None:
                await self.flush()
            await self.bus.close()
        finally:
            self._closed = True
            await self._store.close()

    async def __aenter__(self) -> Platform:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- admission ----------------------------------------------------------------------------

    def _admit(self, event: Event) -> None:
        if self._closing or self._broken is not None:
            raise E.PlatformClosedError(
                "platform is closed" if self._closing else f"platform is broken: {self._broken!r}"
            )
        st = self._state
        st.check(event)
        st.apply(event)
        self._pending.append(event)

    async def _admitted(self, event: Event) -> None:
        n = len(self._pending)
        if n < self._batch_size:
            return
        if n >= 2 * self._batch_size:
            await self.flush()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._background_flush())

    def flush_soon(self) -> None:
        """Start committing what is queued without waiting for it (a flush of its own when none
        is running): a caller about to wait for the model lets the commit overlap the wait
        instead of paying for it at its next :meth:`flush`. Errors surface as a background
        flush's do: on the next command or flush."""
        if self._pending and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._background_flush())

    async def _background_flush(self) -> None:
        try:
            await self.flush()
        except E.PlatformClosedError:
            pass  # recorded in self._broken; surfaces on the next command or flush

    @staticmethod
    def _mentions(mentions: Sequence[str], where: str) -> tuple[str, ...]:
        if isinstance(mentions, str):
            raise E.UnknownMentionError(
                f"{where}: mentions must be a list of agent ids, got the string {mentions!r}"
            )
        return tuple(dict.fromkeys(mentions))

    def _next(self) -> tuple[int, float]:
        return self._state.last_seq + 1, self.clock.now()

    # --- commands -----------------------------------------------------------------------------

    async def register_agent(
        self, agent_id: str, *, name: str, attributes: Mapping[str, Any] | None = None
    ) -> AgentRegistered:
        seq, t = self._next()
        e = AgentRegistered(
            seq=seq, t=t, actor=agent_id, name=name, attributes=dict(attributes or {})
        )
        self._admit(e)
        await self._admitted(e)
        return e

    async def create_post(
        self,
        author: str,
        *,
        text: str,
        topic: str,
        mentions: Sequence[str] = (),
        parent_id: int | None = None,
        quote_of: int | None = None,
        tone: str | None = None,
    ) -> PostCreated:
        """A post, or a comment when ``parent_id`` is set (``root_id`` is computed).

        ``topic`` is normalised and must not be empty; duplicate mentions are dropped (first
        occurrence kept). A plain repost (``quote_of`` set) may have empty text.
        """
        st = self._state
        seq, t = self._next()
        root = None if parent_id is None else st.post_root.get(parent_id, parent_id)
        if not isinstance(topic, str):
            raise E.InvalidTopicError(f"post by {author!r}: topic must be a string")
        e = PostCreated(
            seq=seq,
            t=t,
            actor=author,
            post_id=st.next_post_id,
            text=text,
            topic=self._state.normalise(topic),
            mentions=self._mentions(mentions, f"post by {author!r}"),
            parent_id=parent_id,
            root_id=root,
            quote_of=quote_of,
            tone=tone,
        )
        self._admit(e)
        await self._admitted(e)
        return e

    async def vote(self, voter: str, post_id: int, value: int) -> Event | None:
        """+1 like, -1 dislike, 0 withdraw: VoteCast / VoteChanged / VoteCleared, or None if the
        vote is already ``value`` (nothing changes, nothing is logged)."""
        e = self._vote(voter, post_id, value)
        if e is not None:
            await self._admitted(e)
        return e

    async def cast_votes(
        self, voter: str, votes: Sequence[tuple[int, int]]
    ) -> tuple[list[Event | None], E.PlatformError | None]:
        """:meth:`vote` for each ``(post_id, value)`` of ``votes`` in order, up to the first
        rejected one: returns the results so far and that rejection (``None`` if there was
        none). The same events, seqs and errors as calling :meth:`vote` one at a time, without
        a coroutine per vote (a ballot casts hundreds)."""
        out: list[Event | None] = []
        vote = self._vote
        for post_id, value in votes:
            try:
                e = vote(voter, post_id, value)
            except E.PlatformError as exc:
                return out, exc
            out.append(e)
            if e is not None and len(self._pending) >= self._batch_size:
                await self._admitted(e)
        return out, None

    def _vote(self, voter: str, post_id: int, value: int) -> Event | None:
        """Validate, build and admit one vote (see :meth:`vote`). In the common case (platform
        open, no suspension, post not removed, clock not behind) everything
        :meth:`PlatformState.check` verifies holds by construction, so the event is admitted
        without it; otherwise it goes through :meth:`_admit`, which raises the same errors."""
        if type(value) is not int or value not in (-1, 0, 1):
            raise E.InvalidVoteError(f"vote by {voter!r} on post {post_id!r}: value {value!r}")
        st = self._state
        if voter not in st.agents:
            st.agent(voter, "voter")
        if type(post_id) is not int or post_id not in st.post_author:
            st.post(post_id)
        author = st.post_author[post_id]
        if author == voter:
            raise E.SelfVoteError(f"{voter!r} cannot vote on its own post {post_id}")
        key = (voter, post_id)
        old = st.votes.get(key, 0)
        if old == value:
            return None
        seq, t = st.last_seq + 1, self.clock.now()
        e: Event
        if old == 0:
            e = vote_cast(seq, t, voter, post_id, author, value)
        elif value == 0:
            e = VoteCleared(seq=seq, t=t, actor=voter, post_id=post_id, author=author, old=old)
        else:
            e = VoteChanged(
                seq=seq, t=t, actor=voter, post_id=post_id, author=author, old=old, value=value
            )
        if (
            self._closing
            or self._broken is not None
            or st.suspensions
            or post_id in st.removed
            or type(t) is not float
            or not st.last_t <= t < math.inf
        ):
            self._admit(e)
            return e
        if value:
            st.votes[key] = value
        else:
            del st.votes[key]
        st.last_seq = seq
        st.last_t = t
        self._pending.append(e)
        return e

    async def follow(self, follower: str, target: str) -> Followed:
        seq, t = self._next()
        e = Followed(seq=seq, t=t, actor=follower, target=target)
        self._admit(e)
        await self._admitted(e)
        return e

    async def unfollow(self, follower: str, target: str) -> Unfollowed:
        seq, t = self._next()
        e = Unfollowed(seq=seq, t=t, actor=follower, target=target)
        self._admit(e)
        await self._admitted(e)
        return e

    async def send_dm(
        self,
        sender: str,
        recipient: str,
        *,
        text: str,
        topic: str = "",
        mentions: Sequence[str] = (),
        reply_to: int | None = None,
        tone: str | None = None,
    ) -> DirectMessageSent:
        """A private message; ``reply_to`` must be a DM of the same two agents."""
        if not isinstance(topic, str):
            raise E.InvalidTopicError(f"DM from {sender!r}: topic must be a string")
        seq, t = self._next()
        e = DirectMessageSent(
            seq=seq,
            t=t,
            actor=sender,
            dm_id=self._state.next_dm_id,
            recipient=recipient,
            text=text,
            topic=self._state.normalise(topic),
            mentions=self._mentions(mentions, f"DM from {sender!r}"),
            reply_to=reply_to,
            tone=tone,
        )
        self._admit(e)
        await self._admitted(e)
        return e

    async def serve_feed(
        self,
        agent: str,
        ranker: FeedRanker,
        *,
        limit: int = 20,
        since_t: float | None = None,
        until_t: float | None = None,
    ) -> list[PostView]:
        """Rank committed posts for ``agent`` and log what was shown as ``FeedServed``
        (:meth:`rank_feed`, then :meth:`log_feed`)."""
        views = await self.rank_feed(agent, ranker, limit=limit, since_t=since_t, until_t=until_t)
        await self.log_feed(agent, ranker, views)
        return views

    async def rank_feed(
        self,
        agent: str,
        ranker: FeedRanker,
        *,
        limit: int = 20,
        since_t: float | None = None,
        until_t: float | None = None,
    ) -> list[PostView]:
        """What :meth:`serve_feed` would show ``agent`` now, without logging it: a read of
        committed state that changes nothing, so the feeds of agents that wake together can be
        read ahead (several queries queued for the database thread) and logged in their order
        with :meth:`log_feed`, which is what serving them one after the other logs."""
        self._state.agent(agent, "feed reader")
        if limit < 1:
            raise ValueError(f"feed limit must be >= 1, got {limit}")
        query = FeedQuery(
            agent=agent,
            now=self.clock.now(),
            limit=limit,
            since_t=since_t,
            until_t=until_t,
            attributes=self._attributes_view,
        )
        st = self._state
        if not (st.hidden or st.downranked or st.labels):
            return (await self._ranked(agent, ranker, query))[:limit]
        # moderation drops and moves items: ask for more than the limit, and more again while
        # too few are left and the ranker had more (every hidden and downranked item among
        # ``most`` ranked ones still leaves ``limit`` served ones)
        most = limit + st.hidden + len(st.downranked)
        ask = limit + min(st.hidden + len(st.downranked), 4 * limit)
        while True:
            views = await self._ranked(agent, ranker, dataclasses.replace(query, limit=ask))
            front, back = self._moderated(agent, views)
            if len(front) >= limit or len(views) < ask or ask >= most:
                break
            ask = min(2 * ask, most)
        if keeps_last(ranker, query):
            front = front[-limit:]
            room = limit - len(front)
            kept = front + (back[len(back) - room :] if room else [])
        elif since_t is not None and shares_windows(ranker):
            # a sample of the window, moderated: sampled again, so each visible item is as
            # likely as any other to be among the ``limit`` served (its first ones would favour
            # the oldest)
            cut = cast(WindowRanker, ranker).reader_cut
            front = cut(agent, front, limit=limit, since_t=since_t)
            room = limit - len(front)
            kept = front + (cut(agent, back, limit=room, since_t=since_t) if room else [])
        else:
            kept = (front + back)[:limit]
        if st.labels:
            kept = [
                dataclasses.replace(v, label=st.labels[v.post_id]) if v.post_id in st.labels else v
                for v in kept
            ]
        return kept

    async def _ranked(self, agent: str, ranker: FeedRanker, query: FeedQuery) -> list[PostView]:
        """``ranker``'s views for ``agent``'s ``query`` without duplicates, before moderation:
        ranked once for every reader of one moment when the ranker is the same for every reader
        (a bounded window it shares out read once, then cut for each reader)."""
        view = self._feed_view
        shared = same_for_every_reader(ranker) and ranks_views(ranker)
        if shared and query.since_t is not None and shares_windows(ranker):
            return await self._window_share(agent, cast(WindowRanker, ranker), query)
        key: tuple[Any, ...] = ()
        if shared:
            now = query.now if query.until_t is None else None
            key = (ranker, self._posts_version, query.limit, query.since_t, query.until_t, now)
        if shared and self._shared_feed is not None and self._shared_feed[0] == key:
            return list(self._shared_feed[1])
        if ranks_views(ranker):
            first: dict[int, PostView] = {}
            for v in await cast(ViewRanker, ranker).rank_views(view, query):
                first.setdefault(v.post_id, v)
            views = list(first.values())
            if shared and key[1] == self._posts_version:  # no commit changed posts meanwhile
                self._shared_feed = (key, list(views))
            return views
        ids = list(dict.fromkeys(await ranker.rank(view, query)))
        return await fetch_posts(self._store.reader, ids)

    async def _window_share(
        self, agent: str, ranker: WindowRanker, query: FeedQuery
    ) -> list[PostView]:
        """``agent``'s cut of the bounded window's items, read once for all its readers (and
        every limit asked) while no commit changes the posts."""
        assert query.since_t is not None
        now = query.now if query.until_t is None else None
        key = (ranker, self._posts_version, "window", query.since_t, query.until_t, now)
        if self._shared_feed is not None and self._shared_feed[0] == key:
            whole = self._shared_feed[1]
        else:
            whole = await ranker.window_views(self._feed_view, query)
            if key[1] == self._posts_version:  # no commit changed posts meanwhile
                self._shared_feed = (key, whole)
        return ranker.reader_cut(agent, whole, limit=query.limit, since_t=query.since_t)

    async def log_feed(self, agent: str, ranker: FeedRanker, views: Sequence[PostView]) -> None:
        """Log ``views`` (from :meth:`rank_feed`) as served to ``agent`` (``FeedServed``)."""
        seq, t = self._next()
        e = FeedServed(
            seq=seq,
            t=t,
            actor=agent,
            ranker=ranker.name,
            post_ids=tuple(v.post_id for v in views),
            topics=tuple(v.topic for v in views),
        )
        self._admit(e)
        await self._admitted(e)

    def _moderated(
        self, reader: str, views: list[PostView]
    ) -> tuple[list[PostView], list[PostView]]:
        """A ranked feed with moderation applied, as ``(items, downranked items)``, each in
        the ranker's order: removed items and shadowbanned authors' items (but the reader's
        own) dropped; downranked items are served after every other item."""
        st = self._state
        kept = [v for v in views if st.served_to(v.post_id, reader)]
        if not st.downranked:
            return kept, []
        return (
            [v for v in kept if v.post_id not in st.downranked],
            [v for v in kept if v.post_id in st.downranked],
        )

    @property
    def suspensions_any(self) -> bool:
        """Whether any agent was ever suspended or removed."""
        return bool(self._state.suspensions)

    @property
    def hides_any(self) -> bool:
        """Whether moderation hides any item from anyone (removals, shadowbans)."""
        return self._state.hidden > 0

    def visible(self, reader: str, post_ids: Sequence[int]) -> list[int]:
        """The ids of ``post_ids`` moderation lets ``reader`` see (admitted state)."""
        st = self._state
        if not st.hidden:
            return list(post_ids)
        return [p for p in post_ids if st.served_to(p, reader)]

    def label_of(self, post_id: int) -> str | None:
        """The fact-check label of ``post_id``, if a moderator labelled it."""
        return self._state.labels.get(post_id)

    def suspended(self, agent: str, window: int) -> bool:
        """Whether ``agent`` is suspended (or removed) in ``window`` (admitted state)."""
        return self._state.suspended(agent, window)

    def truth_of(self, post_id: int) -> str | None:
        """The truth label of an injected post (``None`` for agents' own posts)."""
        return self._state.injected.get(post_id)

    async def record(self, event: Event) -> Event:
        """Log a runtime, coach or instrument event (:data:`RECORDABLE`: windows, guidance,
        failures, interventions, moderation, surveys); ``seq`` and ``t`` are assigned here
        (``t = clock.now()``).

        Held to the checks of every event: text UTF-8 cannot encode is an
        :class:`~.errors.InvalidTextError`. An ``ActionFailed`` is the exception: its text
        (``stage``, ``reason``, ``detail`` and the strings of ``action``) quotes what went
        wrong, often the very text refused or a plug-in's error message, and a failure's record
        must not fail, so it is stored with each lone surrogate replaced by U+FFFD
        (:func:`friendsim._unicode.clean_value`, the providers' cleaning of answers)."""
        if not isinstance(event, RECORDABLE):
            raise ValueError(
                f"record() takes {[c.__name__ for c in RECORDABLE]}, not {type(event).__name__}; "
                "use the platform's commands for state changes"
            )
        seq, t = self._next()
        if type(event) is ActionFailed:
            e: Event = dataclasses.replace(
                event,
                seq=seq,
                t=t,
                stage=clean_value(event.stage),
                reason=clean_value(event.reason),
                detail=clean_value(event.detail),
                action=clean_value(event.action),
            )
        else:
            e = dataclasses.replace(event, seq=seq, t=t)
        self._admit(e)
        await self._admitted(e)
        return e

    async def ingest(self, event: Event) -> Event:
        """Admit a fully formed event (e.g. from an imported log) under the same validation as
        commands; its ``seq`` must be ``last_seq + 1`` and its ``t`` not before the last event's.
        The clock moves forward to ``event.t``."""
        self._admit(event)
        if event.t > self.clock.now():
            self.clock.advance_to(event.t)
        await self._admitted(event)
        return event

    # --- reads --------------------------------------------------------------------------------

    async def agent_ids(self) -> list[str]:
        """Registered agents in registration order (admitted state)."""
        return list(self._state.agents)

    async def agent_attributes(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self._state.agents.items()}

    async def followees(self, agent: str) -> set[str]:
        """Who ``agent`` follows (admitted state, including not-yet-flushed follows)."""
        self._state.agent(agent)
        return set(self._state.followees[agent])

    async def followers(self, agent: str) -> set[str]:
        """Who follows ``agent`` (committed state, via the ``follows(target)`` index)."""
        self._state.agent(agent)
        rows = await self._store.reader.execute_fetchall(
            "SELECT follower FROM follows WHERE target = ?", (agent,)
        )
        return {r[0] for r in rows}

    async def get_post(self, post_id: int) -> PostView:
        views = await fetch_posts(self._store.reader, [post_id])
        if not views:
            raise E.UnknownPostError(f"unknown post {post_id!r} (or not committed yet)")
        return views[0]

    async def posts_between(self, since_t: float, until_t: float) -> list[PostView]:
        """Every public item with ``since_t <= t < until_t``, oldest first (committed)."""
        return await posts_between(self._store.reader, since_t, until_t)

    async def dms_to(self, agent: str, since_t: float, until_t: float) -> list[DirectMessageSent]:
        """DMs received by ``agent`` with ``since_t <= t < until_t``, in seq order (committed)."""
        return await dms_to(self._store.reader, agent, since_t, until_t)

    async def dms_since(
        self, since: Mapping[str, float], until_t: float
    ) -> dict[str, list[DirectMessageSent]]:
        """For every ``agent, since_t`` of ``since``, the committed DMs it received with
        ``since_t <= t < until_t`` in seq order (what :meth:`dms_to` gives it; agents with none
        are left out): one query for the agents that wake together."""
        for agent in since:
            self._state.agent(agent, "DM reader")
        return await dms_since(self._store.reader, since, until_t)

    async def dms_between(
        self, since_t: float, until_t: float
    ) -> dict[str, list[DirectMessageSent]]:
        """Every committed DM with ``since_t <= t < until_t`` by recipient, each list in seq
        order (what :meth:`dms_to` gives each recipient): one query for all the readers of one
        window, such as the agents of a round."""
        return await dms_between(self._store.reader, since_t, until_t)

    async def events(
        self, from_seq: int = 1, to_seq: int | None = None, *, page: int = 1000
    ) -> AsyncIterator[Event]:
        """Committed events with ``from_seq <= seq <= to_seq``, read in pages."""
        nxt = from_seq
        while to_seq is None or nxt <= to_seq:
            batch = await self._store.read_events(nxt, page, to_seq)
            for e in batch:
                yield e
            if len(batch) < page:
                return
            nxt = batch[-1].seq + 1
