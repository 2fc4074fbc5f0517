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
no file.

``[moderation]`` — ``enabled``, ``kind`` (a registered moderator: ``rule``, ``llm``),
``params`` and ``provider`` (the LLM moderator's model; default ``[llm].provider``).

``[[surveys]]`` — ``name``, ``windows`` (asked at the end of each), ``sample`` (a seeded
fraction of the agents), ``questions`` (any of ``stance``, ``trust``, ``belief``, ``ipip``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from friendsim.registry import RegistryError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Item(_Section):
    """One item an intervention injects."""

    id: str = Field(min_length=1, max_length=80)
    text: str = Field(min_length=1, max_length=2000)
    topic: str = Field(min_length=1, max_length=120)
    source: str = Field(default="", max_length=120)
    truth: Literal["false", "true", "unverified"] = "unverified"


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


class ItemsFileError(ValueError):
    """An items file is missing or wrong; the message names the file and line."""


def load_items(path: Path) -> tuple[dict[str, Any], ...]:
    """The items of a JSONL file, each validated as an :class:`Item` (as plain dicts)."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise ItemsFileError(f"items file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ItemsFileError(f"{path}: cannot read: {exc}") from None
    out: list[dict[str, Any]] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = Item.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ItemsFileError(f"{path}: line {n}: not JSON ({exc.msg})") from None
        except RecursionError:
            raise ItemsFileError(f"{path}: line {n}: not JSON (nested too deeply)") from None
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "(item)"
            raise ItemsFileError(f"{path}: line {n}: {key}: {err['msg']}") from None
        out.append(item.model_dump())
    if not out:
        raise ItemsFileError(f"{path}: holds no items")
    ids = [i["id"] for i in out]
    if len(set(ids)) != len(ids):
        raise ItemsFileError(f"{path}: item ids repeat")
    return tuple(out)


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


def as_items(value: Any) -> tuple[Item, ...]:
    """Inline items (a list of mappings) as :class:`Item` s."""
    if isinstance(value, str):
        raise ValueError(f"items file {value!r} was not read before the run (inline_items)")
    return tuple(Item.model_validate(dict(v) if isinstance(v, Mapping) else v) for v in value)
