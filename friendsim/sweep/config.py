"""Sweep files: an experiment TOML plus a ``[sweep]`` table of replications and a grid.

```toml
[sweep]
replications = 3                     # runs per grid cell (>= 1)
grid = { "coach.enabled" = [true, false], "feed.ranker" = ["full", "chrono"] }
# seed = 11                          # base of the derived seeds (default: [experiment].seed)
# seeds = [1, 2, 3]                  # or explicit seeds, one per replication
# labels = { "feed.ranker" = ["ranked", "chronological"] }  # what tables call the values
```

Grid keys are dotted paths into the experiment config (``section.key``; nested tables in the
grid are flattened the same way). The cells are the Cartesian product of the grid values, in
the order written. Replication ``k`` of *every* cell uses the same seed (common random numbers:
cells differ only by their settings, so paired comparisons are fair); the seeds are derived
deterministically from the base seed and ``k`` (SHA-256), or taken from ``seeds``.

A cell's directory is named by :func:`cell_name` (a slug of its settings); what tables and pages
call it is its label (:mod:`friendsim.sweep.labels`): from ``labels`` (per grid key, one
non-empty label per value, in the grid's order, all different) or made from the values.

Everything is validated before anything runs: each cell's config goes through the runtime's
:func:`friendsim.runtime.config.parse_config`, and every problem is a :class:`SweepConfigError`
naming the file and the key (``[sweep].grid."ties.method"``).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from friendsim.runtime.config import (
    ConfigError,
    ExperimentConfig,
    check_config_files,
    check_run_population,
    check_runs_at_once,
    parse_config,
    run_peak_memory,
    run_population,
)
from friendsim.sweep.labels import cell_labels

MAX_RUNS = 10_000
SWEEP_KEYS = ("replications", "grid", "seed", "seeds", "labels")
"""The keys of a sweep file's ``[sweep]`` table."""
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class SweepConfigError(ValueError):
    """A sweep file is wrong. ``path`` is the file, ``key`` the key path (may be empty)."""

    def __init__(self, path: str | Path, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        super().__init__(f"{self.path}: {key}: {problem}" if key else f"{self.path}: {problem}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Cell:
    """One grid cell: a directory-safe ``name``, its ``overrides`` (dotted key -> value) and
    the ``label`` readers see (:mod:`friendsim.sweep.labels`)."""

    name: str
    overrides: Mapping[str, Any]
    label: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Replication:
    """One run of the sweep: cell, replication index, seed, directory (relative to the sweep
    output) and the full experiment data (TOML mapping) it runs."""

    cell: str
    rep: int
    seed: int
    rel_dir: str
    data: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class SweepSpec:
    """A parsed sweep file. ``base`` is the experiment data without ``[sweep]``; ``labels``
    the ``[sweep] labels`` given (grid key -> one label per value)."""

    source: Path
    name: str
    base: Mapping[str, Any]
    replications: int
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    seeds: tuple[int, ...]
    labels: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def cells(self) -> list[Cell]:
        """The grid cells in order (one cell named ``base`` when the grid is empty)."""
        labels = cell_labels(self.grid, dict(self.labels))
        if not self.grid:
            return [Cell(name="base", overrides={}, label=labels[0])]
        keys = [k for k, _ in self.grid]
        out: list[Cell] = []
        used: set[str] = set()
        for label, combo in zip(
            labels, itertools.product(*(vals for _, vals in self.grid)), strict=True
        ):
            overrides = dict(zip(keys, combo, strict=True))
            name = cell_name(overrides)
            unique, i = name, 2
            while unique in used:
                unique, i = f"{name}_{i}", i + 1
            used.add(unique)
            out.append(Cell(name=unique, overrides=overrides, label=label))
        return out

    def plans(self) -> list[Replication]:
        """Every run: cells in grid order, replications 0..n-1 within each cell."""
        out = []
        for cell in self.cells():
            for k, seed in enumerate(self.seeds):
                data = apply_overrides(self.base, cell.overrides)
                data.setdefault("experiment", {})["seed"] = seed
                out.append(
                    Replication(
                        cell=cell.name, rep=k, seed=seed, rel_dir=f"{cell.name}/rep{k}", data=data
                    )
                )
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready description (for ``sweep.json``)."""
        return {
            "source": str(self.source),
            "name": self.name,
            "replications": self.replications,
            "grid": {k: list(v) for k, v in self.grid},
            "seeds": list(self.seeds),
            "base_sha256": hashlib.sha256(
                json.dumps(self.base, sort_keys=True, default=str).encode()
            ).hexdigest(),
            "labels": {k: list(v) for k, v in self.labels},
            "cells": [
                {"name": c.name, "label": c.label, "overrides": dict(c.overrides)}
                for c in self.cells()
            ],
        }


def derive_seed(base: int, rep: int) -> int:
    """The seed of replication ``rep``: 31 bits of SHA-256 of ``"<base>:rep:<rep>"``."""
    digest = hashlib.sha256(f"{base}:rep:{rep}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cell_name(overrides: Mapping[str, Any]) -> str:
    """A directory-safe name: ``coach.enabled-true__feed.ranker-chrono``."""
    parts = [f"{k}-{_format_value(v)}" for k, v in overrides.items()]
    name = _SAFE.sub("_", "__".join(parts)).strip("._") or "cell"
    return name[:150]


class OverrideError(ValueError):
    """A dotted override key goes through a value that is not a table; ``key`` is the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key!r}: {problem}")


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with each dotted key set (intermediate tables created); a key
    through a value that is not a table raises :class:`OverrideError` naming the key."""
    data = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        node = data
        *head, last = key.split(".")
        for i, part in enumerate(head):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                path = ".".join(head[: i + 1])
                raise OverrideError(
                    key, f"{path!r} is {child!r}, not a table: nothing to set in it"
                )
            node = child
        node[last] = copy.deepcopy(value)
    return data


def _flatten_grid(grid: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in grid.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.extend(_flatten_grid(v, key + "."))
        else:
            out.append((key, v))
    return out


def parse_sweep(
    data: Mapping[str, Any],
    *,
    source: str | Path = "<sweep>",
    check_files: bool = False,
    memory: int | None = None,
) -> SweepSpec:
    """Validate a parsed sweep file (see the module docstring); with ``check_files`` the files
    each cell names (persona file, endpoints file, relative to ``source``'s folder, where the
    runs look for them) must be there; with ``memory`` (the bytes of the machine the runs will
    use) each cell's population must fit in it
    (:func:`~friendsim.runtime.config.check_run_population`)."""
    src = Path(source)
    raw = data.get("sweep")
    if not isinstance(raw, Mapping):
        raise SweepConfigError(src, "[sweep]", "missing: a sweep file needs a [sweep] table")
    unknown = set(raw) - set(SWEEP_KEYS)
    if unknown:
        raise SweepConfigError(
            src,
            f"[sweep].{sorted(unknown)[0]}",
            f"unknown key (known: {', '.join(SWEEP_KEYS)})",
        )
    reps = raw.get("replications", 1)
    if not isinstance(reps, int) or isinstance(reps, bool) or not 1 <= reps <= 1000:
        raise SweepConfigError(
            src, "[sweep].replications", f"must be an integer 1..1000, got {reps!r}"
        )
    grid_raw = raw.get("grid", {})
    if not isinstance(grid_raw, Mapping):
        raise SweepConfigError(src, "[sweep].grid", "must be a table of key = [values]")
    grid: list[tuple[str, tuple[Any, ...]]] = []
    for key, values in _flatten_grid(grid_raw):
        where = f'[sweep].grid."{key}"'
        if key in ("experiment.seed", "sweep") or key.startswith("sweep."):
            raise SweepConfigError(
                src, where, "cannot be swept; seeds come from replications ([sweep].seed/seeds)"
            )
        if not isinstance(values, list) or not values:
            raise SweepConfigError(
                src, where, f"must be a non-empty list of values, got {values!r}"
            )
        if len(values) != len({repr(v) for v in values}):
            raise SweepConfigError(src, where, f"has duplicate values: {values!r}")
        grid.append((key, tuple(values)))
    base = {k: v for k, v in data.items() if k != "sweep"}
    base_seed = raw.get("seed", (base.get("experiment") or {}).get("seed", 0))
    if not isinstance(base_seed, int) or isinstance(base_seed, bool):
        raise SweepConfigError(src, "[sweep].seed", f"must be an integer, got {base_seed!r}")
    if "seeds" in raw:
        seeds = raw["seeds"]
        if (
            not isinstance(seeds, list)
            or len(seeds) != reps
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        ):
            raise SweepConfigError(
                src, "[sweep].seeds", f"must be a list of {reps} integers (one per replication)"
            )
        if twice := sorted({s for s in seeds if seeds.count(s) > 1}):
            raise SweepConfigError(
                src,
                "[sweep].seeds",
                f"lists seed {twice[0]} twice; a seed gives the same run every time, so a "
                "repeated seed is not another replication (it would narrow the intervals "
                "falsely): give each replication its own seed",
            )
        seed_t = tuple(seeds)
    else:
        seed_t = tuple(derive_seed(base_seed, k) for k in range(reps))
    n_cells = 1
    for _, vals in grid:
        n_cells *= len(vals)
    if n_cells * reps > MAX_RUNS:
        raise SweepConfigError(
            src, "[sweep]", f"{n_cells} cells x {reps} replications exceeds {MAX_RUNS} runs"
        )
    name = str((base.get("experiment") or {}).get("name", src.stem))
    spec = SweepSpec(
        source=src,
        name=name,
        base=base,
        replications=reps,
        grid=tuple(grid),
        seeds=seed_t,
        labels=_labels(src, raw.get("labels", {}), grid),
    )
    for cell in spec.cells():
        try:
            cfg = validate_cell(spec, cell)
            if check_files:
                check_config_files(cfg, base=src.parent, source=src)
            if memory is not None:
                check_run_population(cfg, source=src, memory=memory)
        except OverrideError as exc:
            raise SweepConfigError(src, f'[sweep].grid."{exc.key}"', exc.problem) from None
        except ConfigError as exc:
            key = _blame(exc.key, cell)
            raise SweepConfigError(src, key, f"cell {cell.name}: {exc.key} {exc.problem}") from None
    return spec


def _labels(
    src: Path, raw: Any, grid: Sequence[tuple[str, tuple[Any, ...]]]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``[sweep] labels`` checked against the grid: per grid key, a list of non-empty, distinct
    strings, one per value of that key (in the grid's order)."""
    if not isinstance(raw, Mapping):
        raise SweepConfigError(src, "[sweep].labels", "must be a table of key = [labels]")
    sizes = {k: len(v) for k, v in grid}
    out = []
    for key, labels in _flatten_grid(raw):
        where = f'[sweep].labels."{key}"'
        if key not in sizes:
            known = ", ".join(sizes) or "none: the grid is empty"
            raise SweepConfigError(src, where, f"is not a grid key (grid keys: {known})")
        n = sizes[key]
        if (
            not isinstance(labels, list)
            or len(labels) != n
            or not all(isinstance(x, str) and x.strip() for x in labels)
        ):
            raise SweepConfigError(
                src,
                where,
                f"must be a list of {n} non-empty strings, one per value of the grid key "
                f"in its order, got {labels!r}",
            )
        if twice := sorted({x for x in labels if labels.count(x) > 1}):
            raise SweepConfigError(
                src, where, f"gives the label {twice[0]!r} twice: each value needs its own"
            )
        out.append((key, tuple(labels)))
    order = list(sizes)
    return tuple(sorted(out, key=lambda kv: order.index(kv[0])))


def _blame(config_key: str, cell: Cell) -> str:
    flat = config_key.replace("[", "").replace("]", "")
    for key in cell.overrides:
        if flat == key or flat.startswith(key + ".") or key.startswith(flat + "."):
            return f'[sweep].grid."{key}"'
    return config_key or "[sweep]"


def validate_cell(spec: SweepSpec, cell: Cell) -> ExperimentConfig:
    """The validated experiment config of ``cell`` (raises the runtime's ``ConfigError``)."""
    data = apply_overrides(spec.base, cell.overrides)
    data.setdefault("experiment", {})["seed"] = spec.seeds[0]
    return parse_config(data, source=spec.source)


def check_jobs(
    spec: SweepSpec, plans: Sequence[Replication], *, jobs: int, memory: int | None
) -> None:
    """Refuse (:class:`~friendsim.runtime.config.TooManyAtOnceError`) running ``plans`` (the
    runs still to run) ``jobs`` at a time on a machine of ``memory`` bytes when the ``jobs``
    largest need more together (:func:`~friendsim.runtime.config.check_runs_at_once`, each run's
    :func:`~friendsim.runtime.config.run_peak_memory`): :func:`parse_sweep` checks each run
    alone, but runs in parallel hold their memory at the same time. Nothing without
    ``memory`` (the runs go to a cluster elsewhere)."""
    if memory is None or not plans:
        return
    sizes = {}
    for cell in spec.cells():
        cfg = validate_cell(spec, cell)
        sizes[cell.name] = (run_population(cfg), run_peak_memory(cfg))
    runs = [sizes[plan.cell] for plan in plans]
    check_runs_at_once(runs, at_once=min(jobs, len(runs)), memory=memory)


def load_sweep(path: str | Path, *, memory: int | None = None) -> SweepSpec:
    """Read and validate a sweep file, the files its cells name included (nothing is created);
    ``memory``: as :func:`parse_sweep`'s."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SweepConfigError(p, "", "sweep file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepConfigError(p, "", f"cannot read sweep file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepConfigError(p, "", f"not valid TOML: {exc}") from None
    return parse_sweep(data, source=p, check_files=True, memory=memory)
