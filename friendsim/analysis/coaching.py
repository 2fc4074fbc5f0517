"""Did the agents follow the coach? Tip adherence measured from the event log alone.

A ``GuidanceIssued`` event after window ``w`` gives agent ``a`` a list of tips. Each tip is judged
against what ``a`` did in window ``w + 1`` (the window the tips were meant for):

* the tip's *action* must appear among the agent's logged actions of that window: ``POST`` a
  top-level post, ``COM`` a comment, ``REPOST`` a quote, ``DM`` a direct message, ``LIKE`` /
  ``DISLIKE`` a vote +1 / -1, ``FOLLOW`` / ``UNFOLLOW``; ``NOT`` (do nothing) leaves no event, so
  it counts as followed when the agent created no content in the window;
* when the tip names a *user* as its target, one such action must address that user: a comment on
  or a vote for one of their posts, a DM to them, a follow of them, or an @mention of them.

A tip whose next window never happened (the last window's tips) is *pending*, not "ignored".
The rates answer the paper's question "is the coach working?" as a behavioural check; reward
effects are in the reward curves.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from friendsim.platform.events import (
    DirectMessageSent,
    Event,
    Followed,
    GuidanceIssued,
    PostCreated,
    Unfollowed,
    VoteCast,
    VoteChanged,
    WindowEnded,
    WindowStarted,
)

_CONTENT = frozenset({"POST", "COM", "REPOST", "DM"})


@dataclass(slots=True)
class _Acts:
    """What one agent did in one window: (action type, addressed user or None) pairs."""

    acts: set[tuple[str, str | None]] = field(default_factory=set)


def _classify(ev: Event, author_of: Mapping[int, str]) -> tuple[str, list[str | None]] | None:
    """The action type of ``ev`` and the users it addresses (``[None]`` when nobody)."""
    match ev:
        case PostCreated():
            mentioned: list[str | None] = list(ev.mentions)
            if ev.parent_id is not None:
                return "COM", [author_of.get(ev.parent_id), *mentioned]
            if ev.quote_of is not None:
                return "REPOST", [author_of.get(ev.quote_of), *mentioned]
            return "POST", [*mentioned] or [None]
        case DirectMessageSent():
            return "DM", [ev.recipient, *ev.mentions]
        case VoteCast() | VoteChanged():
            return ("LIKE" if ev.value > 0 else "DISLIKE"), [ev.author]
        case Followed():
            return "FOLLOW", [ev.target]
        case Unfollowed():
            return "UNFOLLOW", [ev.target]
    return None


def tip_adherence(events: Iterable[Event]) -> dict[str, Any]:
    """Tip-following from a log (events in seq order); JSON-ready.

    Keys: ``tips`` (one row per tip: ``window`` issued after, ``agent``, ``action``, ``target``,
    ``topic``, ``text``, ``followed``: true/false, or None while pending), ``by_action``
    (action -> ``{"issued", "judged", "followed", "rate"}``), ``by_window`` (window the tips were
    issued after -> the same counts), ``overall`` (the same counts over all tips), ``agents``
    (agent -> the same counts) and ``coaches`` (coach names seen).
    """
    author_of: dict[int, str] = {}
    did: dict[int, dict[str, _Acts]] = defaultdict(lambda: defaultdict(_Acts))
    guidance: list[GuidanceIssued] = []
    windows_seen: set[int] = set()
    window: int | None = None
    for ev in events:
        match ev:
            case WindowStarted():
                window = ev.window
                windows_seen.add(ev.window)
            case WindowEnded():
                window = None
            case GuidanceIssued():
                guidance.append(ev)
        if isinstance(ev, PostCreated):
            author_of[ev.post_id] = str(ev.actor)
        if window is None or ev.actor is None:
            continue
        kind = _classify(ev, author_of)
        if kind is not None:
            action, users = kind
            bucket = did[window][ev.actor].acts
            for u in users:
                bucket.add((action, u))
    rows: list[dict[str, Any]] = []
    for g in guidance:
        nxt = g.window + 1
        acts = did.get(nxt, {}).get(g.agent)
        done = acts.acts if acts is not None else set()
        for tip in g.tips:
            action = str(tip.action)
            target = tip.target
            followed: bool | None
            if nxt not in windows_seen:
                followed = None
            elif action == "NOT":
                followed = not any(a in _CONTENT for a, _ in done)
            elif isinstance(target, str) and target and not target.endswith("post"):
                followed = (action, target) in done
            else:
                followed = any(a == action for a, _ in done)
            rows.append(
                {
                    "window": g.window,
                    "agent": g.agent,
                    "coach": g.coach,
                    "action": action,
                    "target": target,
                    "topic": tip.topic,
                    "text": tip.text,
                    "followed": followed,
                }
            )
    return {
        "tips": rows,
        "overall": _counts(rows),
        "by_action": {k: _counts(v) for k, v in sorted(_group(rows, "action").items())},
        "by_window": {k: _counts(v) for k, v in sorted(_group(rows, "window").items())},
        "agents": {k: _counts(v) for k, v in sorted(_group(rows, "agent").items())},
        "coaches": sorted({str(g.coach) for g in guidance}),
    }


def _group(rows: list[dict[str, Any]], key: str) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r[key]].append(r)
    return out


def _counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    c = Counter(r["followed"] for r in rows)
    judged = c[True] + c[False]
    return {
        "issued": len(rows),
        "judged": judged,
        "followed": c[True],
        "rate": c[True] / judged if judged else None,
    }
