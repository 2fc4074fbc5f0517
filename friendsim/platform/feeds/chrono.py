"""Reverse-chronological timeline of the accounts an agent follows."""

from __future__ import annotations

import aiosqlite

from .base import FeedQuery, window


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

    async def rank(self, db: aiosqlite.Connection, query: FeedQuery) -> list[int]:
        lo, hi, inclusive = window(query, self.horizon)
        op = "<=" if inclusive else "<"
        rows = await db.execute_fetchall(
            "SELECT p.post_id FROM follows f JOIN posts p ON p.author = f.target"
            f" WHERE f.follower = ? AND p.t >= ? AND p.t {op} ?"
            " ORDER BY p.t DESC, p.post_id DESC LIMIT ?",
            (query.agent, lo, hi, query.limit),
        )
        return [r[0] for r in rows]
