"""Full visibility (the paper's platform): every public item of the time window, oldest first."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..views import POST_COLUMNS, PostView, row_to_post
from .base import FeedQuery, FeedView

WHOLE_WINDOW = 2**62
"""The ``LIMIT`` that reads every item of a bounded window (:meth:`FullVisibilityRanker.window_views`)."""


class FullVisibilityRanker:
    """All posts and comments with ``since_t <= t < until_t`` in time order, up to ``limit``.

    Without ``since_t`` it shows the ``limit`` most recent items (still oldest first). The query
    walks the ``posts(t)`` index from the window edge, so it reads at most ``limit`` rows.

    A bounded window (a round) that holds more than ``limit`` items is shared out: each reader
    is shown its own seeded sample of ``limit`` of them (:meth:`reader_cut`), still oldest first.
    Every item of a round shares one time and items are numbered in agent order, so cutting the
    same first ``limit`` for everyone would hide the same agents' content from everyone, every
    round. A window that fits is shown whole, to everyone alike.
    """

    name = "full"
    same_for_every_reader = True

    def keeps_last(self, query: FeedQuery) -> bool:
        """Without ``since_t`` the feed is the most recent items, listed oldest first."""
        return query.since_t is None

    async def rank_views(self, db: FeedView, query: FeedQuery) -> list[PostView]:
        if query.since_t is None:
            return await self._recent(db, query)
        return self.reader_cut(
            query.agent,
            await self.window_views(db, query),
            limit=query.limit,
            since_t=query.since_t,
        )

    async def rank(self, db: FeedView, query: FeedQuery) -> list[int]:
        return [v.post_id for v in await self.rank_views(db, query)]

    async def window_views(self, db: FeedView, query: FeedQuery) -> list[PostView]:
        """Every item of the bounded window ``since_t <= t < until_t`` (``<= now`` without
        ``until_t``), in time order: the same for every reader, so the platform reads it once
        for all the readers of one moment and gives each its :meth:`reader_cut`."""
        hi = query.until_t if query.until_t is not None else query.now
        op = "<" if query.until_t is not None else "<="
        rows = await db.execute_fetchall(
            f"SELECT {POST_COLUMNS} FROM posts p WHERE p.t >= ? AND p.t {op} ?"
            " ORDER BY p.t, p.post_id LIMIT ?",
            (query.since_t, hi, WHOLE_WINDOW),
        )
        return [row_to_post(r) for r in rows]

    @staticmethod
    def reader_cut(
        agent: str, views: Sequence[PostView], *, limit: int, since_t: float
    ) -> list[PostView]:
        """``agent``'s share of the window's ``views``: all of them when they fit in ``limit``,
        else a sample of ``limit`` drawn by a generator seeded from the reader and the window
        (so each item reaches about ``limit / len(views)`` of the readers, and a reader sees
        other authors each round), in time order."""
        if len(views) <= limit:
            return list(views)
        picked = random.Random(f"full-feed/{agent}/{since_t!r}").sample(range(len(views)), limit)
        return [views[i] for i in sorted(picked)]

    async def _recent(self, db: FeedView, query: FeedQuery) -> list[PostView]:
        op = "<" if query.until_t is not None else "<="
        hi = query.until_t if query.until_t is not None else query.now
        rows = await db.execute_fetchall(
            f"SELECT {POST_COLUMNS} FROM posts p WHERE p.t {op} ?"
            " ORDER BY p.t DESC, p.post_id DESC LIMIT ?",
            (hi, query.limit),
        )
        return [row_to_post(r) for r in reversed(list(rows))]
