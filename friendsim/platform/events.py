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
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from friendsim._slots import setters
from friendsim._unicode import SURROGATE as _SURROGATE
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


_NO_TEXT = frozenset({"int", "float", "bool", "int | None", "float | None", "tuple[int, ...]"})

TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(f.name for f in dataclasses.fields(cls) if f.type not in _NO_TEXT)
    for kind, cls in EVENT_TYPES.items()
}
"""Per kind, the fields (``actor`` included) that may hold text: the platform admits no event
with text UTF-8 cannot encode in one of them (:func:`unicode_problem`)."""


_Setter = Callable[[Any, Any], None]
_Builder = tuple[type[Event], _Setter, _Setter, _Setter, tuple[tuple[str, _Setter], ...]]


def _builder(cls: type[Event]) -> _Builder:
    names = [f.name for f in dataclasses.fields(cls) if f.name not in _ENVELOPE]
    set_seq, set_t, set_actor, *rest = setters(cls, "seq", "t", "actor", *names)
    return cls, set_seq, set_t, set_actor, tuple(zip(names, rest, strict=True))


_BUILDERS: dict[str, _Builder] = {
    kind: _builder(cls)
    for kind, cls in EVENT_TYPES.items()
    # a guidance's tips are decoded (Tip.from_dict), not only frozen; a __post_init__ must run
    if cls is not GuidanceIssued and not hasattr(cls, "__post_init__")
}
"""Per kind: the class, the setters of its slots ``seq``, ``t`` and ``actor``, and each payload
field's name and setter, for :func:`event_from_row`'s common case (:func:`_built`)."""


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


def unicode_problem(value: Any, where: str) -> str | None:
    """What is wrong where ``value`` holds text UTF-8 cannot encode (a surrogate code point,
    such as the lone ``"\\ud800"`` a plug-in's string or a JSON escape can hold), or ``None``.

    ``value`` is a string, or a tuple, list or mapping (keys too) of such values, or a
    :class:`~friendsim.vocabulary.Tip`; other values hold no text. The message names the first
    bad string by its path under ``where`` (``tips[0].text``, ``action.<key>``) and the
    character: ``"text: not valid Unicode (lone surrogate \\ud800 at character 5)"``. The log
    is UTF-8 (SQLite stores text as UTF-8), so such text could never be stored.

    A container is first encoded whole by orjson, which refuses a surrogate in any string; only
    a refusal walks it to name the place (the platform checks every admitted event's text, and
    a window's end admits a guidance event per agent)."""
    if type(value) is str:
        if value.isascii():
            return None
        bad = _SURROGATE.search(value)
        if bad is None:
            return None
        return (
            f"{where}: not valid Unicode (lone surrogate \\u{ord(bad.group()):04x} at character "
            f"{bad.start() + 1})"
        )
    if value is None or type(value) in _NO_TEXT_TYPES:
        return None
    try:
        orjson.dumps(value, default=_encodable)
    except orjson.JSONEncodeError:
        return _walk(value, where)
    return None


_NO_TEXT_TYPES = frozenset({int, float, bool})


def _encodable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Tip):
        return value.to_dict()
    raise TypeError


def _walk(value: Any, where: str) -> str | None:
    if type(value) is str:
        return unicode_problem(value, where)
    if isinstance(value, str):  # a str subclass
        return unicode_problem(str(value), where)
    if isinstance(value, Mapping):
        for k, v in value.items():
            problem = unicode_problem(k, _at(where, "<key>")) or unicode_problem(v, _at(where, k))
            if problem is not None:
                return problem
    elif isinstance(value, tuple | list):
        for i, v in enumerate(value):
            problem = unicode_problem(v, f"{where}[{i}]")
            if problem is not None:
                return problem
    elif isinstance(value, Tip):
        return unicode_problem(value.to_dict(), where)
    return None


def payload_json(event: Event) -> str:
    """The payload as compact, key-sorted JSON (the exact bytes stored in ``events.payload``).

    A non-finite float (``NaN``, ``±Infinity``: JSON has none, but a model's answer parsed by
    Python's ``json`` or a plug-in's value can hold one) is written as ``null``, so the log
    stays JSON that any reader, and ``friendsim log import``, reads back."""
    return log_json(event.payload())


def log_json(value: Any) -> str:
    """``value`` as the log writes JSON: compact, keys sorted, non-finite floats as ``null``."""
    try:
        return _LOG_ENCODER.encode(value)
    except ValueError:  # a non-finite float somewhere: the rare path walks the value
        return _LOG_ENCODER.encode(finite(value))


_LOG_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
)


def finite(value: Any) -> Any:
    """``value`` with every non-finite float in it (dicts, lists and tuples walked) as ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def event_to_row(event: Event) -> tuple[int, float, str, str | None, str]:
    """``(seq, t, kind, actor, payload_json)`` as stored in the ``events`` table."""
    return (event.seq, event.t, event.kind, event.actor, payload_json(event))


def event_from_row(
    seq: int, t: float, kind: str, actor: str | None, payload: str | Mapping[str, Any]
) -> Event:
    """Decode one stored row. Raises :class:`EventDecodeError` naming the seq on any problem.

    The payload fields' JSON types are not checked here (the analyses decode every event of a
    log with this: they trust a log that a run wrote, or that ``friendsim log import`` or
    ``friendsim log verify`` passed); :func:`checked_event_from_row` checks them."""
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise EventDecodeError(f"event seq={seq}: unknown kind {kind!r}")
    data = _payload_data(seq, kind, payload)
    if not isinstance(data, dict):
        raise EventDecodeError(f"event seq={seq} ({kind}): payload is not a JSON object")
    version = data.pop("v", None)
    if version != SCHEMA_VERSION:
        raise EventDecodeError(
            f"event seq={seq} ({kind}): payload schema version {version!r}, "
            f"this friendsim reads version {SCHEMA_VERSION}"
        )
    builder = _BUILDERS.get(kind)
    if builder is not None and data.keys() == _FIELDS[kind]:
        return _built(seq, t, actor, data, builder)
    unknown = set(data) - _FIELDS[kind]
    if unknown:
        raise EventDecodeError(
            f"event seq={seq} ({kind}): unknown payload fields {sorted(unknown)}"
        )
    try:
        return cls(seq=seq, t=t, actor=actor, **_fields_of(kind, data))
    except (TypeError, ValueError) as exc:
        raise EventDecodeError(f"event seq={seq} ({kind}): {exc}") from exc


def _built(seq: int, t: float, actor: str | None, data: dict[str, Any], builder: _Builder) -> Event:
    """``cls(seq=seq, t=t, actor=actor, **_fields_of(kind, data))`` for a payload holding every
    field of its kind, the same object built by setting its slots (:mod:`friendsim._slots`): a
    frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, and the
    analyses and the live view decode every event of a log (a 10,000-agent run's: 150,000).
    With every field given, no default applies and no argument is missing or unknown, so the
    ``__init__`` could not have raised (a class with a ``__post_init__`` has no builder)."""
    cls, set_seq, set_t, set_actor, fields = builder
    e = object.__new__(cls)
    set_seq(e, seq)
    set_t(e, t)
    set_actor(e, actor)
    for name, set_field in fields:
        v = data[name]
        set_field(e, _freeze(v) if isinstance(v, list | dict) else v)
    return e


def checked_event_from_row(
    seq: int, t: float, kind: str, actor: str | None, payload: str | Mapping[str, Any]
) -> Event:
    """:func:`event_from_row` with the checks of an imported line (:func:`event_from_json`):
    ``seq`` an integer, ``t`` a finite number, ``actor`` a string or null, and every payload
    field of its declared JSON type. For a log friendsim did not write as it ran (a database
    from elsewhere, checked by ``friendsim log verify``); the analyses decode with
    :func:`event_from_row` alone and trust a log that a run wrote, or that import or verify
    passed. Raises :class:`EventDecodeError` naming the seq and the field
    (``event seq=5 (vote_cast): payload.value: expected an integer, got the string '1'``)."""
    try:
        _check_int(seq, "seq")
        if not (
            (type(t) is float and math.isfinite(t))
            or (type(t) is int and _INT64_MIN <= t <= _INT64_MAX)
        ):
            raise _fail("t", "a finite number", t)
        if actor is not None and type(actor) is not str:
            raise _fail("actor", "a string or null", actor)
    except EventDecodeError as exc:
        raise EventDecodeError(f"event seq={seq!r} ({kind}): {exc}") from None
    if kind not in EVENT_TYPES:
        raise EventDecodeError(f"event seq={seq}: unknown kind {kind!r}")
    data = _payload_data(seq, kind, payload)
    if type(data) is not dict:
        raise EventDecodeError(f"event seq={seq} ({kind}): payload is not a JSON object")
    checks, _ = _payload_checks(kind)
    try:
        for key, value in data.items():
            check = checks.get(key)
            if check is not None:
                check(value, f"payload.{key}")
    except EventDecodeError as exc:
        raise EventDecodeError(f"event seq={seq} ({kind}): {exc}") from None
    return event_from_row(seq, t, kind, actor, data)


def _payload_data(seq: int, kind: str, payload: Any) -> Any:
    """The stored ``payload`` decoded: JSON text parsed, a mapping copied. Anything else (a
    BLOB in a hand-edited database) is an :class:`EventDecodeError` naming the seq, as is
    text that is not JSON."""
    if isinstance(payload, str):
        try:
            return json.loads(payload)
        except json.JSONDecodeError as exc:
            raise EventDecodeError(f"event seq={seq} ({kind}): payload is not JSON: {exc}") from exc
        except RecursionError:
            raise EventDecodeError(
                f"event seq={seq} ({kind}): payload is not JSON: nested too deeply"
            ) from None
    if isinstance(payload, Mapping):
        return dict(payload)
    what = "a BLOB" if isinstance(payload, bytes | bytearray | memoryview) else repr(payload)
    raise EventDecodeError(f"event seq={seq} ({kind}): payload is not JSON text but {what}")


def event_to_json(event: Event) -> str:
    """One JSONL line: ``{"seq","t","kind","actor","payload"}`` with key-sorted payload (its
    non-finite floats as ``null``, as :func:`payload_json` stores them)."""
    return log_json(
        {
            "seq": event.seq,
            "t": event.t,
            "kind": event.kind,
            "actor": event.actor,
            "payload": event.payload(),
        }
    )


def row_to_json(seq: int, t: float, kind: str, actor: str | None, payload: str) -> str:
    """The JSONL line of one stored row: always ``event_to_json(event_from_row(...))``, the same
    string and the same errors, built without the event where that gives the same string.

    A run stores every payload as :func:`payload_json` writes it, and the line holds that text
    unchanged, so the line can be put together around the stored text. That is done only when
    it is certain to give the same string: the payload decodes to an object with exactly the
    kind's fields and ``"v": 1``, :func:`log_json` writes it back as the very text stored, and
    its tips (a guidance) decode; ``t`` is a finite float and ``actor`` a string or null.
    Anything else (a hand-edited or foreign log: other spacing or key order, a field missing,
    ``\\u`` escapes, a lone surrogate, a broken row) takes the decode-and-encode path, which is
    what the string and the errors are held to. orjson decodes (three times faster than the
    stdlib); the stdlib's encoder, the one the log is written with, judges: text it writes from
    a value is text the stdlib reads back as that value, so both decoders agree wherever the
    fast path is taken."""
    keys = _PAYLOAD_KEYS.get(kind)
    if (
        keys is not None
        and type(seq) is int
        and type(t) is float
        and math.isfinite(t)
        and (actor is None or type(actor) is str)
        and type(payload) is str
    ):
        try:
            data = orjson.loads(payload)
            same = (
                type(data) is dict
                and data.keys() == keys
                and type(data["v"]) is int
                and data["v"] == SCHEMA_VERSION
                and _LOG_ENCODER.encode(data) == payload
                and (kind != GuidanceIssued.kind or _tips_decode(data["tips"]))
            )
        except (ValueError, TypeError, RecursionError):  # the event's path says what is wrong
            same = False
        if same:
            who = "null" if actor is None else _LOG_ENCODER.encode(actor)
            return f'{{"actor":{who},"kind":"{kind}","payload":{payload},"seq":{seq},"t":{t!r}}}'
    return event_to_json(event_from_row(seq, t, kind, actor, payload))


def line_utf8(line: str) -> bytes:
    """A log row's line (:func:`row_to_json`) as UTF-8: the bytes ``friendsim log export``
    writes for it and the live view's stream sends in its ``data:`` line, the same in both.

    A line UTF-8 cannot encode holds a lone surrogate: its stored payload spells one with the
    JSON escape ``\\ud800`` (a hand edit or a foreign tool; friendsim never stores one, its
    store cannot encode one). That line is the same JSON with every non-ASCII character
    ``\\u``-escaped: one line of valid JSON that decodes to the same value, the surrogate
    included. Every other line is its UTF-8, unchanged."""
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(json.loads(line), separators=(",", ":"), sort_keys=True).encode("ascii")


_PAYLOAD_KEYS: dict[str, frozenset[str]] = {
    kind: fields | {"v"} for kind, fields in _FIELDS.items()
}
"""The keys of a stored payload of each kind that holds every field (what a run writes)."""


def _tips_decode(tips: Any) -> bool:
    """Whether a guidance's stored ``tips`` is a list; raises ``ValueError`` as the event would
    (:meth:`Tip.from_dict <friendsim.vocabulary.Tip.from_dict>`) for a tip it refuses."""
    if type(tips) is not list:
        return False
    for tip in tips:
        Tip.from_dict(tip)
    return True


def event_from_json(line: str) -> Event:
    """Inverse of :func:`event_to_json`, and the strict check of one line of an imported log.

    The line must be one JSON object with exactly the keys ``seq``, ``t``, ``kind``, ``actor``
    and ``payload``, each of the type :func:`event_to_json` writes: ``seq`` an integer, ``t`` a
    finite number, ``kind`` a known event kind, ``actor`` a string or null, ``payload`` an
    object holding ``"v"`` and the kind's fields, each of its declared type (integers are
    64-bit, as SQLite stores them; a float field takes a float or such an integer). Every string must be valid
    Unicode (JSON's ``\\uXXXX`` escapes can spell a lone surrogate, which no database stores).
    Stricter than Python's ``json``: no key twice in one object (Python keeps the last, silently),
    no ``NaN`` or ``Infinity`` and no number too large for a float (``1e999``), none of which a
    log friendsim writes holds nor the database or a JSON reader elsewhere would read back alike.
    Raises :class:`EventDecodeError` naming the key (``payload.tone``) and the problem."""
    try:
        obj = _STRICT_JSON.decode(line)
    except RecursionError:
        raise EventDecodeError("not valid JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise EventDecodeError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    try:
        if _MAYBE_SURROGATE.search(line):
            _check_unicode(obj, "")
        return _checked_event(obj)
    except RecursionError:
        raise EventDecodeError("nested too deeply to decode") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise EventDecodeError(f"not valid JSON for a log: the key {key!r} appears twice")
            seen.add(key)
    return obj


def _no_constant(name: str) -> float:
    raise EventDecodeError(f"not valid JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise EventDecodeError(f"not valid JSON for a log: the number {shown} is out of range")
    return value


_STRICT_JSON = json.JSONDecoder(
    object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_float=_finite_float
)
"""The decoder of an imported line (built once: ``json.loads`` with hooks builds one per call)."""

_LINE_KEYS = ("seq", "t", "kind", "actor", "payload")
_LINE_KEY_SET = frozenset(_LINE_KEYS)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAYBE_SURROGATE = re.compile(r"\\u[dD][89abcdefABCDEF]")
"""A ``\\uD800``..``\\uDFFF`` escape may be in the line (a literal ``\\\\u`` matches too: a
false alarm only costs the walk of :func:`_check_unicode`)."""


def _describe(value: Any) -> str:
    """``value`` as a message names it: its JSON type, and the value when it is short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        if abs(value) >= 10**30:
            return f"an integer of {len(str(abs(value)))} digits"
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, list):
        return "an array"
    return "an object"


def _at(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _check_unicode(value: Any, where: str) -> None:
    """Raise naming the first string (or object key) under ``value`` with a lone surrogate."""
    problem = unicode_problem(value, where)
    if problem is not None:
        raise EventDecodeError(problem)


_Check = Callable[[Any, str], None]


class _Mismatch(EventDecodeError):
    """The value at ``where`` is not of the expected JSON type."""

    def __init__(self, where: str, expected: str, value: Any) -> None:
        super().__init__(f"{where}: expected {expected}, got {_describe(value)}")
        self.where = where


def _fail(where: str, expected: str, value: Any) -> _Mismatch:
    return _Mismatch(where, expected, value)


def _is_int64(value: Any) -> bool:
    return type(value) is int and _INT64_MIN <= value <= _INT64_MAX


def _check_int(value: Any, where: str) -> None:
    if not _is_int64(value):
        expected = "an integer" if type(value) is not int else "a 64-bit integer"
        raise _fail(where, expected, value)


def _check_number(value: Any, where: str) -> None:
    if type(value) is not float and not _is_int64(value):
        raise _fail(where, "a number" if type(value) is not int else "a 64-bit integer", value)


def _check_str(value: Any, where: str) -> None:
    if type(value) is not str:
        raise _fail(where, "a string", value)


def _check_bool(value: Any, where: str) -> None:
    if type(value) is not bool:
        raise _fail(where, "a boolean", value)


def _check_any(value: Any, where: str) -> None:
    return None


_SCALARS: dict[Any, tuple[_Check, str]] = {
    int: (_check_int, "an integer"),
    float: (_check_number, "a number"),
    str: (_check_str, "a string"),
    bool: (_check_bool, "a boolean"),
    Any: (_check_any, "any JSON value"),
    Tip: (_check_any, "a tip"),  # decoded and checked by Tip.from_dict
}


def _all_int64(values: list[Any]) -> bool:
    return not values or (
        set(map(type, values)) == {int} and _INT64_MIN <= min(values) and max(values) <= _INT64_MAX
    )


def _all_str(values: list[Any]) -> bool:
    return not values or set(map(type, values)) == {str}


_SAME_TYPE: dict[_Check, Callable[[list[Any]], bool]] = {
    _check_int: _all_int64,
    _check_str: _all_str,
}
"""Whole-array fast checks for arrays of scalars (the item check then only finds the culprit)."""


def _type_check(tp: Any) -> tuple[_Check, str]:
    """The check of a JSON value against the annotation ``tp`` of an event field, and what it
    expects in words. Only the shapes event fields use; any other raises ``TypeError`` (an
    event kind with a new field type must teach this function, not go unchecked)."""
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner, expected = _type_check(next(a for a in args if a is not type(None)))

        def check_optional(value: Any, where: str) -> None:
            if value is not None:
                try:
                    inner(value, where)
                except _Mismatch as exc:
                    if exc.where != where:
                        raise  # a problem inside the value names its own place
                    raise _fail(where, f"{expected} or null", value) from None

        return check_optional, f"{expected} or null"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item, expected = _type_check(args[0])
        plural = f"an array of {expected.split(' ', 1)[1]}s"

        same = _SAME_TYPE.get(item)

        def check_array(value: Any, where: str) -> None:
            if type(value) is not list:
                raise _fail(where, plural, value)
            if same is not None and same(value):
                return  # the common case at C speed: feeds list hundreds of post ids
            for i, v in enumerate(value):
                item(v, f"{where}[{i}]")

        return check_array, plural
    if origin is Mapping and len(args) == 2 and args[0] is str:
        item, expected = _type_check(args[1])
        described = "an object" if args[1] is Any else f"an object of {expected}"

        def check_object(value: Any, where: str) -> None:
            if type(value) is not dict:
                raise _fail(where, described, value)
            if item is not _check_any:
                for k, v in value.items():
                    item(v, f"{where}.{k}")

        return check_object, described
    raise TypeError(f"no JSON check for the event field type {tp!r}")


_PAYLOAD_CHECKS: dict[str, tuple[dict[str, _Check], tuple[str, ...]]] = {}
"""Per kind: the check of each payload field, and the fields without a default (built on first
use from the event classes' annotations, so they cannot drift apart)."""


def _payload_checks(kind: str) -> tuple[dict[str, _Check], tuple[str, ...]]:
    got = _PAYLOAD_CHECKS.get(kind)
    if got is None:
        cls = EVENT_TYPES[kind]
        hints = typing.get_type_hints(cls)
        checks: dict[str, _Check] = {}
        required: list[str] = []
        for f in dataclasses.fields(cls):
            if f.name in _ENVELOPE:
                continue
            checks[f.name] = _type_check(hints[f.name])[0]
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required.append(f.name)
        got = _PAYLOAD_CHECKS[kind] = (checks, tuple(required))
    return got


def _checked_event(obj: Any) -> Event:
    if type(obj) is not dict:
        raise EventDecodeError(
            f"expected a JSON object with the keys {', '.join(_LINE_KEYS)}, got {_describe(obj)}"
        )
    if obj.keys() != _LINE_KEY_SET:
        for key in _LINE_KEYS:
            if key not in obj:
                raise EventDecodeError(f"missing key {key!r}")
        raise EventDecodeError(f"unknown key {sorted(set(obj) - _LINE_KEY_SET)[0]!r}")
    seq, t, kind, actor, payload = obj["seq"], obj["t"], obj["kind"], obj["actor"], obj["payload"]
    _check_int(seq, "seq")
    if not (
        (type(t) is float and math.isfinite(t))
        or (type(t) is int and _INT64_MIN <= t <= _INT64_MAX)
    ):
        raise _fail("t", "a finite number", t)
    if type(kind) is not str:
        raise _fail("kind", "a string", kind)
    if kind not in EVENT_TYPES:
        raise EventDecodeError(f"kind: unknown event kind {kind!r}")
    if actor is not None and type(actor) is not str:
        raise _fail("actor", "a string or null", actor)
    if type(payload) is not dict:
        raise _fail("payload", "an object", payload)
    version = payload.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise EventDecodeError(
            f"payload.v: schema version {version!r}, this friendsim reads version {SCHEMA_VERSION}"
        )
    checks, required = _payload_checks(kind)
    for key, value in payload.items():
        check = checks.get(key)
        if check is not None:
            check(value, f"payload.{key}")
        elif key != "v":
            raise EventDecodeError(f"payload.{key}: unknown field of a {kind} event")
    for key in required:
        if key not in payload:
            raise EventDecodeError(f"payload: missing field {key!r} of a {kind} event")
    return event_from_row(seq, t, kind, actor, payload)


def canonical_payload(value: Mapping[str, Any]) -> dict[str, Any]:
    """``value`` in the form a decoded payload field has (JSON round trip, lists as tuples), so
    an event built with it equals the event read back from the log."""
    return dict(_freeze(json.loads(json.dumps(dict(value), sort_keys=True))))
