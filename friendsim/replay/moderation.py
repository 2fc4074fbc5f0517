"""``friendsim replay RUN --redrive --moderator NAME``: what would this moderator have done?

The recorded log is read (a snapshot; the run is never written) and every public item is shown
to the moderator in log order, exactly as the live service shows them (the same
:class:`~friendsim.moderation.service.ItemQueue`: truth labels of injected items, the window of
each item). No model is called: a moderator that needs one is refused.

The decisions are compared with the ``ModerationDecided`` events the run recorded, moderation
phase by moderation phase: a fork may have switched ``[moderation]`` on, off or to other
parameters from a window on (:func:`~friendsim.replay.phases.recorded_phases`), and the live
service starts a fresh moderator at each such switch. So each span of windows the run moderated
with this moderator and these parameters is reviewed again by a fresh moderator of its own, over
the items of those windows only, and compared with what was recorded for them: for the
moderator and parameters the run used, they are equal (tested). Windows moderated otherwise, or
not at all, are not compared (``compared_windows`` says which were; ``equal_to_recorded`` is
``None`` when none were). The parameters default to those of the last span that used this
moderator, updated with the ones given.

The counterfactual (``decisions``) is one moderator over the whole log, and holds the log fixed:
a decision that would have changed what agents did afterwards (a removal, a suspension) cannot
change the recorded posts. Re-run the experiment (``friendsim run --fork``) for that.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from friendsim.moderation.base import ModerationItem, Moderator
from friendsim.moderation.kinds import MODERATORS, uses_llm
from friendsim.moderation.service import ItemQueue, decision_event
from friendsim.platform.events import Event, ModerationDecided, PostCreated
from friendsim.registry import RegistryError
from friendsim.rundir.errors import RunInputError
from friendsim.rundir.layout import MANIFEST
from friendsim.rundir.manifest import Manifest
from friendsim.runtime.config import ConfigError, parse_config
from friendsim.runtime.instruments_config import ModerationSection

from .phases import recorded_phases
from .redrive import LogReader
from .rerun import inspect_run

COMPARED = ("window", "post_id", "author", "action", "label", "from_window", "until_window")


def decision_key(e: ModerationDecided) -> dict[str, Any]:
    """The fields that say what a decision did (without its time and free-text reason)."""
    return {k: getattr(e, k) for k in COMPARED}


@dataclass(frozen=True, kw_only=True, slots=True)
class ModerationSpan:
    """Windows ``start`` to ``end`` (inclusive; ``None``: to the end of the run) that the run
    moderated under one ``[moderation]`` section (one live moderator, its state carried)."""

    start: int
    end: int | None
    moderation: ModerationSection

    def covers(self, window: int) -> bool:
        return self.start <= window and (self.end is None or window <= self.end)

    def uses(self, moderator: str, params: Mapping[str, Any] | None = None) -> bool:
        """Whether this span was moderated by ``moderator`` (with ``params``, when given)."""
        mod = self.moderation
        return (
            mod.enabled
            and mod.kind == moderator
            and (params is None or dict(mod.params) == dict(params))
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ModerationRedrive:
    moderator: str
    params: Mapping[str, Any]
    items: int
    decisions: tuple[dict[str, Any], ...]
    recorded: tuple[dict[str, Any], ...]
    compared_windows: tuple[tuple[int, int], ...]
    """The spans of windows compared with the recorded decisions (first, last)."""
    equal_to_recorded: bool | None
    """Whether the re-driven decisions of every compared span equal the recorded ones;
    ``None`` when the run never used this moderator with these parameters."""

    @property
    def equal(self) -> bool | None:
        return self.equal_to_recorded

    def to_json(self) -> dict[str, Any]:
        by_action: dict[str, int] = {}
        for d in self.decisions:
            by_action[d["action"]] = by_action.get(d["action"], 0) + 1
        return {
            "moderator": self.moderator,
            "params": dict(self.params),
            "items_reviewed": self.items,
            "decisions": list(self.decisions),
            "by_action": by_action,
            "recorded_decisions": len(self.recorded),
            "compared_windows": [list(span) for span in self.compared_windows],
            "equal_to_recorded": self.equal_to_recorded,
        }


def moderation_spans(run_dir: Path, manifest: Manifest) -> tuple[ModerationSpan, ...]:
    """The run's moderation spans, from its recorded config and a fork's lineage: consecutive
    phases with the same ``[moderation]`` make one span, as they make one live moderator. A run
    that is not a fork has one span, read as recorded (its moderator need not be installed
    here: another one can still be re-driven over its log)."""
    source = run_dir / MANIFEST
    if not manifest.fork:
        raw = dict((manifest.config or {}).get("moderation") or {})
        recorded = ModerationSection.model_construct(
            enabled=bool(raw.get("enabled", False)),
            kind=str(raw.get("kind", "rule")),
            params=dict(raw.get("params") or {}),
        )
        return (ModerationSpan(start=1, end=None, moderation=recorded),)
    try:
        cfg = parse_config(manifest.config or {}, source=source)
    except ConfigError as exc:
        raise RunInputError(f"{source}: the recorded config is invalid here: {exc}") from None
    merged: list[tuple[int, ModerationSection]] = []
    for phase in recorded_phases(manifest, cfg, source=source):
        if not merged or merged[-1][1] != phase.config.moderation:
            merged.append((phase.start, phase.config.moderation))
    ends = [start - 1 for start, _ in merged[1:]] + [None]
    return tuple(
        ModerationSpan(start=start, end=end, moderation=mod)
        for (start, mod), end in zip(merged, ends, strict=True)
    )


def moderator_params(
    spans: tuple[ModerationSpan, ...], name: str, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """The parameters of the last span moderated by ``name`` (none: ``{}``), updated with
    ``changes``."""
    used = [s for s in spans if s.uses(name)]
    base = dict(used[-1].moderation.params) if used else {}
    return {**base, **dict(changes)}


class _Reviewer:
    """One moderator instance reviewing the items of the windows ``span`` covers, in log
    order, and what it decides."""

    def __init__(self, impl: Moderator, span: ModerationSpan) -> None:
        self.impl = impl
        self.span = span
        self.decisions: list[dict[str, Any]] = []

    async def review(self, item: ModerationItem) -> None:
        if self.span.covers(item.window):
            review = await self.impl.review(item)
            for v in review.verdicts:
                self.decisions.append(decision_key(decision_event(item, v, self.impl.name, t=0.0)))


async def redrive_moderation(
    run_dir: str | Path, *, moderator: str, changes: Mapping[str, Any] | None = None
) -> ModerationRedrive:
    """Review every item of ``run_dir``'s log with ``moderator`` (see the module docstring)."""
    run = Path(run_dir)
    try:
        if uses_llm(moderator):
            raise RunInputError(
                f"moderator {moderator!r} needs a model; a re-drive makes no model call "
                "(re-run the experiment with `friendsim run --fork` instead)"
            )
    except RegistryError as exc:
        raise RunInputError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="friendsim-moderation-") as tmp:
        manifest, copy, summary, _ = await asyncio.to_thread(inspect_run, run, Path(tmp))
        spans = moderation_spans(run, manifest)
        params = moderator_params(spans, moderator, changes or {})
        checked = [s for s in spans if s.uses(moderator, params)]
        try:
            whole = _Reviewer(
                MODERATORS.create(moderator, params, llm=None),
                ModerationSpan(start=1, end=None, moderation=ModerationSection()),
            )
            checks = [
                whole  # a run moderated so from its start: the counterfactual is the check
                if (s.start, s.end) == (1, None)
                else _Reviewer(MODERATORS.create(moderator, params, llm=None), s)
                for s in checked
            ]
        except RegistryError as exc:  # it names the moderator already
            raise RunInputError(str(exc)) from None
        except ValueError as exc:
            raise RunInputError(f"moderator {moderator!r}: {exc}") from None
        name = whole.impl.name
        reviewers = [whole, *(c for c in checks if c is not whole)]
        reader = await LogReader.open(copy)
        queue = ItemQueue()
        recorded: list[dict[str, Any]] = []
        items = 0

        async def review_queued() -> None:
            nonlocal items
            for item in queue.take():
                items += 1
                for reviewer in reviewers:
                    await reviewer.review(item)

        try:
            nxt = 1
            while nxt <= summary.last:
                batch: list[Event] = await reader.read(nxt, 1000)
                if not batch:
                    break
                for event in batch:
                    if (
                        len(queue)
                        and not isinstance(event, PostCreated)
                        and event.kind != "item_injected"
                    ):
                        await review_queued()
                    queue.feed(event)
                    if isinstance(event, ModerationDecided) and event.moderator == name:
                        recorded.append(decision_key(event))
                nxt = batch[-1].seq + 1
            await review_queued()
        finally:
            await reader.aclose()
    last = max(summary.last_window, *(s.start for s in checked), 0)
    return ModerationRedrive(
        moderator=moderator,
        params=params,
        items=items,
        decisions=tuple(whole.decisions),
        recorded=tuple(recorded),
        compared_windows=tuple((s.start, s.end if s.end is not None else last) for s in checked),
        equal_to_recorded=all(
            c.decisions == [d for d in recorded if c.span.covers(d["window"])] for c in checks
        )
        if checks
        else None,
    )
