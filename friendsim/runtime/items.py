"""The items an ``inject`` intervention posts: the :class:`Item` model, reading an items file
(:func:`load_items`, JSONL, one item a line) and turning a config's inline items into
:class:`Item` s (:func:`as_items`).

Below both the experiment file's intervention sections
(:mod:`friendsim.runtime.instruments_config`, which re-exports these names) and the intervention
kinds (:mod:`friendsim.runtime.interventions`), so that neither imports the other for them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Item(BaseModel):
    """One item an intervention injects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=80)
    text: str = Field(min_length=1, max_length=2000)
    topic: str = Field(min_length=1, max_length=120)
    source: str = Field(default="", max_length=120)
    truth: Literal["false", "true", "unverified"] = "unverified"


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


def as_items(value: Any) -> tuple[Item, ...]:
    """Inline items (a list of mappings) as :class:`Item` s."""
    if isinstance(value, str):
        raise ValueError(f"items file {value!r} was not read before the run (inline_items)")
    return tuple(Item.model_validate(dict(v) if isinstance(v, Mapping) else v) for v in value)
