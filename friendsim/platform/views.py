"""Read models returned by feeds and queries (committed state only)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .events import DirectMessageSent


class Reads(Protocol):
    """Something that runs a read query: an ``aiosqlite.Connection`` or a ranker's FeedView."""

    async def execute_fetchall(
        self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ...
    ) -> Iterable[Any]: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class PostView:
    """A post or comment as a reader sees it, with its current counters."""

    post_id: int
    author: str
    text: str
    topic: str
    t: float
    seq: int
    parent_id: int | None
    root_id: int | None
    quote_of: int | None
    mentions: tuple[str, ...]
    likes: int
    dislikes: int
    replies: int
    tone: str | None = None
    label: str | None = None
    """A moderator's fact-check label shown with the item (set by the platform when serving)."""


_SEP = "\x1f"
POST_COLUMNS = (
    "p.post_id, p.author, p.text, p.topic, p.t, p.seq, p.parent_id, p.root_id, p.quote_of,"
    " p.likes, p.dislikes, p.replies, p.tone,"
    " (SELECT group_concat(agent, char(31)) FROM"
    "  (SELECT agent FROM mentions m WHERE m.post_id = p.post_id ORDER BY m.pos))"
)


def row_to_post(row: Sequence[Any]) -> PostView:
    (pid, author, text, topic, t, seq, parent, root, quote, likes, dislikes, replies, tone, ms) = (
        row
    )
    return PostView(
        post_id=pid,
        author=author,
        text=text,
        topic=topic,
        t=t,
        seq=seq,
        parent_id=parent,
        root_id=root,
        quote_of=quote,
        mentions=tuple(ms.split(_SEP)) if ms else (),
        likes=likes,
        dislikes=dislikes,
        replies=replies,
        tone=tone,
    )


async def fetch_posts(conn: Reads, post_ids: Sequence[int]) -> list[PostView]:
    """Views of ``post_ids`` in the given order (one query; unknown ids are left out)."""
    if not post_ids:
        return []
    rows = await conn.execute_fetchall(
        f"SELECT {POST_COLUMNS} FROM posts p WHERE p.post_id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(post_ids)),),
    )
    by_id = {v.post_id: v for v in map(row_to_post, rows)}
    return [by_id[i] for i in post_ids if i in by_id]


async def posts_between(conn: Reads, since_t: float, until_t: float) -> list[PostView]:
    """Every public item (posts and comments) with ``since_t <= t < until_t``, oldest first."""
    rows = await conn.execute_fetchall(
        f"SELECT {POST_COLUMNS} FROM posts p WHERE p.t >= ? AND p.t < ? ORDER BY p.t, p.post_id",
        (since_t, until_t),
    )
    return [row_to_post(r) for r in rows]


_DM_COLUMNS = "dm_id, seq, t, sender, recipient, text, topic, mentions, reply_to, tone"


def _row_to_dm(row: Sequence[Any]) -> DirectMessageSent:
    dm_id, seq, t, sender, recipient, text, topic, mentions, reply_to, tone = row
    return DirectMessageSent(
        seq=seq,
        t=t,
        actor=sender,
        dm_id=dm_id,
        recipient=recipient,
        text=text,
        topic=topic,
        mentions=tuple(json.loads(mentions)),
        reply_to=reply_to,
        tone=tone,
    )


async def dms_to(
    conn: Reads, agent: str, since_t: float, until_t: float
) -> list[DirectMessageSent]:
    """DMs received by ``agent`` with ``since_t <= t < until_t``, in seq order."""
    rows = await conn.execute_fetchall(
        f"SELECT {_DM_COLUMNS} FROM dms WHERE recipient = ? AND t >= ? AND t < ? ORDER BY seq",
        (agent, since_t, until_t),
    )
    return [_row_to_dm(r) for r in rows]


async def dms_since(
    conn: Reads, since: Mapping[str, float], until_t: float
) -> dict[str, list[DirectMessageSent]]:
    """For every ``agent, since_t`` of ``since``, the DMs it received with ``since_t <= t <
    until_t``, in seq order: what :func:`dms_to` gives each, in one query (one round trip to the
    database thread for all the agents that wake together, each with its own last wake)."""
    if not since:
        return {}
    rows = await conn.execute_fetchall(
        "WITH w(agent, since) AS (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')"
        " FROM json_each(?))"
        f" SELECT {', '.join('d.' + c for c in _DM_COLUMNS.split(', '))}"
        " FROM w JOIN dms d ON d.recipient = w.agent AND d.t >= w.since AND d.t < ?"
        " ORDER BY d.seq",
        (json.dumps([[a, float(t)] for a, t in since.items()]), until_t),
    )
    out: dict[str, list[DirectMessageSent]] = {}
    for r in rows:
        dm = _row_to_dm(r)
        out.setdefault(dm.recipient, []).append(dm)
    return out


async def dms_between(
    conn: Reads, since_t: float, until_t: float
) -> dict[str, list[DirectMessageSent]]:
    """Every DM with ``since_t <= t < until_t`` by recipient, each list in seq order: one query
    for all the readers of one window (what :func:`dms_to` gives each of them)."""
    rows = await conn.execute_fetchall(
        f"SELECT {_DM_COLUMNS} FROM dms WHERE t >= ? AND t < ? ORDER BY seq", (since_t, until_t)
    )
    out: dict[str, list[DirectMessageSent]] = {}
    for r in rows:
        dm = _row_to_dm(r)
        out.setdefault(dm.recipient, []).append(dm)
    return out
