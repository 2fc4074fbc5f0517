"""Interest and homophily: topics the agent engaged with, and persona overlap with authors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .base import FeedQuery, FeedView, decay, window


def attribute_overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Share of ``a``'s attributes that ``b`` has with the same value (0 when ``a`` has none)."""
    if not a:
        return 0.0
    return sum(1 for k, v in a.items() if b.get(k) == v) / len(a)


class InterestRanker:
    """Score = (topic_weight*affinity + homophily_weight*overlap + base) x 2^(-age/half_life).

    ``affinity`` is the share of the agent's recent engagement (its own posts and comments, and
    posts it liked; the ``profile_size`` most recent of each, via ``posts(author, t)`` and
    the ``votes`` primary key ``(voter, post_id)``, newest posts first) on the item's topic; ``overlap`` is :func:`attribute_overlap` of the
    agent's persona attributes with the author's. Candidates: the ``candidates`` most recent items
    of others in the window. Attributes come from ``query.attributes`` (the platform's in-memory
    map) or, without it, from the ``agents`` table, cached per connection (they are immutable).
    """

    name = "interest"

    def __init__(
        self,
        *,
        half_life: float = 21_600.0,
        horizon: float = 86_400.0,
        candidates: int = 200,
        profile_size: int = 100,
        topic_weight: float = 1.0,
        homophily_weight: float = 0.5,
        base: float = 0.05,
    ) -> None:
        if half_life <= 0 or horizon <= 0 or candidates < 1 or profile_size < 1:
            raise ValueError("half_life, horizon > 0; candidates, profile_size >= 1")
        self.half_life = half_life
        self.horizon = horizon
        self.candidates = candidates
        self.profile_size = profile_size
        self.topic_weight = topic_weight
        self.homophily_weight = homophily_weight
        self.base = base
        self._cache_db: FeedView | None = None
        self._attrs: dict[str, dict[str, Any]] = {}

    async def _attributes(self, db: FeedView, ids: set[str]) -> dict[str, Any]:
        if self._cache_db is not db:
            self._cache_db, self._attrs = db, {}
        missing = [i for i in ids if i not in self._attrs]
        if missing:
            rows = await db.execute_fetchall(
                "SELECT agent_id, attributes FROM agents"
                " WHERE agent_id IN (SELECT value FROM json_each(?))",
                (json.dumps(missing),),
            )
            for agent_id, attrs in rows:
                self._attrs[agent_id] = json.loads(attrs)
        return self._attrs

    async def profile(self, db: FeedView, agent: str) -> dict[str, float]:
        """Topic -> share of the agent's recent engagement."""
        rows = await db.execute_fetchall(
            "SELECT topic, count(*) FROM ("
            " SELECT topic FROM (SELECT topic FROM posts WHERE author = ? ORDER BY t DESC LIMIT ?)"
            " UNION ALL SELECT topic FROM (SELECT p.topic FROM votes v"
            " JOIN posts p ON p.post_id = v.post_id"
            " WHERE v.voter = ? AND v.value = 1 ORDER BY v.post_id DESC LIMIT ?)"
            ") GROUP BY topic",
            (agent, self.profile_size, agent, self.profile_size),
        )
        total = sum(r[1] for r in rows)
        return {r[0]: r[1] / total for r in rows} if total else {}

    async def rank(self, db: FeedView, query: FeedQuery) -> list[int]:
        lo, hi, inclusive = window(query, self.horizon)
        op = "<=" if inclusive else "<"
        profile = await self.profile(db, query.agent)
        rows = list(
            await db.execute_fetchall(
                "SELECT post_id, t, topic, author FROM posts"
                f" WHERE t >= ? AND t {op} ? AND author <> ? ORDER BY t DESC LIMIT ?",
                (lo, hi, query.agent, max(self.candidates, query.limit)),
            )
        )
        attrs: Mapping[str, Any]
        if query.attributes is not None:
            attrs = query.attributes
        else:
            attrs = await self._attributes(db, {r[3] for r in rows} | {query.agent})
        mine = attrs.get(query.agent, {})
        scored = []
        for pid, t, topic, author in rows:
            score = (
                self.topic_weight * profile.get(topic, 0.0)
                + self.homophily_weight * attribute_overlap(mine, attrs.get(author, {}))
                + self.base
            ) * decay(query.now - t, self.half_life)
            scored.append((-score, -t, -pid, pid))
        scored.sort()
        return [s[3] for s in scored[: query.limit]]
