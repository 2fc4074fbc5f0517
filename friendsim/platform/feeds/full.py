"""Full visibility (the paper's platform): every public item of the time window, oldest first."""

from __future__ import annotations

from ..views import POST_COLUMNS, PostView, row_to_post
from .base import FeedQuery, FeedView


class FullVisibilityRanker:
    """All posts and comments with ``since_t <= t < until_t`` in time order, up to ``limit``.

    Without ``since_t`` it shows the ``limit`` most recent items (still oldest first). The query
    walks the ``posts(t)`` index from the window edge, so it reads at most ``limit`` rows.
    """

    name = "full"
    same_for_every_reader = True

    async def rank_views(self, db: FeedView, query: FeedQuery) -> list[PostView]:
        hi = query.until_t if query.until_t is not None else query.now
        op = "<" if query.until_t is not None else "<="
        if query.since_t is None:
            rows = await db.execute_fetchall(
                f"SELECT {POST_COLUMNS} FROM posts p WHERE p.t {op} ?"
                " ORDER BY p.t DESC, p.post_id DESC LIMIT ?",
                (hi, query.limit),
            )
            return [row_to_post(r) for r in reversed(list(rows))]
        rows = await db.execute_fetchall(
            f"SELECT {POST_COLUMNS} FROM posts p WHERE p.t >= ? AND p.t {op} ?"
            " ORDER BY p.t, p.post_id LIMIT ?",
            (query.since_t, hi, query.limit),
        )
        return [row_to_post(r) for r in rows]

    async def rank(self, db: FeedView, query: FeedQuery) -> list[int]:
        return [v.post_id for v in await self.rank_views(db, query)]
