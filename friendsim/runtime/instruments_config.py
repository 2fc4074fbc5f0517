"""The experiment file's research-instrument sections: ``[[interventions]]``, ``[moderation]``
and ``[[surveys]]`` (validated by pydantic, unknown keys are errors).

``[[interventions]]`` — one table per scheduled intervention: ``kind`` (a registered
intervention, :data:`~friendsim.runtime.interventions.INTERVENTIONS`), when (``window = W``: at
the start of window W; or ``at = T``: at virtual time T, i.e. before the first continuous slice
at or after T, or at the start of the round containing T), an optional ``name``, and the kind's
own keys (checked against its params model)::

    [[interventions]]
    kind = "inject"
    window = 3
    items = "misinformation_items.jsonl"   # or an inline list of {id, text, topic, source, truth}
    by = "newsdesk"                        # an outside account (or: agents = ["a01", "a02"])

Item files are JSONL, relative to the config file; :func:`inline_items` replaces the path by
the items themselves before a run starts, so the run's manifest holds them and a re-run needs
no file. The items themselves (:class:`~friendsim.runtime.items.Item`, :func:`load_items`) are
defined in :mod:`friendsim.runtime.items`, below the intervention kinds, and re-exported here.

``[moderation]`` — ``enabled``, ``kind`` (a registered moderator: ``rule``, ``llm``),
``params`` and ``provider`` (the LLM moderator's model; default ``[llm].provider``).

``[[surveys]]`` — ``name``, ``windows`` (asked at the end of each), ``sample`` (a seeded
fraction of the agents), ``questions`` (any of ``stance``, ``trust``, ``belief``, ``ipip``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from friendsim.registry import RegistryError
from friendsim.runtime.items import Item, ItemsFileError, load_items


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InterventionSpec(BaseModel):
    """``[[interventions]]``: ``kind``, ``window`` or ``at``, ``name``, and the kind's keys."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str
    window: int | None = Field(default=None, ge=1)
    at: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    name: str = ""

    @property
    def params(self) -> dict[str, Any]:
        """The kind's own keys."""
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _check(self) -> InterventionSpec:
        if (self.window is None) == (self.at is None):
            raise ValueError("an intervention takes either 'window' or 'at' (virtual seconds)")
        from friendsim.runtime.interventions import INTERVENTIONS

        try:
            INTERVENTIONS.check_params(self.kind, self.params)
        except RegistryError as exc:
            raise ValueError(str(exc)) from None
        return self


class ModerationSection(_Section):
    """``[moderation]``: a moderator on the bus (off by default)."""

    enabled: bool = False
    kind: str = "rule"
    params: dict[str, Any] = Field(default_factory=dict)
    provider: str | None = None

    @model_validator(mode="after")
    def _check_registered(self) -> ModerationSection:
        from friendsim.moderation.kinds import MODERATORS

        try:
            MODERATORS.check_params(self.kind, self.params)
        except RegistryError as exc:
            raise ValueError(str(exc)) from None
        return self


SurveyQuestionKind = Literal["stance", "trust", "belief", "ipip"]


class SurveySpec(_Section):
    """``[[surveys]]``: asked at the end of each of ``windows``."""

    name: str = Field(default="survey", min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_.\-]+$")
    windows: tuple[int, ...] = Field(min_length=1)
    sample: float = Field(default=1.0, gt=0, le=1)
    questions: tuple[SurveyQuestionKind, ...] = ("stance", "trust", "belief")

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(w < 1 for w in v):
            raise ValueError("survey windows are numbered from 1")
        return tuple(sorted(set(v)))


def inline_items(
    interventions: tuple[InterventionSpec, ...], base: Path
) -> tuple[InterventionSpec, ...]:
    """``interventions`` with every ``items = "file"`` replaced by the file's items."""
    out = []
    for spec in interventions:
        items = spec.params.get("items")
        if isinstance(items, str):
            p = Path(items).expanduser()
            data = spec.model_dump()
            data["items"] = [dict(i) for i in load_items(p if p.is_absolute() else base / p)]
            spec = InterventionSpec.model_validate(data)
        out.append(spec)
    return tuple(out)


__all__ = [
    "InterventionSpec",
    "Item",
    "ItemsFileError",
    "ModerationSection",
    "SurveyQuestionKind",
    "SurveySpec",
    "inline_items",
    "load_items",
]
