"""Interventions and moderation actions over time, from the log.

* :func:`interventions_table` — one row per applied intervention (window, kind, name) with the
  effects that followed it (items injected, agents suspended or added, persona changes);
* :func:`moderation_over_time` — per window and action, how many decisions (and by which
  moderator), plus the failures of the moderator (``ActionFailed(stage="moderation")``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from friendsim.platform.events import (
    ActionFailed,
    AgentRegistered,
    AgentSuspended,
    Event,
    InterventionApplied,
    ItemInjected,
    ModerationDecided,
    PersonaChanged,
    WindowStarted,
)

OUTSIDE = "outside account"
"""The ``role`` attribute of an account an injection registers (not a newcomer)."""


def interventions_table(events: Iterable[Event]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    window = 0
    joining: set[str] = set()  # the agents the current intervention adds
    for e in events:
        if isinstance(e, WindowStarted):
            window = e.window
            current = None
        elif isinstance(e, InterventionApplied):
            current = {
                "window": e.window,
                "t": e.t,
                "kind": e.intervention,
                "name": e.name,
                "injected": 0,
                "suspended": 0,
                "joined": 0,
                "changed": 0,
            }
            rows.append(current)
            joining = set()
        elif current is not None and e.t == current["t"]:
            match e:
                case ItemInjected():
                    current["injected"] += 1
                case AgentSuspended():
                    current["suspended"] += 1
                case AgentRegistered() if window > 0 and e.attributes.get("role") != OUTSIDE:
                    current["joined"] += 1
                    joining.add(e.actor or "")
                case PersonaChanged() if e.agent not in joining:  # not a newcomer's reward mix
                    current["changed"] += 1
                case _:
                    pass
    return rows


def moderation_over_time(events: Iterable[Event]) -> list[dict[str, Any]]:
    counts: dict[tuple[int, str, str], int] = {}
    for e in events:
        if isinstance(e, ModerationDecided):
            key = (e.window, e.moderator, e.action)
            counts[key] = counts.get(key, 0) + 1
        elif isinstance(e, ActionFailed) and e.stage == "moderation":
            key = (e.window or 0, str((e.action or {}).get("moderator", "")), "failed")
            counts[key] = counts.get(key, 0) + 1
    return [
        {"window": w, "moderator": m, "action": a, "count": n}
        for (w, m, a), n in sorted(counts.items())
    ]
