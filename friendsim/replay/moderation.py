"""``friendsim replay RUN --redrive --moderator NAME``: what would this moderator have done?

The recorded log is read (a snapshot; the run is never written) and every public item is shown
to the moderator in log order, exactly as the live service shows them (the same
:class:`~friendsim.moderation.service.ItemQueue`: truth labels of injected items, the window of
each item). No model is called: a moderator that needs one is refused. The decisions are
compared with the ``ModerationDecided`` events the run recorded for a moderator of that name:
for the moderator and parameters the run used, they are equal (tested).

The counterfactual holds the log fixed: a decision that would have changed what agents did
afterwards (a removal, a suspension) cannot change the recorded posts. Re-run the experiment
(``friendsim run --fork``) for that.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from friendsim.moderation.kinds import MODERATORS, uses_llm
from friendsim.moderation.service import ItemQueue, decision_event
from friendsim.platform.events import Event, ModerationDecided, PostCreated
from friendsim.registry import RegistryError
from friendsim.rundir.errors import RunInputError

from .redrive import LogReader
from .rerun import inspect_run

COMPARED = ("window", "post_id", "author", "action", "label", "from_window", "until_window")


def decision_key(e: ModerationDecided) -> dict[str, Any]:
    """The fields that say what a decision did (without its time and free-text reason)."""
    return {k: getattr(e, k) for k in COMPARED}


@dataclass(frozen=True, kw_only=True, slots=True)
class ModerationRedrive:
    moderator: str
    params: Mapping[str, Any]
    items: int
    decisions: tuple[dict[str, Any], ...]
    recorded: tuple[dict[str, Any], ...]

    @property
    def equal(self) -> bool:
        return self.decisions == self.recorded

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
            "equal_to_recorded": self.equal,
        }


def moderator_params(
    manifest_config: Mapping[str, Any], name: str, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """The run's own moderator parameters when it used ``name``, updated with ``changes``."""
    recorded = manifest_config.get("moderation") or {}
    base = dict(recorded.get("params") or {}) if recorded.get("kind") == name else {}
    return {**base, **dict(changes)}


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
        params = moderator_params(manifest.config or {}, moderator, changes or {})
        try:
            impl = MODERATORS.create(moderator, params, llm=None)
        except (RegistryError, ValueError) as exc:
            raise RunInputError(f"moderator {moderator!r}: {exc}") from None
        reader = await LogReader.open(copy)
        queue = ItemQueue()
        decisions: list[dict[str, Any]] = []
        recorded: list[dict[str, Any]] = []
        items = 0

        async def review_queued() -> None:
            nonlocal items
            for item in queue.take():
                items += 1
                review = await impl.review(item)
                for v in review.verdicts:
                    decisions.append(decision_key(decision_event(item, v, impl.name, t=0.0)))

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
                    if isinstance(event, ModerationDecided) and event.moderator == impl.name:
                        recorded.append(decision_key(event))
                nxt = batch[-1].seq + 1
            await review_queued()
        finally:
            await reader.aclose()
    return ModerationRedrive(
        moderator=moderator,
        params=params,
        items=items,
        decisions=tuple(decisions),
        recorded=tuple(recorded),
    )
