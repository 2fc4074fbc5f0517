"""The moderator extension point: what a moderator is shown and what it may answer."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args, runtime_checkable

from friendsim.vocabulary import Failure

Action = Literal["remove", "label", "downrank", "shadowban", "suspend"]
ACTIONS: tuple[str, ...] = get_args(Action)


@dataclass(frozen=True, kw_only=True, slots=True)
class ModerationItem:
    """A public item as the moderator sees it. ``truth`` is the truth label of an injected item
    (or of the item a repost quotes), ``None`` for agents' own content."""

    post_id: int
    author: str
    text: str
    topic: str
    window: int
    parent_id: int | None = None
    quote_of: int | None = None
    truth: str | None = None
    source: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """One decision on an item. ``label`` is the fact-check text of a ``label``; ``windows``
    the length of a ``suspend`` (the author acts in none of the next ``windows`` windows)."""

    action: Action
    label: str = ""
    windows: int = 0
    reason: str = ""
    score: float | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"moderation action {self.action!r} is not one of {ACTIONS}")
        if self.action == "label" and not self.label.strip():
            raise ValueError("a label verdict needs the label text")
        if self.action == "suspend" and self.windows < 1:
            raise ValueError("a suspension lasts at least one window")
        if self.score is not None and not (
            isinstance(self.score, int | float)
            and not isinstance(self.score, bool)
            and math.isfinite(self.score)
        ):
            raise ValueError(f"a verdict's score must be a finite number, got {self.score!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Review:
    """A moderator's answer on one item: its verdicts (none: the item stays as it is), or a
    failure (the model's output stayed invalid after its re-asks)."""

    verdicts: tuple[Verdict, ...] = ()
    failure: Failure | None = None


@runtime_checkable
class Moderator(Protocol):
    """Reviews items one at a time, in log order.

    ``concurrent``: whether reviews may run at once (a stateless model-backed moderator); a
    stateful one (strike counts) is called strictly in order. Decisions must depend only on
    the items reviewed so far, so a re-drive over the log gives the live decisions.

    An answer that is not a :class:`Review` of :class:`Verdict` objects, or whose verdicts'
    ``label`` or ``reason`` hold text UTF-8 cannot encode (a lone surrogate), is the
    moderator's error on that item (``ActionFailed(stage="moderation",
    reason="moderator_error")``); the item stays as it is.
    """

    name: str
    concurrent: bool

    async def review(self, item: ModerationItem) -> Review: ...


class FakeModerator:
    """Answers fixed verdicts for chosen post ids (or for every item whose text contains a
    marker) and records what it was shown. For tests."""

    name = "fake"
    concurrent = False

    def __init__(
        self,
        verdicts: dict[int, Sequence[Verdict]] | None = None,
        *,
        marker: str | None = None,
        marker_verdicts: Sequence[Verdict] = (),
    ) -> None:
        self.verdicts = dict(verdicts or {})
        self.marker = marker
        self.marker_verdicts = tuple(marker_verdicts)
        self.seen: list[ModerationItem] = []

    async def review(self, item: ModerationItem) -> Review:
        self.seen.append(item)
        if self.marker is not None and self.marker in item.text:
            return Review(verdicts=self.marker_verdicts)
        return Review(verdicts=tuple(self.verdicts.get(item.post_id, ())))
