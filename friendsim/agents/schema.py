"""Structured-output schemas and validation of model answers (the untrusted edge).

Each model answer goes through three steps, all raising :class:`OutputError` with a message meant
to be shown back to the model on a re-ask:

1. decode: ``Completion.parsed`` if the provider decoded JSON, else the text (code fences and
   surrounding prose stripped) parsed as JSON;
2. shape: a pydantic model (types, enums, ranges);
3. semantics: against the observation (exactly N actions, allowed types, target post shown,
   recipient a known user and not self ...), turning the raw plan into :class:`Action` values.

Nothing here raises anything other than :class:`OutputError` on any model output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from friendsim.platform.events import normalise_topic
from friendsim.vocabulary import Action, ActionType, FeedItem, Observation, Tone


class OutputError(ValueError):
    """A model answer failed validation; ``str(err)`` is the message for the re-ask."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
MAX_JSON_CHARS = 200_000


def decode_json(parsed: Any, text: str) -> Any:
    """The JSON value of an answer (see module docstring). Raises ``OutputError("bad_json")``."""
    if parsed is not None:
        return parsed
    if not isinstance(text, str) or not text.strip():
        raise OutputError("bad_json", "the answer was empty; reply with one JSON object")
    if len(text) > MAX_JSON_CHARS:
        raise OutputError("bad_json", f"the answer is too long ({len(text)} characters)")
    candidates = [text.strip()]
    m = _FENCE.search(text)
    if m:
        candidates.append(m.group(1).strip())
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    last = ""
    for cand in candidates:
        try:
            return json.loads(cand)
        except (json.JSONDecodeError, RecursionError, ValueError) as exc:
            last = str(exc)
    raise OutputError(
        "bad_json", f"the answer is not valid JSON ({last}); reply with one JSON object only"
    )


def _shape_error(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = ".".join(str(x) for x in e["loc"]) or "<root>"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


# --- plan ------------------------------------------------------------------------------------


class PlannedAction(BaseModel):
    """One planned action as the model writes it."""

    model_config = ConfigDict(extra="ignore")

    type: str
    target_post: int | None = None
    recipient: str | None = None
    topic: str = Field(default="", max_length=200)
    mention: bool = False
    mention_user: str | None = None
    tone: Tone = "neutral"


class PlanOut(BaseModel):
    """The plan answer: ``{"actions": [...]}``."""

    model_config = ConfigDict(extra="ignore")

    actions: list[PlannedAction] = Field(max_length=64)


def _nullable_enum(values: Sequence[Any], kind: str, description: str) -> dict[str, Any]:
    """``kind`` or null; restricted to ``values`` when there are any (grammar-friendly)."""
    if not values:
        return {"type": "null", "description": description}
    return {"type": [kind, "null"], "enum": [*values, None], "description": description}


def plan_json_schema(
    n_actions: int,
    allowed: Sequence[str],
    *,
    users: Sequence[str] = (),
    post_ids: Sequence[int] = (),
) -> dict[str, Any]:
    """JSON schema of a plan with exactly ``n_actions`` actions of the ``allowed`` types.

    When ``users`` and ``post_ids`` are given, recipients, mentions and targets are enumerated,
    so a grammar-constrained model (the local one) cannot name an unknown user or post. Strings
    carry ``maxLength`` so that a small model cannot loop inside one until ``max_tokens``.
    """
    item = {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": list(allowed)},
            "target_post": (
                _nullable_enum(post_ids, "integer", "post id for COM/LIKE/DISLIKE/REPOST")
                if post_ids or users
                else {
                    "type": ["integer", "null"],
                    "description": "post id for COM/LIKE/DISLIKE/REPOST",
                }
            ),
            "recipient": (
                _nullable_enum(users, "string", "user id for DM/FOLLOW/UNFOLLOW")
                if post_ids or users
                else {
                    "type": ["string", "null"],
                    "maxLength": 40,
                    "description": "user id for DM/FOLLOW/UNFOLLOW",
                }
            ),
            "topic": {"type": "string", "maxLength": 60},
            "mention": {"type": "boolean"},
            "mention_user": (
                _nullable_enum(users, "string", "user id to @mention")
                if post_ids or users
                else {"type": ["string", "null"], "maxLength": 40}
            ),
            "tone": {"type": "string", "enum": ["supportive", "neutral", "critical"]},
        },
        "required": [
            "type",
            "target_post",
            "recipient",
            "topic",
            "mention",
            "mention_user",
            "tone",
        ],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "actions": {
                "type": "array",
                "items": item,
                "minItems": n_actions,
                "maxItems": n_actions,
            }
        },
        "required": ["actions"],
        "additionalProperties": False,
    }


def parse_plan(
    value: Any, obs: Observation, *, shown: Sequence[FeedItem], self_id: str
) -> tuple[Action, ...]:
    """Validate a decoded plan against the observation and return the actions (no text yet)."""
    try:
        plan = PlanOut.model_validate(value)
    except ValidationError as exc:
        raise OutputError(
            "bad_schema", f"the plan does not match the schema: {_shape_error(exc)}"
        ) from None
    n = obs.n_actions
    if len(plan.actions) != n:
        raise OutputError(
            "wrong_count", f"the plan has {len(plan.actions)} actions; it must have exactly {n}"
        )
    shown_by_id = {item.post_id: item for item in shown}
    known = set(obs.known_users) - {self_id}
    followees = set(obs.followees)
    out: list[Action] = []
    for i, pa in enumerate(plan.actions, start=1):
        where = f"action {i}"
        kind = pa.type.strip().upper()
        if kind not in obs.allowed:
            raise OutputError(
                "bad_type",
                f"{where}: type {pa.type!r} is not allowed; allowed: {list(obs.allowed)}",
            )
        atype = cast(ActionType, kind)
        target: int | None = None
        recipient: str | None = None
        topic = normalise_topic(pa.topic)[:80]
        match atype:
            case "COM" | "LIKE" | "DISLIKE" | "REPOST":
                if pa.target_post is None:
                    raise OutputError(
                        "missing_target",
                        f"{where}: {atype} needs target_post (a post id shown to you)",
                    )
                if pa.target_post not in shown_by_id:
                    raise OutputError(
                        "unknown_post",
                        f"{where}: target_post {pa.target_post} is not one of the posts shown to you",
                    )
                item = shown_by_id[pa.target_post]
                if atype in ("LIKE", "DISLIKE") and item.author == self_id:
                    raise OutputError(
                        "self_vote", f"{where}: you cannot {atype} your own post {pa.target_post}"
                    )
                target = pa.target_post
                topic = topic or item.topic
            case "DM" | "FOLLOW" | "UNFOLLOW":
                if not pa.recipient:
                    raise OutputError(
                        "missing_recipient", f"{where}: {atype} needs recipient (a known user id)"
                    )
                rcpt = pa.recipient.strip().lstrip("@")
                if rcpt == self_id:
                    raise OutputError(
                        "self_target",
                        f"{where}: recipient {rcpt!r} is yourself; choose another user",
                    )
                if rcpt not in known:
                    raise OutputError(
                        "unknown_recipient", f"{where}: recipient {rcpt!r} is not a known user"
                    )
                if atype == "FOLLOW" and rcpt in followees:
                    raise OutputError("already_following", f"{where}: you already follow {rcpt!r}")
                if atype == "UNFOLLOW" and rcpt not in followees:
                    raise OutputError("not_following", f"{where}: you do not follow {rcpt!r}")
                recipient = rcpt
            case _:
                pass
        mention: str | None = None
        if pa.mention and atype in ("POST", "COM", "DM", "REPOST"):
            # The mention is optional: an empty, self or unknown mention_user is repaired to
            # "no mention" instead of failing an otherwise valid plan.
            who = (pa.mention_user or "").strip().lstrip("@")
            mention = who if who in known else None
        if atype in ("POST", "COM", "DM", "REPOST") and not topic:
            topic = normalise_topic(obs.theme)[:80]
        out.append(
            Action(type=atype, topic=topic if atype != "NOT" else "", tone=pa.tone,
                   target_post=target, recipient=recipient, mention=mention)
        )  # fmt: skip
    return tuple(out)


# --- vote ------------------------------------------------------------------------------------


class VoteEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    post_id: int
    vote: Literal[-1, 0, 1]


class VoteOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    votes: list[VoteEntry] = Field(max_length=1000)


def vote_json_schema(post_ids: Sequence[int]) -> dict[str, Any]:
    """JSON schema of a vote answer over ``post_ids``."""
    entry = {
        "type": "object",
        "properties": {
            "post_id": {"type": "integer", "enum": list(post_ids)},
            "vote": {"type": "integer", "enum": [-1, 0, 1]},
        },
        "required": ["post_id", "vote"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "votes": {
                "type": "array",
                "items": entry,
                "minItems": len(post_ids),
                "maxItems": len(post_ids),
            }
        },
        "required": ["votes"],
        "additionalProperties": False,
    }


def parse_votes(value: Any, post_ids: Sequence[int]) -> dict[int, int]:
    """Validate a vote answer: exactly one vote in {-1, 0, 1} per listed post id."""
    try:
        out = VoteOut.model_validate(value)
    except ValidationError as exc:
        raise OutputError(
            "bad_schema", f"the votes do not match the schema: {_shape_error(exc)}"
        ) from None
    wanted = set(post_ids)
    votes: dict[int, int] = {}
    for e in out.votes:
        if e.post_id not in wanted:
            raise OutputError(
                "unknown_post", f"post_id {e.post_id} is not one of the items to vote on"
            )
        if e.post_id in votes:
            raise OutputError("duplicate_vote", f"post_id {e.post_id} has more than one vote")
        votes[e.post_id] = int(e.vote)
    missing = [p for p in post_ids if p not in votes]
    if missing:
        raise OutputError(
            "missing_votes", f"no vote for post ids {missing[:20]}; give one vote per item"
        )
    return votes
