"""Typed, immutable platform events: the single source of truth of a run.

Every state change of the platform is one event. An event has a sequence number (``seq``,
assigned by the store when it is appended, ``-1`` before), a virtual timestamp ``t`` (seconds on
the simulation clock, never wall-clock time), an ``actor`` (the agent id that caused it, ``"coach"``
for guidance, ``None`` for the runtime) and a kind-specific payload.

On disk an event is one row of ``events(seq, t, kind, actor, payload)``; ``payload`` is a JSON
object holding the kind-specific fields plus ``"v"``, the payload schema version. Conversion is
lossless in both directions: lists are stored as JSON arrays and read back as tuples, so
``event_from_row(event_to_row(e)) == e`` for every event.

Conventions used by rewards, ties and analysis (they are part of the contract):

* A *comment* (reply) is a ``PostCreated`` with ``parent_id`` set; ``root_id`` is the top-level
  post of its thread. A comment is addressed "to" the author of ``parent_id``.
* ``topic`` fields hold the normalised topic (see :func:`normalise_topic`).
* Votes: ``VoteCast`` (no previous vote), ``VoteChanged`` (+1 <-> -1), ``VoteCleared`` (back to 0).
* ``FeedServed`` lists the post ids shown to ``actor`` in rank order; INF rewards read exposure
  from it.
* ``WindowStarted``/``WindowEnded`` bracket a round (rounds mode) or a time window (continuous
  mode); every event between them belongs to that window.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from friendsim._slots import setters
from friendsim.vocabulary import Tip

SCHEMA_VERSION = 1
"""Payload schema version written into every payload as ``"v"``."""

COACH_ACTOR = "coach"

_TOPIC_SPACES = re.compile(r"[\s_\-]+")


def normalise_topic(topic: str) -> str:
    """Canonical form of a topic label: lower case, words joined by single spaces, no ``#``."""
    return _TOPIC_SPACES.sub(" ", topic.strip().lstrip("#").lower()).strip()


class EventDecodeError(ValueError):
    """A stored event row could not be decoded; names the sequence number and the problem."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Common envelope of every event. Subclasses add the payload fields."""

    kind: ClassVar[str] = ""
    seq: int = -1
    t: float
    actor: str | None = None

    def payload(self) -> dict[str, Any]:
        """The kind-specific fields as a JSON-ready dict, with the schema version under ``v``."""
        out: dict[str, Any] = {"v": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            if f.name not in _ENVELOPE:
                out[f.name] = _thaw(getattr(self, f.name))
        return out


_ENVELOPE = frozenset({"seq", "t", "actor"})


# --- agents ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentRegistered(Event):
    """``actor`` joined the platform. ``attributes`` holds persona group attributes (for homophily)."""

    kind: ClassVar[str] = "agent_registered"
    name: str
    attributes: Mapping[str, Any] = dataclasses.field(default_factory=dict)


# --- content ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class PostCreated(Event):
    """``actor`` published a post, or a comment when ``parent_id`` is set.

    ``quote_of`` marks a repost/quote of another post (its text may be empty for a plain repost).
    ``tone`` is the tone the author intended (from its plan), ``None`` if unknown.
    """

    kind: ClassVar[str] = "post_created"
    post_id: int
    text: str
    topic: str
    mentions: tuple[str, ...] = ()
    parent_id: int | None = None
    root_id: int | None = None
    quote_of: int | None = None
    tone: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class VoteCast(Event):
    """``actor`` voted ``value`` (+1 like, -1 dislike) on ``post_id`` (written by ``author``)."""

    kind: ClassVar[str] = "vote_cast"
    post_id: int
    author: str
    value: int


_VOTE_CAST_FIELDS = ("seq", "t", "actor", "post_id", "author", "value")
_SET_SEQ, _SET_T, _SET_ACTOR, _SET_POST, _SET_AUTHOR, _SET_VALUE = setters(
    VoteCast, *_VOTE_CAST_FIELDS
)


def vote_cast(seq: int, t: float, actor: str, post_id: int, author: str, value: int) -> VoteCast:
    """``VoteCast(seq=seq, t=t, actor=actor, post_id=post_id, author=author, value=value)``,
    the same object, built by setting its slots directly: a frozen dataclass's ``__init__``
    goes through ``object.__setattr__`` field by field, about 1.5 µs a vote, and a round casts
    a hundred thousand of them. (``tests/test_platform_store.py`` checks every field is set.)"""
    e = object.__new__(VoteCast)
    _SET_SEQ(e, seq)
    _SET_T(e, t)
    _SET_ACTOR(e, actor)
    _SET_POST(e, post_id)
    _SET_AUTHOR(e, author)
    _SET_VALUE(e, value)
    return e


@dataclass(frozen=True, kw_only=True, slots=True)
class VoteChanged(Event):
    """``actor`` flipped an existing vote on ``post_id`` from ``old`` to ``value``."""

    kind: ClassVar[str] = "vote_changed"
    post_id: int
    author: str
    old: int
    value: int


@dataclass(frozen=True, kw_only=True, slots=True)
class VoteCleared(Event):
    """``actor`` withdrew its vote ``old`` on ``post_id``."""

    kind: ClassVar[str] = "vote_cleared"
    post_id: int
    author: str
    old: int


# --- social graph --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Followed(Event):
    """``actor`` started following ``target``."""

    kind: ClassVar[str] = "followed"
    target: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Unfollowed(Event):
    """``actor`` stopped following ``target``."""

    kind: ClassVar[str] = "unfollowed"
    target: str


@dataclass(frozen=True, kw_only=True, slots=True)
class DirectMessageSent(Event):
    """``actor`` sent a private message to ``recipient`` (optionally answering DM ``reply_to``)."""

    kind: ClassVar[str] = "dm_sent"
    dm_id: int
    recipient: str
    text: str
    topic: str = ""
    mentions: tuple[str, ...] = ()
    reply_to: int | None = None
    tone: str | None = None


# --- exposure ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedServed(Event):
    """``actor`` was shown ``post_ids`` (rank order) by ranker ``ranker``; ``topics`` parallel them.

    ``topics`` is denormalised on purpose: exposure-based rewards (INF) can then be computed from
    the log alone without joining posts.
    """

    kind: ClassVar[str] = "feed_served"
    ranker: str
    post_ids: tuple[int, ...]
    topics: tuple[str, ...] = ()


# --- time ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class WindowStarted(Event):
    """A round (rounds mode) or time window (continuous mode) ``window`` began at ``t``."""

    kind: ClassVar[str] = "window_started"
    window: int
    mode: str = "rounds"
    t_end: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class WindowEnded(Event):
    """Window ``window`` closed: everything it holds is committed."""

    kind: ClassVar[str] = "window_ended"
    window: int


# --- coaching and failures -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class GuidanceIssued(Event):
    """The coach (``actor == "coach"``) gave ``agent`` tips after window ``window``.

    Each tip is a :class:`~friendsim.vocabulary.Tip`, stored as the JSON object of
    :meth:`Tip.to_dict <friendsim.vocabulary.Tip.to_dict>` (keys ``action``, ``target``,
    ``topic``, ``invite_mention``, ``tone``, ``text``) and decoded strictly by
    :meth:`Tip.from_dict <friendsim.vocabulary.Tip.from_dict>`.
    """

    kind: ClassVar[str] = "guidance_issued"
    agent: str
    window: int
    tips: tuple[Tip, ...]
    coach: str = "rule"


@dataclass(frozen=True, kw_only=True, slots=True)
class ActionFailed(Event):
    """``actor`` could not act: invalid model output after retries, or a rejected command.

    ``stage`` is where it failed (``"plan"``, ``"generate"``, ``"vote"``, ``"command"`` ...),
    ``reason`` a short machine-readable code, ``detail`` a human-readable explanation.
    """

    kind: ClassVar[str] = "action_failed"
    window: int | None = None
    stage: str
    reason: str
    detail: str = ""
    attempts: int = 1
    action: Mapping[str, Any] | None = None


# --- research instruments: interventions, moderation, surveys --------------------------------

TRUTH_LABELS: tuple[str, ...] = ("false", "true", "unverified")
"""Truth labels an injected item may carry."""

MODERATION_ACTIONS: tuple[str, ...] = ("remove", "label", "downrank", "shadowban", "suspend")
"""What a moderation decision does: ``remove`` (the item is served to nobody any more),
``label`` (a fact-check label shown with the item), ``downrank`` (served after every other
item), ``shadowban`` (the author's items are served to nobody but the author), ``suspend``
(the author acts in no window ``from_window..until_window``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class InterventionApplied(Event):
    """The runtime applied scheduled intervention ``name`` (of kind ``intervention``) in
    ``window``; ``params`` are its validated parameters. Its effects follow as their own events."""

    kind: ClassVar[str] = "intervention_applied"
    window: int
    intervention: str
    name: str = ""
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class ItemInjected(Event):
    """Post ``post_id`` was injected by an intervention: item ``item_id`` of ``source``,
    truth label ``truth`` (one of :data:`TRUTH_LABELS`)."""

    kind: ClassVar[str] = "item_injected"
    post_id: int
    item_id: str
    truth: str
    source: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class BroadcastSent(Event):
    """A message from ``sender`` shown to every active agent in its next observations."""

    kind: ClassVar[str] = "broadcast_sent"
    window: int
    sender: str
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedChanged(Event):
    """From ``window`` on, feeds are served by ``ranker`` with ``params``, ``limit`` items."""

    kind: ClassVar[str] = "feed_changed"
    window: int
    ranker: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    limit: int = 50


@dataclass(frozen=True, kw_only=True, slots=True)
class PersonaChanged(Event):
    """``agent``'s persona fields ``fields`` (``lambdas`` = its reward mix) hold from ``window``."""

    kind: ClassVar[str] = "persona_changed"
    agent: str
    window: int
    fields: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentSuspended(Event):
    """``agent`` acts in no window ``from_window..until_window`` (inclusive; ``None``: never
    again, a removal). ``by`` names who decided (``intervention`` or ``moderator:<name>``)."""

    kind: ClassVar[str] = "agent_suspended"
    agent: str
    from_window: int
    until_window: int | None = None
    by: str = "intervention"
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class ModerationDecided(Event):
    """Moderator ``moderator`` decided ``action`` (one of :data:`MODERATION_ACTIONS`) on post
    ``post_id`` by ``author`` in ``window``. ``label`` is the fact-check label (``label``);
    ``from_window``/``until_window`` bound a ``suspend``; ``score`` the moderator's evidence."""

    kind: ClassVar[str] = "moderation_decided"
    window: int
    moderator: str
    action: str
    post_id: int
    author: str
    label: str = ""
    from_window: int | None = None
    until_window: int | None = None
    reason: str = ""
    score: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SurveyAnswered(Event):
    """``actor`` answered survey ``survey`` in ``window``: question id -> integer answer."""

    kind: ClassVar[str] = "survey_answered"
    survey: str
    window: int
    answers: Mapping[str, int]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        AgentRegistered,
        PostCreated,
        VoteCast,
        VoteChanged,
        VoteCleared,
        Followed,
        Unfollowed,
        DirectMessageSent,
        FeedServed,
        WindowStarted,
        WindowEnded,
        GuidanceIssued,
        ActionFailed,
        InterventionApplied,
        ItemInjected,
        BroadcastSent,
        FeedChanged,
        PersonaChanged,
        AgentSuspended,
        ModerationDecided,
        SurveyAnswered,
    )
}
"""Every event kind, by its ``kind`` string. Explicit: adding a kind means adding it here."""

_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(f.name for f in dataclasses.fields(cls)) - _ENVELOPE
    for kind, cls in EVENT_TYPES.items()
}


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, Tip):
        return value.to_dict()
    return value


def _fields_of(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """The event's fields from its decoded payload: containers frozen (lists become tuples),
    and the fields that hold vocabulary values decoded from their JSON form (explicit; a
    guidance's tips straight from their JSON objects, not frozen first)."""
    if kind == GuidanceIssued.kind:
        tips = data.pop("tips", None)
        if not isinstance(tips, list | tuple):
            raise ValueError(f"'tips' must be a list, got {type(tips).__name__}")
        fields = {k: _freeze(v) if isinstance(v, list | dict) else v for k, v in data.items()}
        fields["tips"] = tuple([Tip.from_dict(t) for t in tips])
        return fields
    return {k: _freeze(v) if isinstance(v, list | dict) else v for k, v in data.items()}


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple([_freeze(v) if isinstance(v, list | dict) else v for v in value])
    if isinstance(value, dict):
        return {k: _freeze(v) if isinstance(v, list) else v for k, v in value.items()}
    return value


def payload_json(event: Event) -> str:
    """The payload as compact, key-sorted JSON (the exact bytes stored in ``events.payload``)."""
    return json.dumps(event.payload(), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def event_to_row(event: Event) -> tuple[int, float, str, str | None, str]:
    """``(seq, t, kind, actor, payload_json)`` as stored in the ``events`` table."""
    return (event.seq, event.t, event.kind, event.actor, payload_json(event))


def event_from_row(
    seq: int, t: float, kind: str, actor: str | None, payload: str | Mapping[str, Any]
) -> Event:
    """Decode one stored row. Raises :class:`EventDecodeError` naming the seq on any problem."""
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise EventDecodeError(f"event seq={seq}: unknown kind {kind!r}")
    try:
        data = json.loads(payload) if isinstance(payload, str) else dict(payload)
    except json.JSONDecodeError as exc:
        raise EventDecodeError(f"event seq={seq} ({kind}): payload is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EventDecodeError(f"event seq={seq} ({kind}): payload is not a JSON object")
    version = data.pop("v", None)
    if version != SCHEMA_VERSION:
        raise EventDecodeError(
            f"event seq={seq} ({kind}): payload schema version {version!r}, "
            f"this friendsim reads version {SCHEMA_VERSION}"
        )
    unknown = set(data) - _FIELDS[kind]
    if unknown:
        raise EventDecodeError(
            f"event seq={seq} ({kind}): unknown payload fields {sorted(unknown)}"
        )
    try:
        return cls(seq=seq, t=t, actor=actor, **_fields_of(kind, data))
    except (TypeError, ValueError) as exc:
        raise EventDecodeError(f"event seq={seq} ({kind}): {exc}") from exc


def event_to_json(event: Event) -> str:
    """One JSONL line: ``{"seq","t","kind","actor","payload"}`` with key-sorted payload."""
    return json.dumps(
        {
            "seq": event.seq,
            "t": event.t,
            "kind": event.kind,
            "actor": event.actor,
            "payload": event.payload(),
        },
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    )


def event_from_json(line: str) -> Event:
    """Inverse of :func:`event_to_json`."""
    try:
        obj = json.loads(line)
        return event_from_row(obj["seq"], obj["t"], obj["kind"], obj["actor"], obj["payload"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise EventDecodeError(f"bad JSONL event line: {exc}: {line[:120]!r}") from exc


def canonical_payload(value: Mapping[str, Any]) -> dict[str, Any]:
    """``value`` in the form a decoded payload field has (JSON round trip, lists as tuples), so
    an event built with it equals the event read back from the log."""
    return dict(_freeze(json.loads(json.dumps(dict(value), sort_keys=True))))
