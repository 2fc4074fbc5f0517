"""The feed-ranker extension point: one small async protocol, rankers as sibling modules.

A ranker turns a :class:`FeedQuery` into post ids, best first, by reading the committed tables
through the :class:`FeedView` it is given: a read-only view (SELECT / WITH statements only, on a
connection SQLite itself holds to ``query_only``), never the database connection, so a ranker
can neither write nor see uncommitted state. Rankers must keep their cost independent of the total
number of posts: they read bounded candidate sets through indexes (a recent window on
``posts(t)``, per-author ``posts(author, t)``, ``LIMIT``). ``Platform.serve_feed`` turns the ids
into :class:`~friendsim.platform.views.PostView` s and logs a ``FeedServed`` event.

Time window: items with ``since_t <= t < until_t``; when ``until_t`` is None the window ends at
``now`` inclusive; when ``since_t`` is None each ranker uses its own look-back ``horizon``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import aiosqlite

from ..views import PostView

_READ_ONLY = re.compile(r"^\s*(SELECT|WITH)\b", re.IGNORECASE)


class FeedView:
    """Read-only access to the platform's committed tables (what rankers receive).

    ``execute_fetchall(sql, params)`` runs one ``SELECT``/``WITH`` statement and returns its
    rows; anything else raises ``PermissionError``. The tables are the platform's materialised
    ones (``posts``, ``votes``, ``follows``, ``agents``, ``mentions``, ``dms``, ``exposures``;
    see ``friendsim/platform/migrations``).
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute_fetchall(
        self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()
    ) -> Iterable[Any]:
        if not _READ_ONLY.match(sql) or ";" in sql.strip().rstrip(";"):
            raise PermissionError(f"a feed ranker may only run one SELECT statement: {sql[:80]!r}")
        return await self._conn.execute_fetchall(sql, parameters)


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedQuery:
    agent: str
    now: float
    limit: int
    since_t: float | None = None
    until_t: float | None = None
    attributes: Mapping[str, Mapping[str, Any]] | None = None
    """Persona attributes of every agent, when the caller has them in memory (Platform does);
    rankers that need them fall back to reading the ``agents`` table when None."""


@runtime_checkable
class FeedRanker(Protocol):
    name: str

    async def rank(self, db: FeedView, query: FeedQuery) -> list[int]:
        """Post ids for ``query.agent``, best first, at most ``query.limit``."""
        ...


@runtime_checkable
class ViewRanker(FeedRanker, Protocol):
    """Optional fast path: a ranker that returns the views directly, in one round trip.

    ``Platform.serve_feed`` uses :meth:`rank_views` when a ranker has it (same order and ids as
    :meth:`rank`), which saves the separate fetch of the posts' rows.
    """

    async def rank_views(self, db: FeedView, query: FeedQuery) -> list[PostView]: ...


@runtime_checkable
class WindowRanker(ViewRanker, Protocol):
    """Optional: a ranker that shares a bounded window out among its readers (the ``full``
    ranker when a round holds more items than the limit). ``Platform.serve_feed`` reads
    :meth:`window_views` once for all the readers of one moment, then gives each its
    :meth:`reader_cut` (what :meth:`rank_views` returns for that reader)."""

    async def window_views(self, db: FeedView, query: FeedQuery) -> list[PostView]: ...

    def reader_cut(
        self, agent: str, views: Sequence[PostView], *, limit: int, since_t: float
    ) -> list[PostView]: ...


def same_for_every_reader(ranker: FeedRanker) -> bool:
    """Whether ``ranker`` declares ``same_for_every_reader = True``: its ranking reads neither
    ``query.agent`` nor ``query.attributes``, only the time window, the limit and the committed
    posts, so ``Platform.serve_feed`` ranks once for all the readers of one moment (200 agents
    of a round read the same full-visibility feed) and applies moderation per reader after."""
    return getattr(ranker, "same_for_every_reader", False) is True


def shares_windows(ranker: FeedRanker) -> bool:
    """Whether ``ranker`` is a :class:`WindowRanker` (checked once per class, as
    :func:`ranks_views`)."""
    kind = type(ranker)
    known = _WINDOW_RANKERS.get(kind)
    if known is None:
        known = _WINDOW_RANKERS[kind] = isinstance(ranker, WindowRanker)
    return known


def keeps_last(ranker: FeedRanker, query: FeedQuery) -> bool:
    """Whether ``ranker`` lists ``query``'s feed in display order with its best items last,
    declared by a method ``keeps_last(query)`` (the full-visibility feed without ``since_t``: the
    most recent items, oldest first). A ranker's list is otherwise best first. When moderation
    hides items, ``Platform.rank_feed`` asks for more than the limit and keeps the best ones:
    the last of such a list, the first of any other."""
    method = getattr(ranker, "keeps_last", None)
    return callable(method) and method(query) is True


def ranks_views(ranker: FeedRanker) -> bool:
    """Whether ``ranker`` is a :class:`ViewRanker` (the protocol check once per class: it costs
    tens of microseconds, and a feed is served to every agent at every wake)."""
    kind = type(ranker)
    known = _VIEW_RANKERS.get(kind)
    if known is None:
        known = _VIEW_RANKERS[kind] = isinstance(ranker, ViewRanker)
    return known


_VIEW_RANKERS: dict[type, bool] = {}
_WINDOW_RANKERS: dict[type, bool] = {}


def window(query: FeedQuery, horizon: float) -> tuple[float, float, bool]:
    """``(lo, hi, hi_inclusive)`` of the query's time window."""
    lo = query.since_t if query.since_t is not None else query.now - horizon
    if query.until_t is not None:
        return lo, query.until_t, False
    return lo, query.now, True


def decay(age: float, half_life: float) -> float:
    """Exponential time decay: 1 at age 0, 1/2 after ``half_life`` seconds."""
    return 0.5 ** (max(age, 0.0) / half_life)


class StaticRanker:
    """A fake ranker for tests: returns fixed post ids (filtered to ``limit``)."""

    def __init__(self, post_ids: list[int], *, name: str = "static") -> None:
        self.name = name
        self._ids = list(post_ids)

    async def rank(self, db: FeedView, query: FeedQuery) -> list[int]:
        return self._ids[: query.limit]
