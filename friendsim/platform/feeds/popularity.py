"""Popularity: engagement (votes and replies) with exponential time decay."""

from __future__ import annotations

import sqlite3

from ..views import POST_COLUMNS, PostView, fetch_posts, row_to_post
from .base import FeedQuery, FeedView, decay, window


class PopularityRanker:
    """Score = (1 + likes + reply_weight*replies - dislike_weight*dislikes)+ x 2^(-age/half_life).

    Candidates are the ``candidates`` most recent items of the window (``posts(t)`` index), other
    agents' only; the engagement term is floored at 0 before adding 1. Ties: newer first.
    """

    name = "popularity"

    def __init__(
        self,
        *,
        half_life: float = 3_600.0,
        horizon: float = 86_400.0,
        candidates: int = 500,
        reply_weight: float = 2.0,
        dislike_weight: float = 1.0,
    ) -> None:
        if half_life <= 0 or horizon <= 0 or candidates < 1:
            raise ValueError("half_life and horizon must be > 0 and candidates >= 1")
        self.half_life = half_life
        self.horizon = horizon
        self.candidates = candidates
        self.reply_weight = reply_weight
        self.dislike_weight = dislike_weight
        self._sql_math: bool | None = None

    async def rank_views(self, db: FeedView, query: FeedQuery) -> list[PostView]:
        lo, hi, inclusive = window(query, self.horizon)
        op = "<=" if inclusive else "<"
        n = max(self.candidates, query.limit)
        if self._sql_math is not False:
            # score inside SQLite (math functions), then build the rows of the top ``limit`` only
            try:
                rows = await db.execute_fetchall(
                    "WITH cand AS (SELECT post_id, t, likes, dislikes, replies FROM posts"
                    f" WHERE t >= ? AND t {op} ? AND author <> ? ORDER BY t DESC LIMIT ?),"
                    " top AS (SELECT post_id, t, (1.0 + max(likes + ? * replies - ? * dislikes,"
                    " 0.0)) * pow(0.5, max(? - t, 0.0) / ?) AS score FROM cand"
                    " ORDER BY score DESC, t DESC, post_id DESC LIMIT ?)"
                    f" SELECT {POST_COLUMNS} FROM top JOIN posts p ON p.post_id = top.post_id"
                    " ORDER BY top.score DESC, top.t DESC, top.post_id DESC",
                    (
                        lo,
                        hi,
                        query.agent,
                        n,
                        self.reply_weight,
                        self.dislike_weight,
                        query.now,
                        self.half_life,
                        query.limit,
                    ),
                )
                self._sql_math = True
                return [row_to_post(r) for r in rows]
            except sqlite3.OperationalError as exc:
                if "no such function" not in str(exc):
                    raise
                self._sql_math = False  # SQLite built without math functions: score in Python
        rows = await db.execute_fetchall(
            "SELECT post_id, t, likes, dislikes, replies FROM posts"
            f" WHERE t >= ? AND t {op} ? AND author <> ? ORDER BY t DESC LIMIT ?",
            (lo, hi, query.agent, n),
        )
        scored = []
        for pid, t, likes, dislikes, replies in rows:
            engagement = likes + self.reply_weight * replies - self.dislike_weight * dislikes
            score = (1.0 + max(engagement, 0.0)) * decay(query.now - t, self.half_life)
            scored.append((-score, -t, -pid, pid))
        scored.sort()
        return await fetch_posts(db, [s[3] for s in scored[: query.limit]])

    async def rank(self, db: FeedView, query: FeedQuery) -> list[int]:
        return [v.post_id for v in await self.rank_views(db, query)]
