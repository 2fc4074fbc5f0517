"""Re-drive subscribers over an old log: evaluate new reward settings or a new coach offline.

A stored log is published through a real :class:`~friendsim.platform.bus.EventBus` whose
catch-up reader is a read-only view of a snapshot of the run's ``events.db`` (:class:`LogReader`):
subscribers get the events exactly as live subscribers did (same ``Subscription`` code, seq order,
from seq 1), so the same scorer/coach code serves live runs and replays. Nothing is written to the
old run, no event is recorded and no model is called: the rule coach is deterministic; an LLM
coach is not offered here (its prompts depend on the new context, so recorded answers would not
match; re-run with ``friendsim run --fork`` for that).

:func:`redrive` feeds every event to two :class:`~friendsim.analysis.rewards.RewardScorer`\\ s —
the run's recorded parameters and the new ones — and, when a coach is given, to a
:class:`~friendsim.coach.context.ContextTracker`; at each ``WindowEnded`` it asks the coach for
every agent's tips. The result (per-window scores under both settings, the new guidance, and the
guidance the run actually recorded) is JSON-ready.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from friendsim.analysis.rewards import AgentScores, RewardLogError, RewardScorer
from friendsim.analysis.rewards_cli import MalformedLogError, malformed_events_named
from friendsim.analysis.rewards_params import RewardConfigError, RewardParams
from friendsim.coach.base import Coach
from friendsim.coach.context import ContextTracker
from friendsim.platform.bus import EventBus
from friendsim.platform.events import (
    Event,
    EventDecodeError,
    GuidanceIssued,
    WindowEnded,
    event_from_row,
)
from friendsim.rundir.errors import RunInputError
from friendsim.rundir.layout import EVENTS_DB

from .rerun import inspect_run

COACHES = ("none", "rule")


class LogReader:
    """Async read access to a (snapshot) log: the ``read(from_seq, limit)`` a bus catches up with."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, db: Path) -> LogReader:
        conn = await aiosqlite.connect(f"file:{db}?mode=ro", uri=True)
        return cls(conn)

    async def read(self, from_seq: int, limit: int) -> list[Event]:
        rows = await self._conn.execute_fetchall(
            "SELECT seq, t, kind, actor, payload FROM events WHERE seq >= ? ORDER BY seq LIMIT ?",
            (from_seq, limit),
        )
        return [event_from_row(*r) for r in rows]

    async def aclose(self) -> None:
        await self._conn.close()


def parse_reward_changes(items: list[str] | None) -> dict[str, Any]:
    """``["beta_emo=-0.5", "sentiment=lexicon"]`` -> ``{"beta_emo": -0.5, "sentiment": "lexicon"}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RunInputError(f"reward setting {item!r}: expected NAME=VALUE")
        key = key.strip()
        try:
            out[key] = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            out[key] = value.strip()
    return out


def make_coach(name: str) -> Coach | None:
    match name:
        case "none":
            return None
        case "rule":
            from friendsim.coach.rule import RuleCoach

            return RuleCoach()
    raise RunInputError(f"unknown coach {name!r}; redrive offers {', '.join(COACHES)}")


def _scores_json(scores: list[AgentScores]) -> dict[str, Any]:
    return {
        s.agent: {"total": s.total, "components": dict(s.components)}
        for s in sorted(scores, key=lambda s: s.agent)
    }


def _mean(scores: list[AgentScores]) -> float:
    return sum(s.total for s in scores) / len(scores) if scores else 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class RedriveResult:
    run_dir: Path
    params: RewardParams
    recorded_params: RewardParams
    coach: str
    events: int
    windows: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "rewards": dataclasses.asdict(self.params),
            "recorded_rewards": dataclasses.asdict(self.recorded_params),
            "coach": self.coach,
            "events": self.events,
            "windows": list(self.windows),
            "mean_total": [w["mean_total"] for w in self.windows],
            "recorded_mean_total": [w["recorded_mean_total"] for w in self.windows],
        }


async def redrive(
    run_dir: str | Path,
    *,
    rewards: Mapping[str, Any] | None = None,
    coach: str = "none",
) -> RedriveResult:
    """Score (and coach) the log of ``run_dir`` under new settings; the run is only read.

    An event that cannot be decoded, or that breaks the windows' nesting, is a
    :class:`RunInputError` naming the log, the seq and (for a mistyped field) the field."""
    run = Path(run_dir)
    coach_impl = make_coach(coach)
    with tempfile.TemporaryDirectory(prefix="friendsim-redrive-") as tmp:
        manifest, copy, summary, _ = await asyncio.to_thread(inspect_run, run, Path(tmp))
        try:
            recorded = RewardParams.from_dict(manifest.rewards)
            params = RewardParams.from_dict({**recorded.to_dict(), **dict(rewards or {})})
        except (RewardConfigError, TypeError) as exc:
            raise RunInputError(f"reward settings: {exc}") from None
        lambdas = manifest.lambdas
        theme = manifest.theme
        new = RewardScorer(params=params, lambdas=lambdas)
        old = RewardScorer(params=recorded, lambdas=lambdas)
        tracker = ContextTracker()
        reader = await LogReader.open(copy)
        bus = EventBus(reader.read, last_published=summary.last)
        windows: list[dict[str, Any]] = []
        recorded_tips: dict[int, dict[str, Any]] = {}
        try:
            with malformed_events_named(copy, label=run / EVENTS_DB):
                if summary.count:
                    async with bus.subscribe(name="redrive", from_seq=1) as sub:
                        async for event in sub:
                            tracker.feed(event)
                            match event:
                                case GuidanceIssued(agent=agent, window=w, tips=tips):
                                    recorded_tips.setdefault(w, {})[agent] = [
                                        t.to_dict() for t in tips
                                    ]
                                case WindowEnded(window=w):
                                    scores = new.feed(event)
                                    windows.append(
                                        await _window(
                                            w,
                                            scores,
                                            old.feed(event),
                                            tracker,
                                            new,
                                            coach_impl,
                                            theme,
                                        )
                                    )
                                case _:
                                    new.feed(event)
                                    old.feed(event)
                            if event.seq >= summary.last:
                                break
        except MalformedLogError as exc:
            raise RunInputError(str(exc)) from exc
        except (EventDecodeError, RewardLogError) as exc:  # they name the seq, not the log
            raise RunInputError(f"{run / EVENTS_DB}: {exc}") from exc
        finally:
            await bus.close()
            await reader.aclose()
    for entry in windows:
        entry["recorded_guidance"] = recorded_tips.get(entry["window"], {})
    return RedriveResult(
        run_dir=run,
        params=params,
        recorded_params=recorded,
        coach=coach,
        events=summary.count,
        windows=tuple(windows),
    )


async def _window(
    w: int,
    scores: list[AgentScores],
    recorded: list[AgentScores],
    tracker: ContextTracker,
    scorer: RewardScorer,
    coach: Coach | None,
    theme: str,
) -> dict[str, Any]:
    guidance: dict[str, Any] = {}
    if coach is not None:
        for s in sorted(scores, key=lambda s: s.agent):
            ctx = tracker.context(s, scorer.lambdas_of(s.agent), theme=theme)
            guidance[s.agent] = [t.to_dict() for t in await coach.advise(ctx)]
    return {
        "window": w,
        "mean_total": _mean(scores),
        "recorded_mean_total": _mean(recorded),
        "scores": _scores_json(scores),
        "recorded_scores": _scores_json(recorded),
        "guidance": guidance,
    }
