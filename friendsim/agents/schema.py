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
from collections.abc import Container, Sequence
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from friendsim.llm.json_extract import quoted
from friendsim.platform.events import normalise_topic
from friendsim.platform.topics import usable_topic
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


_NULL: dict[str, Any] = {"type": "null"}
_TONES = ["supportive", "neutral", "critical"]
_TEXT_TYPES = ("POST", "COM", "DM", "REPOST")
_POST_TYPES = ("COM", "LIKE", "DISLIKE", "REPOST")
_USER_TYPES = ("DM", "FOLLOW", "UNFOLLOW")


def _choice(values: Sequence[Any], kind: str, description: str) -> dict[str, Any]:
    """A required ``kind`` value, restricted to ``values`` when there are any."""
    if values:
        return {"type": kind, "enum": list(values), "description": description}
    out: dict[str, Any] = {"type": kind, "description": description}
    if kind == "string":
        out["maxLength"] = 40
    return out


def _nullable_enum(values: Sequence[Any], kind: str, description: str) -> dict[str, Any]:
    """``kind`` or null; restricted to ``values`` when there are any (grammar-friendly).

    Always an ``anyOf`` of the values (or a bounded string) and null, never ``"type": [kind,
    "null"]``: llama.cpp's schema converter drops the ``enum`` and ``maxLength`` of a type list,
    so a small model could name anyone and loop inside the string until ``max_tokens`` cut the
    JSON short."""
    if not values:
        return {
            "anyOf": [{"type": kind, "maxLength": 40}, {"type": "null"}],
            "description": description,
        }
    return {
        "anyOf": [{"type": kind, "enum": list(values)}, {"type": "null"}],
        "description": description,
    }


def _variant(atype: str, target: dict[str, Any], recipient: dict[str, Any],
             mention_user: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    text = atype in _TEXT_TYPES
    return {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": [atype]},
            "target_post": target,
            "recipient": recipient,
            "topic": {"type": "string", "maxLength": 40 if atype != "NOT" else 0},
            "mention": {"type": "boolean"} if text else {"type": "boolean", "enum": [False]},
            "mention_user": mention_user if text else _NULL,
            "tone": {"type": "string", "enum": _TONES},
        },
        "required": list(ACTION_FIELDS),
        "additionalProperties": False,
    }


ACTION_FIELDS = ("type", "target_post", "recipient", "topic", "mention", "mention_user", "tone")


def plan_json_schema(
    n_actions: int,
    allowed: Sequence[str],
    *,
    users: Sequence[str] = (),
    post_ids: Sequence[int] = (),
    votable_ids: Sequence[int] | None = None,
    followees: Sequence[str] | None = None,
) -> dict[str, Any]:
    """JSON schema of a plan with exactly ``n_actions`` actions of the ``allowed`` types.

    Each action is one of per-type variants (``anyOf``): a COM/LIKE/DISLIKE/REPOST must name a
    ``target_post`` and a DM/FOLLOW/UNFOLLOW a ``recipient`` (never null), a POST or NOT names
    neither. When ``users`` and ``post_ids`` are given, targets and recipients are enumerated
    (LIKE/DISLIKE only among ``votable_ids``, FOLLOW only users not in ``followees``, UNFOLLOW
    only ``followees``) and a type with nothing to point at is left out, so a
    grammar-constrained model (the local one) cannot write an action the validation rejects
    for its shape or its target. Strings carry ``maxLength`` so that a small model cannot loop
    inside one until ``max_tokens``.
    """
    contextual = bool(users or post_ids)
    votable = list(post_ids if votable_ids is None else votable_ids)
    follows = list(followees or ())
    candidates: dict[str, Sequence[Any]] = {
        "COM": list(post_ids), "REPOST": list(post_ids), "LIKE": votable, "DISLIKE": votable,
        "DM": list(users), "FOLLOW": [u for u in users if u not in follows],
        "UNFOLLOW": [u for u in follows if u in users] if users else follows,
    }  # fmt: skip
    mention_user = _nullable_enum(users, "string", "user id to @mention")
    variants = []
    for atype in dict.fromkeys(allowed):
        match atype:
            case "COM" | "LIKE" | "DISLIKE" | "REPOST":
                if contextual and not candidates[atype]:
                    continue
                target = _choice(candidates[atype], "integer", f"post id the {atype} is about")
                variants.append(_variant(atype, target, _NULL, mention_user))
            case "DM" | "FOLLOW" | "UNFOLLOW":
                if contextual and not candidates[atype]:
                    continue
                rcpt = _choice(candidates[atype], "string", f"user id the {atype} goes to")
                variants.append(_variant(atype, _NULL, rcpt, mention_user))
            case _:
                variants.append(_variant(atype, _NULL, _NULL, mention_user))
    if not variants:  # nothing feasible among the allowed types: doing nothing is
        variants.append(_variant("NOT", _NULL, _NULL, mention_user))
    item = variants[0] if len(variants) == 1 else {"anyOf": variants}
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


def plan_items(value: Any) -> list[Any]:
    """The raw action entries of a decoded plan; ``OutputError`` when it is not
    ``{"actions": [...]}`` (the only plan-level shape problem: actions are checked one by one)."""
    actions = value.get("actions") if isinstance(value, dict) else None
    if not isinstance(actions, list):
        raise OutputError(
            "bad_schema", 'the plan does not match the schema: expected {"actions": [...]}'
        )
    if len(actions) > 64:
        raise OutputError("bad_schema", f"the plan has {len(actions)} actions; at most 64")
    return actions


def parse_action(
    raw: Any,
    obs: Observation,
    *,
    index: int,
    shown: Sequence[FeedItem],
    self_id: str,
    taken: Sequence[Action] = (),
) -> Action:
    """Validate one planned action (``index`` counts from 1, for messages) against the
    observation; ``taken`` are the plan's actions already accepted (a second FOLLOW of the same
    user is refused). The topic is repaired, never refused: an unusable one (a tone word, a
    placeholder, see :mod:`friendsim.platform.topics`) becomes the target post's topic or the theme."""
    where = f"action {index}"
    try:
        pa = PlannedAction.model_validate(raw)
    except ValidationError as exc:
        raise OutputError(
            "bad_schema", f"{where} does not match the schema: {_shape_error(exc)}"
        ) from None
    kind = pa.type.strip().upper()
    if kind not in obs.allowed:
        raise OutputError(
            "bad_type",
            f"{where}: type {quoted(pa.type)} is not allowed; allowed: {list(obs.allowed)}",
        )
    atype = cast(ActionType, kind)
    shown_by_id = {item.post_id: item for item in shown}
    known = set(obs.known_users) - {self_id}
    followees = set(obs.followees)
    target: int | None = None
    recipient: str | None = None
    topic = usable_topic(pa.topic)
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
                    f"{where}: target_post {quoted(pa.target_post)} is not one of the posts shown to you",
                )
            item = shown_by_id[pa.target_post]
            if atype in ("LIKE", "DISLIKE") and item.author == self_id:
                raise OutputError(
                    "self_vote", f"{where}: you cannot {atype} your own post {pa.target_post}"
                )
            target = pa.target_post
            topic = topic or usable_topic(item.topic)
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
                    "unknown_recipient", f"{where}: recipient {quoted(rcpt)} is not a known user"
                )
            if atype in ("FOLLOW", "UNFOLLOW") and any(
                a.type in ("FOLLOW", "UNFOLLOW") and a.recipient == rcpt for a in taken
            ):
                raise OutputError(
                    "duplicate_follow", f"{where}: this plan already (un)follows {rcpt!r}"
                )
            if atype == "FOLLOW" and rcpt in followees:
                raise OutputError("already_following", f"{where}: you already follow {rcpt!r}")
            if atype == "UNFOLLOW" and rcpt not in followees:
                raise OutputError("not_following", f"{where}: you do not follow {rcpt!r}")
            recipient = rcpt
        case _:
            pass
    mention: str | None = None
    if pa.mention and atype in _TEXT_TYPES:
        # The mention is optional: an empty, self or unknown mention_user is repaired to
        # "no mention" instead of failing an otherwise valid action.
        who = (pa.mention_user or "").strip().lstrip("@")
        mention = who if who in known else None
    if atype in _TEXT_TYPES and not topic:
        topic = usable_topic(obs.theme) or normalise_topic(obs.theme)[:80]
    return Action(type=atype, topic=topic if atype != "NOT" else "", tone=pa.tone,
                  target_post=target, recipient=recipient, mention=mention)  # fmt: skip


def check_plan(
    value: Any, obs: Observation, *, shown: Sequence[FeedItem], self_id: str
) -> list[Action | OutputError]:
    """Each of the ``obs.n_actions`` slots of a decoded plan: its :class:`Action`, or the
    :class:`OutputError` that rejects it (a slot the plan left empty: ``missing_action``).
    Actions beyond ``n_actions`` are ignored. Raises ``OutputError`` only when the answer is
    not a plan at all (see :func:`plan_items`)."""
    items = plan_items(value)
    out: list[Action | OutputError] = []
    accepted: list[Action] = []
    for i in range(1, obs.n_actions + 1):
        if i > len(items):
            out.append(OutputError("missing_action", f"the plan has no action {i}"))
            continue
        try:
            action = parse_action(
                items[i - 1], obs, index=i, shown=shown, self_id=self_id, taken=accepted
            )
        except OutputError as err:
            out.append(err)
        else:
            accepted.append(action)
            out.append(action)
    return out


def parse_plan(
    value: Any, obs: Observation, *, shown: Sequence[FeedItem], self_id: str
) -> tuple[Action, ...]:
    """Validate a whole decoded plan strictly: exactly ``obs.n_actions`` valid actions, else the
    first problem as ``OutputError`` (see :func:`check_plan` for the per-action form)."""
    items = plan_items(value)
    n = obs.n_actions
    if len(items) != n:
        raise OutputError(
            "wrong_count", f"the plan has {len(items)} actions; it must have exactly {n}"
        )
    out: list[Action] = []
    for slot in check_plan(value, obs, shown=shown, self_id=self_id):
        if isinstance(slot, OutputError):
            raise slot
        out.append(slot)
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


def _plain_votes(value: Any) -> list[tuple[int, int]] | None:
    """The ``(post_id, vote)`` pairs of an answer in the schema's exact shape (plain ints, no
    bools), or ``None`` for anything else, which :class:`VoteOut` then judges. The fast path of
    every well-formed answer: the same result as the model, a tenth of its cost."""
    if type(value) is not dict:
        return None
    entries = value.get("votes")
    if type(entries) is not list or len(entries) > 1000:
        return None
    pairs: list[tuple[int, int]] = []
    for e in entries:
        if type(e) is not dict:
            return None
        pid, vote = e.get("post_id"), e.get("vote")
        if type(pid) is not int or type(vote) is not int or vote not in (-1, 0, 1):
            return None
        pairs.append((pid, vote))
    return pairs


def parse_some_votes(
    value: Any, post_ids: Sequence[int], *, settled: Container[int] = ()
) -> tuple[dict[int, int], OutputError | None]:
    """The votes of an answer that it gives unambiguously, and what is wrong with the rest.

    A post voted twice the same way counts once; a post voted twice differently gets no vote
    (the model contradicted itself), nor does a post the answer leaves out: the error
    (``duplicate_vote`` before ``missing_votes``) names those, so that only they are asked
    again. An answer that breaks the schema or votes on a post not listed, or that gives no
    usable vote at all, raises :class:`OutputError` as :func:`parse_votes` does.

    ``settled``: posts of the same items an earlier answer already voted on, when only the
    rest are asked again. A model often answers such a narrowed request with the whole list
    once more; a vote on a settled post is passed over (the earlier vote stands), not an
    ``unknown_post`` that would discard the votes the answer does give."""
    pairs = _vote_pairs(value)
    wanted = set(post_ids)
    votes: dict[int, int] = {}
    conflicting: dict[int, None] = {}
    for post_id, vote in pairs:
        if post_id not in wanted:
            if post_id in settled:
                continue
            raise OutputError(
                "unknown_post", f"post_id {post_id} is not one of the items to vote on"
            )
        if votes.setdefault(post_id, vote) != vote:
            conflicting[post_id] = None
    for post_id in conflicting:
        del votes[post_id]
    missing = [p for p in post_ids if p not in votes and p not in conflicting]
    if not votes:
        if conflicting:
            first = next(iter(conflicting))
            raise OutputError("duplicate_vote", f"post_id {first} has more than one vote")
        raise OutputError(
            "missing_votes", f"no vote for post ids {missing[:20]}; give one vote per item"
        )
    if conflicting:
        ids = list(conflicting)
        return votes, OutputError(
            "duplicate_vote",
            f"post ids {ids[:20]} have conflicting votes"
            + (f"; no vote for post ids {missing[:20]}" if missing else ""),
        )
    if missing:
        return votes, OutputError(
            "missing_votes", f"no vote for post ids {missing[:20]}; give one vote per item"
        )
    return votes, None


def _vote_pairs(value: Any) -> list[tuple[int, int]]:
    """``(post_id, vote)`` of an answer, in its order (the plain shape, else the schema's);
    :class:`OutputError` ``bad_schema`` when it is neither."""
    pairs = _plain_votes(value)
    if pairs is None:
        try:
            out = VoteOut.model_validate(value)
        except ValidationError as exc:
            raise OutputError(
                "bad_schema", f"the votes do not match the schema: {_shape_error(exc)}"
            ) from None
        pairs = [(e.post_id, int(e.vote)) for e in out.votes]
    return pairs


def parse_votes(value: Any, post_ids: Sequence[int]) -> dict[int, int]:
    """Validate a vote answer: exactly one vote in {-1, 0, 1} per listed post id."""
    pairs = _vote_pairs(value)
    wanted = set(post_ids)
    votes: dict[int, int] = {}
    for post_id, vote in pairs:
        if post_id not in wanted:
            raise OutputError(
                "unknown_post", f"post_id {post_id} is not one of the items to vote on"
            )
        if post_id in votes:
            raise OutputError("duplicate_vote", f"post_id {post_id} has more than one vote")
        votes[post_id] = vote
    missing = [p for p in post_ids if p not in votes]
    if missing:
        raise OutputError(
            "missing_votes", f"no vote for post ids {missing[:20]}; give one vote per item"
        )
    return votes
