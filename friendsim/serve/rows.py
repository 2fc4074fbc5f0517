"""The rows a view of the live page shows when the page no longer holds them.

The page keeps only the newest :data:`RECENT` rows it can show (``app.js``'s ``MAX_ITEMS``), so
a long log costs it a bounded amount of memory; a window it has let go of, and an agent's page,
are read here instead, straight from the log (read-only, :mod:`.logfile`):

* :func:`timeline` — the newest ``limit`` rows of :data:`TIMELINE_KINDS` with ``lo <= seq <=
  hi``, or, for one agent, every row its page shows (its actions, failures and the coach's tips
  to it) up to ``hi``;
* with them, each post's current votes (``[up, down]``, as the page counts them from the
  ``vote_*`` rows) and the author of each post a returned reply answers.

Rows are the objects of ``friendsim log export``'s lines, newest first.
"""

from __future__ import annotations

import json
from typing import Any

from friendsim.serve.logfile import LogFile

TIMELINE_KINDS = (
    "action_failed",
    "agent_registered",
    "agent_suspended",
    "dm_sent",
    "followed",
    "guidance_issued",
    "intervention_applied",
    "item_injected",
    "moderation_decided",
    "post_created",
    "unfollowed",
    "window_ended",
    "window_started",
)
"""The kinds the page's timeline shows a row for (``itemFor`` in ``app.js``)."""

AGENT_KINDS = ("post_created", "dm_sent", "followed", "unfollowed", "action_failed")
"""The kinds an agent's page lists when the agent is the actor (with the tips it was sent)."""

RECENT = 400
"""The most rows one timeline request returns (``MAX_ITEMS`` in ``app.js``)."""

VOTE_KINDS = ("vote_cast", "vote_changed", "vote_cleared")


def timeline(
    log: LogFile,
    *,
    lo: int = 0,
    hi: int | None = None,
    limit: int = RECENT,
    agent: str | None = None,
) -> dict[str, Any]:
    """``{"rows", "votes", "authors"}`` as the module says (blocking; call from a thread).
    ``limit`` bounds the timeline's rows; an agent's page gets all of its rows up to ``hi``.

    Raises :class:`~friendsim.serve.logfile.LogReadError` naming the log if it cannot be read."""
    top = hi if hi is not None else (1 << 62)
    if agent is None:
        marks = ",".join("?" * len(TIMELINE_KINDS))
        sql = (
            f"SELECT seq, t, kind, actor, payload FROM events WHERE seq >= ? AND seq <= ?"
            f" AND kind IN ({marks}) ORDER BY seq DESC LIMIT ?"
        )
        params: tuple[Any, ...] = (lo, top, *TIMELINE_KINDS, max(0, limit))
    else:
        marks = ",".join("?" * len(AGENT_KINDS))
        sql = (
            "SELECT seq, t, kind, actor, payload FROM events WHERE seq >= ? AND seq <= ? AND"
            f" ((actor = ? AND kind IN ({marks})) OR"
            " (kind = 'guidance_issued' AND json_extract(payload, '$.agent') = ?))"
            " ORDER BY seq DESC"
        )
        params = (lo, top, agent, *AGENT_KINDS, agent)
    rows = [json.loads(line) for _, line in log.read_where(sql, params)]
    posts = [r["payload"]["post_id"] for r in rows if r["kind"] == "post_created"]
    parents = [
        r["payload"]["parent_id"]
        for r in rows
        if r["kind"] == "post_created" and r["payload"].get("parent_id") is not None
    ]
    return {"rows": rows, "votes": _votes(log, posts), "authors": _authors(log, parents)}


def _votes(log: LogFile, posts: list[int]) -> dict[str, list[int]]:
    if not posts:
        return {}
    marks = ",".join("?" * len(VOTE_KINDS))
    found = log.query(
        "SELECT kind, actor, json_extract(payload, '$.post_id'), json_extract(payload, '$.value')"
        f" FROM events WHERE kind IN ({marks}) AND json_extract(payload, '$.post_id') IN"
        " (SELECT value FROM json_each(?)) ORDER BY seq",
        (*VOTE_KINDS, json.dumps(posts)),
    )
    by_post: dict[int, dict[str, int]] = {p: {} for p in posts}
    for kind, actor, post, value in found:
        voters = by_post.setdefault(post, {})
        if kind == "vote_cleared":
            voters.pop(actor, None)
        else:
            voters[actor] = value
    return {
        str(p): [sum(1 for v in vs.values() if v > 0), sum(1 for v in vs.values() if v < 0)]
        for p, vs in by_post.items()
    }


def _authors(log: LogFile, posts: list[int]) -> dict[str, str]:
    if not posts:
        return {}
    found = log.query(
        "SELECT json_extract(payload, '$.post_id'), actor FROM events WHERE kind = 'post_created'"
        " AND json_extract(payload, '$.post_id') IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted(set(posts))),),
    )
    return {str(p): a for p, a in found}
