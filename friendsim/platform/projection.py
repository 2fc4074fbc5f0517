"""Projection: the effect of each event on the materialised tables.

``PROJECTIONS`` maps every event kind to ONE pure function ``event -> ops``; the live store and
replay both use it (through :func:`plan` and :func:`apply_events`), so a rebuilt database equals the
live one by construction. An op is ``(phase, sql, params)``; kinds without a table effect (windows,
guidance, failures) project to nothing but are still logged.

Batching. :func:`plan` turns a batch of events into few ``executemany`` calls. It inserts all
``events`` rows first and then the ops of each table in table order (agents, posts, mentions, dms,
exposures, votes, follows, post counters), keeping event order *within* a table and grouping
consecutive identical statements. This reordering is exact: each op writes one table, the order of
ops on any one table is unchanged, and every foreign key points to a table of an earlier phase (or
to an earlier row of the same table), so each insert still finds its parent. Counter deltas on posts
(likes, dislikes, replies) commute and are summed per post into one UPDATE each; the summed final
values equal the sequential ones, and they are applied after the batch's posts exist.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import aiosqlite

from friendsim.vocabulary import Tip

from .events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    AgentRegistered,
    AgentSuspended,
    DirectMessageSent,
    Event,
    FeedServed,
    Followed,
    GuidanceIssued,
    ItemInjected,
    ModerationDecided,
    PostCreated,
    SurveyAnswered,
    Unfollowed,
    VoteCast,
    VoteChanged,
    VoteCleared,
    log_json,
)

EVENTS, AGENTS, POSTS, MENTIONS, DMS, EXPOSURES, VOTES, FOLLOWS, COUNTERS, INSTRUMENTS = range(10)
_N_PHASES = 10

Op = tuple[int, str, tuple[Any, ...]]

SQL_EVENT = "INSERT INTO events(seq, t, kind, actor, payload) VALUES (?, ?, ?, ?, ?)"
SQL_AGENT = "INSERT INTO agents(agent_id, name, attributes, t, seq) VALUES (?, ?, ?, ?, ?)"
SQL_POST = (
    "INSERT INTO posts(post_id, seq, t, author, text, topic, parent_id, root_id, quote_of, tone)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_MENTION = "INSERT INTO mentions(post_id, pos, agent) VALUES (?, ?, ?)"
SQL_VOTE_SET = (
    "INSERT INTO votes(voter, post_id, value, t, seq) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(voter, post_id) DO UPDATE SET value = excluded.value, t = excluded.t,"
    " seq = excluded.seq"
)
SQL_VOTE_DELETE = "DELETE FROM votes WHERE voter = ? AND post_id = ?"
SQL_FOLLOW = "INSERT INTO follows(follower, target, t, seq) VALUES (?, ?, ?, ?)"
SQL_UNFOLLOW = "DELETE FROM follows WHERE follower = ? AND target = ?"
SQL_DM = (
    "INSERT INTO dms(dm_id, seq, t, sender, recipient, text, topic, mentions, reply_to, tone)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_EXPOSURE = "INSERT INTO exposures(seq, rank, agent, post_id, topic, ranker, t) VALUES (?, ?, ?, ?, ?, ?, ?)"
SQL_COUNTERS = (
    "UPDATE posts SET likes = likes + ?, dislikes = dislikes + ?, replies = replies + ?"
    " WHERE post_id = ?"
)

SQL_INJECTED = (
    "INSERT INTO injected_items(post_id, item_id, truth, source, seq) VALUES (?, ?, ?, ?, ?)"
)
SQL_MODERATION = (
    "INSERT INTO moderation(seq, t, window, moderator, action, post_id, author, label,"
    " from_window, until_window) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_SUSPENSION = (
    "INSERT INTO suspensions(seq, agent, from_window, until_window, by) VALUES (?, ?, ?, ?, ?)"
)
SQL_ANSWER = (
    "INSERT INTO survey_answers(seq, agent, survey, window, question, value)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)

_NOTHING: tuple[Op, ...] = ()

_ENCODE = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_C_ENCODER = (
    json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )
    if json.encoder.c_make_encoder is not None  # type: ignore[attr-defined]
    else None
)
"""The C encoder ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` uses,
built once instead of per call (same bytes; tested against ``events.payload_json``)."""
_ENVELOPE = frozenset({"seq", "t", "actor"})
_PAYLOAD_FIELDS: dict[str, tuple[tuple[str, bool], ...]] = {
    kind: tuple(
        (f.name, "tuple" in str(f.type) or "Mapping" in str(f.type))
        for f in dataclasses.fields(cls)
        if f.name not in _ENVELOPE
    )
    for kind, cls in EVENT_TYPES.items()
}


_FLAT = frozenset({str, int, float, bool, type(None)})


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        flat = _FLAT
        for v in value:
            if type(v) not in flat:
                return [_thaw(v) for v in value]
        return list(value)  # ids, topics: the commonest containers, with nothing to convert
    if type(value) is Tip:  # before the Mapping check, which goes through the ABC machinery
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, Tip):
        return value.to_dict()
    return value


def payload_json(e: Event) -> str:
    """Same bytes as :func:`friendsim.platform.events.payload_json` (tested), about 3x faster:
    the field list is precomputed per kind and only container fields are converted."""
    d: dict[str, Any] = {"v": SCHEMA_VERSION}
    for name, container in _PAYLOAD_FIELDS[e.kind]:
        value = getattr(e, name)
        d[name] = _thaw(value) if container and value is not None else value
    try:
        if _C_ENCODER is not None:
            return "".join(_C_ENCODER(d, 0))
        return _ENCODE(d)
    except ValueError:  # a non-finite float: stored as null (events.payload_json)
        return log_json(d)


_STR = json.encoder.encode_basestring  # what the encoders above use for strings
_VOTE_CAST_HEAD = '{"author":'
_VOTE_CAST_V = f',"v":{int(SCHEMA_VERSION)},"value":'


def vote_cast_payload(e: VoteCast) -> str:
    """:func:`payload_json` of a ``VoteCast`` whose ``post_id`` and ``value`` are ints, written
    directly (same bytes, tested): the log holds more votes than any other kind."""
    return f'{_VOTE_CAST_HEAD}{_STR(e.author)},"post_id":{e.post_id}{_VOTE_CAST_V}{e.value}}}'


_GUIDANCE_V = f'],"v":{int(SCHEMA_VERSION)},"window":'
_BOOL = {True: "true", False: "false"}


def _tip_json(tip: Tip) -> str | None:
    """A tip's JSON object as :func:`payload_json` writes it (keys sorted), or ``None`` when a
    field is not of its plain type (then the general encoder decides)."""
    action, target, topic = tip.action, tip.target, tip.topic
    invite, tone, text = tip.invite_mention, tip.tone, tip.text
    if not (
        type(action) is str
        and type(topic) is str
        and type(tone) is str
        and type(text) is str
        and type(invite) is bool
        and (target is None or type(target) is str)
    ):
        return None
    return (
        f'{{"action":{_STR(action)},"invite_mention":{_BOOL[invite]},'
        f'"target":{"null" if target is None else _STR(target)},"text":{_STR(text)},'
        f'"tone":{_STR(tone)},"topic":{_STR(topic)}}}'
    )


def guidance_payload(e: GuidanceIssued) -> str:
    """:func:`payload_json` of a ``GuidanceIssued`` of plain types, written directly (same
    bytes, tested): the coach records one for every agent at every window's end, and the
    general path converts each tip to a dict first. Anything else takes the general path."""
    agent, coach, window, tips = e.agent, e.coach, e.window, e.tips
    if type(agent) is not str or type(coach) is not str or type(window) is not int:
        return payload_json(e)
    if type(tips) is not tuple:
        return payload_json(e)
    parts = []
    for tip in tips:
        if type(tip) is not Tip or (part := _tip_json(tip)) is None:
            return payload_json(e)
        parts.append(part)
    return (
        f'{{"agent":{_STR(agent)},"coach":{_STR(coach)},"tips":[{",".join(parts)}'
        f"{_GUIDANCE_V}{window}}}"
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _agent_registered(e: AgentRegistered) -> Sequence[Op]:
    return ((AGENTS, SQL_AGENT, (e.actor, e.name, _json(dict(e.attributes)), e.t, e.seq)),)


def _post_created(e: PostCreated) -> Sequence[Op]:
    ops: list[Op] = [
        (
            POSTS,
            SQL_POST,
            (
                e.post_id,
                e.seq,
                e.t,
                e.actor,
                e.text,
                e.topic,
                e.parent_id,
                e.root_id,
                e.quote_of,
                e.tone,
            ),
        )
    ]
    for pos, agent in enumerate(e.mentions):
        ops.append((MENTIONS, SQL_MENTION, (e.post_id, pos, agent)))
    if e.parent_id is not None:
        ops.append((COUNTERS, "", (e.parent_id, 0, 0, 1)))
    return ops


def _likes(value: int) -> tuple[int, int]:
    return (1, 0) if value > 0 else (0, 1)


def _vote_cast(e: VoteCast) -> Sequence[Op]:
    dl, dd = _likes(e.value)
    return (
        (VOTES, SQL_VOTE_SET, (e.actor, e.post_id, e.value, e.t, e.seq)),
        (COUNTERS, "", (e.post_id, dl, dd, 0)),
    )


def _vote_changed(e: VoteChanged) -> Sequence[Op]:
    nl, nd = _likes(e.value)
    ol, od = _likes(e.old)
    return (
        (VOTES, SQL_VOTE_SET, (e.actor, e.post_id, e.value, e.t, e.seq)),
        (COUNTERS, "", (e.post_id, nl - ol, nd - od, 0)),
    )


def _vote_cleared(e: VoteCleared) -> Sequence[Op]:
    ol, od = _likes(e.old)
    return (
        (VOTES, SQL_VOTE_DELETE, (e.actor, e.post_id)),
        (COUNTERS, "", (e.post_id, -ol, -od, 0)),
    )


def _followed(e: Followed) -> Sequence[Op]:
    return ((FOLLOWS, SQL_FOLLOW, (e.actor, e.target, e.t, e.seq)),)


def _unfollowed(e: Unfollowed) -> Sequence[Op]:
    return ((FOLLOWS, SQL_UNFOLLOW, (e.actor, e.target)),)


def _dm_sent(e: DirectMessageSent) -> Sequence[Op]:
    return (
        (
            DMS,
            SQL_DM,
            (
                e.dm_id,
                e.seq,
                e.t,
                e.actor,
                e.recipient,
                e.text,
                e.topic,
                _json(list(e.mentions)),
                e.reply_to,
                e.tone,
            ),
        ),
    )


def _feed_served(e: FeedServed) -> Sequence[Op]:
    topics = e.topics
    return tuple(
        (
            EXPOSURES,
            SQL_EXPOSURE,
            (e.seq, rank, e.actor, pid, topics[rank] if rank < len(topics) else "", e.ranker, e.t),
        )
        for rank, pid in enumerate(e.post_ids)
    )


def _item_injected(e: ItemInjected) -> Sequence[Op]:
    return ((INSTRUMENTS, SQL_INJECTED, (e.post_id, e.item_id, e.truth, e.source, e.seq)),)


def _moderation(e: ModerationDecided) -> Sequence[Op]:
    row = (
        e.seq,
        e.t,
        e.window,
        e.moderator,
        e.action,
        e.post_id,
        e.author,
        e.label,
        e.from_window,
        e.until_window,
    )
    ops: list[Op] = [(INSTRUMENTS, SQL_MODERATION, row)]
    if e.action == "suspend":
        by = f"moderator:{e.moderator}"
        ops.append(
            (INSTRUMENTS, SQL_SUSPENSION, (e.seq, e.author, e.from_window, e.until_window, by))
        )
    return ops


def _suspended(e: AgentSuspended) -> Sequence[Op]:
    return ((INSTRUMENTS, SQL_SUSPENSION, (e.seq, e.agent, e.from_window, e.until_window, e.by)),)


def _answered(e: SurveyAnswered) -> Sequence[Op]:
    return tuple(
        (INSTRUMENTS, SQL_ANSWER, (e.seq, e.actor, e.survey, e.window, q, v))
        for q, v in sorted(e.answers.items())
    )


def _nothing(e: Event) -> Sequence[Op]:
    return _NOTHING


PROJECTIONS: dict[str, Callable[[Any], Sequence[Op]]] = {
    "agent_registered": _agent_registered,
    "post_created": _post_created,
    "vote_cast": _vote_cast,
    "vote_changed": _vote_changed,
    "vote_cleared": _vote_cleared,
    "followed": _followed,
    "unfollowed": _unfollowed,
    "dm_sent": _dm_sent,
    "feed_served": _feed_served,
    "window_started": _nothing,
    "window_ended": _nothing,
    "guidance_issued": _nothing,
    "action_failed": _nothing,
    "intervention_applied": _nothing,
    "item_injected": _item_injected,
    "broadcast_sent": _nothing,
    "feed_changed": _nothing,
    "persona_changed": _nothing,
    "agent_suspended": _suspended,
    "moderation_decided": _moderation,
    "survey_answered": _answered,
}
"""Every event kind's projection. A kind missing here is a bug (checked by a test)."""

MATERIALISED_TABLES: tuple[str, ...] = (
    "agents",
    "posts",
    "mentions",
    "votes",
    "follows",
    "dms",
    "exposures",
    "injected_items",
    "moderation",
    "suspensions",
    "survey_answers",
)
"""Tables derived from the log (``events`` itself is the log)."""


def plan(events: Iterable[Event]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The ``(sql, rows)`` groups that append ``events`` and apply their effects, in order.

    Each phase's ops are kept as runs of one statement as they come (a round's 120,000 votes
    are one run), and a ``VoteCast`` of the usual shape is projected inline: this runs on the
    event loop for every committed batch."""
    rows: list[tuple[Any, ...]] = []
    phases: list[list[tuple[str, list[tuple[Any, ...]]]]] = [[] for _ in range(_N_PHASES)]
    counters: dict[int, list[int]] = {}
    votes = phases[VOTES]
    vote_run: list[tuple[Any, ...]] | None = None  # the rows of votes[-1] if it sets votes
    add_row = rows.append
    for e in events:
        if type(e) is VoteCast:
            post_id, value, author = e.post_id, e.value, e.author
            if type(post_id) is int and type(value) is int and type(author) is str:
                seq, t, actor = e.seq, e.t, e.actor
                add_row((seq, t, "vote_cast", actor, vote_cast_payload(e)))
                if vote_run is None:
                    vote_run = []
                    votes.append((SQL_VOTE_SET, vote_run))
                vote_run.append((actor, post_id, value, t, seq))
                c = counters.get(post_id)
                if c is None:
                    counters[post_id] = [1, 0, 0] if value > 0 else [0, 1, 0]
                elif value > 0:
                    c[0] += 1
                else:
                    c[1] += 1
                continue
        payload = guidance_payload(e) if type(e) is GuidanceIssued else payload_json(e)
        add_row((e.seq, e.t, e.kind, e.actor, payload))
        for phase, sql, params in PROJECTIONS[e.kind](e):
            if phase == COUNTERS:
                c = counters.get(params[0])
                if c is None:
                    counters[params[0]] = [params[1], params[2], params[3]]
                else:
                    c[0] += params[1]
                    c[1] += params[2]
                    c[2] += params[3]
                continue
            ops = phases[phase]
            if ops and ops[-1][0] == sql:
                ops[-1][1].append(params)
            else:
                ops.append((sql, [params]))
            if phase == VOTES:
                vote_run = ops[-1][1] if sql == SQL_VOTE_SET else None
    groups: list[tuple[str, list[tuple[Any, ...]]]] = []
    if rows:
        groups.append((SQL_EVENT, rows))
    for ops in phases:
        groups.extend(ops)
    if counters:
        upd = [(c[0], c[1], c[2], pid) for pid, c in sorted(counters.items()) if any(c)]
        if upd:
            groups.append((SQL_COUNTERS, upd))
    return groups


async def apply_events(conn: aiosqlite.Connection, events: Sequence[Event]) -> None:
    """Append ``events`` and apply their projections on ``conn`` (caller owns the transaction)."""
    for sql, rows in plan(events):
        await conn.executemany(sql, rows)
