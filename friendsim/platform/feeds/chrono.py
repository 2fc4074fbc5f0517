"""Reverse-chronological timeline of the accounts an agent follows."""

from __future__ import annotations

from ..views import POST_COLUMNS, PostView, row_to_post
from .base import FeedQuery, FeedView, window


class ChronologicalRanker:
    """Items by the agent's followees, newest first, within ``horizon`` seconds (or the window).

    Reads ``follows`` by primary key and each followee's items through ``posts(author, t)``
    restricted to the window, so the cost depends on followees x their recent items only.
    """

    name = "chrono"

    def __init__(self, *, horizon: float = 86_400.0) -> None:
        if horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {horizon}")
        self.horizon = horizon

    async def rank_views(self, db: FeedView, query: FeedQuery) -> list[PostView]:
        lo, hi, inclusive = window(query, self.horizon)
        op = "<=" if inclusive else "<"
        # rank on the index columns first; build the full rows of the top ``limit`` only
        rows = await db.execute_fetchall(
            "WITH top AS (SELECT p.post_id, p.t FROM follows f JOIN posts p ON p.author = f.target"
            f" WHERE f.follower = ? AND p.t >= ? AND p.t {op} ?"
            " ORDER BY p.t DESC, p.post_id DESC LIMIT ?)"
            f" SELECT {POST_COLUMNS} FROM top JOIN posts p ON p.post_id = top.post_id"
            " ORDER BY top.t DESC, top.post_id DESC",
            (query.agent, lo, hi, query.limit),
        )
        return [row_to_post(r) for r in rows]

    async def rank(self, db: FeedView, query: FeedQuery) -> list[int]:
        return [v.post_id for v in await self.rank_views(db, query)]
