"""Full visibility (the paper's platform): every public item of the time window, oldest first."""

from __future__ import annotations

import aiosqlite

from .base import FeedQuery


class FullVisibilityRanker:
    """All posts and comments with ``since_t <= t < until_t`` in time order, up to ``limit``.

    Without ``since_t`` it shows the ``limit`` most recent items (still oldest first). The query
    walks the ``posts(t)`` index from the window edge, so it reads at most ``limit`` rows.
    """

    name = "full"

    async def rank(self, db: aiosqlite.Connection, query: FeedQuery) -> list[int]:
        hi = query.until_t if query.until_t is not None else query.now
        op = "<" if query.until_t is not None else "<="
        if query.since_t is None:
            rows = await db.execute_fetchall(
                f"SELECT post_id FROM posts WHERE t {op} ? ORDER BY t DESC, post_id DESC LIMIT ?",
                (hi, query.limit),
            )
            return [r[0] for r in reversed(list(rows))]
        rows = await db.execute_fetchall(
            f"SELECT post_id FROM posts WHERE t >= ? AND t {op} ? ORDER BY t, post_id LIMIT ?",
            (query.since_t, hi, query.limit),
        )
        return [r[0] for r in rows]
