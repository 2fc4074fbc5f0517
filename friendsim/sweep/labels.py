"""What a reader calls a sweep's grid cells: short labels that tell the cells apart.

A cell's directory name (:func:`friendsim.sweep.config.cell_name`) is a slug of every setting it
overrides, safe for a file system and stable across versions; it is no name to read in a table
(``moderation.params-_false_action_none_toxic_action_none``). A cell's *label* is what every view
of a sweep shows instead (``friendsim analyze``, ``aggregate.md``, the report, the live view).

Per grid key, the label of a value is the one the sweep file gives (``[sweep] labels``, one per
value in the grid's order) or an automatic one: a scalar as written, after its key
(``feed.ranker=chrono``: a bare ``true`` would not say what it sets), a mapping as the entries
that are not the same in every value of that key's list (``false_action=label, toxicity=0.8``;
the whole mapping when none differ). A cell's label joins its keys' labels with ``, ``: a given
label bare when the grid has one key, else as ``key=label`` (an automatic mapping as
``key={...}``). Labels that come out the same are told apart by `` #2``, `` #3`` ..., so a
cell's label names it within its sweep.

Nothing here is heavy or has side effects: readers of old ``sweep.json`` files (written before
labels, so holding none) compute the automatic labels from the grid they record
(:func:`labels_of_record`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

Grid = Sequence[tuple[str, Sequence[Any]]]


def value_text(value: Any) -> str:
    """``value`` as a sweep file writes it, compactly: strings bare, booleans ``true``/``false``,
    lists ``[a, b]``, tables ``{k=v, ...}``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={value_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _differing(value: Mapping[str, Any], values: Sequence[Any]) -> str:
    """The entries of the mapping ``value`` not the same in every value of ``values``."""
    others = [v for v in values if v is not value]
    keep = [
        (k, v)
        for k, v in value.items()
        if any(not isinstance(o, Mapping) or k not in o or not _same(o[k], v) for o in others)
    ]
    return ", ".join(f"{k}={value_text(v)}" for k, v in (keep or list(value.items())))


def _part(key: str, value: Any, values: Sequence[Any], keys: int, given: str | None) -> str:
    """What a cell's label says of grid key ``key`` set to ``value`` (one of ``values``) in a
    grid of ``keys`` keys; ``given``: the sweep file's label of that value."""
    if given is not None:
        return given if keys == 1 else f"{key}={given}"
    if isinstance(value, Mapping):
        diff = _differing(value, values)
        return diff if keys == 1 else f"{key}={{{diff}}}"
    return f"{key}={value_text(value)}"


def cell_labels(grid: Grid, labels: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The label of every cell of ``grid`` (key, values), in the cells' order (the Cartesian
    product of the values, as :meth:`friendsim.sweep.config.SweepSpec.cells`); ``labels``: the
    sweep file's, per key, one per value. One cell ``base`` for an empty grid."""
    if not grid:
        return ["base"]
    given = labels or {}
    parts = [
        [
            _part(key, v, values, len(grid), given[key][i] if key in given else None)
            for i, v in enumerate(values)
        ]
        for key, values in grid
    ]
    return _unique([", ".join(combo) for combo in itertools.product(*parts)])


def _unique(labels: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for label in labels:
        unique, i = label, 2
        while unique in seen:
            unique, i = f"{label} #{i}", i + 1
        seen.add(unique)
        out.append(unique)
    return out


def labels_of_record(spec: Mapping[str, Any]) -> dict[str, str]:
    """``{cell name: label}`` of the ``spec`` object of a ``sweep.json``: each cell's recorded
    ``label`` (files written since labels exist), else, for a file written before, the automatic
    label of its ``overrides`` against the recorded ``grid`` (such files hold their keys sorted,
    so a label's keys come in that order). Tolerant, as a reader of any such file must be: a cell
    that cannot be labelled so (no such grid key) is labelled by its name."""
    raw = spec.get("cells")
    cells = [c for c in raw if isinstance(c, Mapping)] if isinstance(raw, list) else []
    raw_grid = spec.get("grid")
    grid: Mapping[str, Any] = raw_grid if isinstance(raw_grid, Mapping) else {}
    recorded: dict[str, str] = {}
    auto: list[tuple[str, str]] = []
    for cell in cells:
        name, label = str(cell.get("name")), cell.get("label")
        over = cell.get("overrides")
        if isinstance(label, str) and label:
            recorded[name] = label
        elif not isinstance(over, Mapping) or not over:
            auto.append((name, name))
        elif all(isinstance(grid.get(k), list) for k in over):
            parts = (_part(k, v, grid[k], len(over), None) for k, v in over.items())
            auto.append((name, ", ".join(parts)))
        else:
            auto.append((name, name))
    names = [n for n, _ in auto]
    return {**dict(zip(names, _unique([t for _, t in auto]), strict=True)), **recorded}
