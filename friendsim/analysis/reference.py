"""Comparison of run networks with real friendship networks.

The eight reference networks of the seed paper (DESIGN.md section 2), their mean and min–max
range, and literature homophily same-ratios ship as data
(``friendsim/analysis/data/reference_networks.json``). A run's metrics are flagged inside/outside
each range; Zachary's karate club is recomputed live from networkx; users can add their own
network from an edge-list file and get the same metrics side by side.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import networkx as nx

from friendsim.analysis.metrics import graph_metrics

REFERENCE_METRICS: tuple[str, ...] = ("density", "clustering", "lcc", "path_ln", "modularity")
_HEADERS = {("source", "target"), ("u", "v"), ("from", "to"), ("node1", "node2"), ("src", "dst")}
_SPLIT = re.compile(r"[,\s;]+")


class EdgeListError(ValueError):
    """An edge-list file is malformed; the message names the file and the line."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ReferenceData:
    """The shipped reference data (see the JSON file for provenance)."""

    networks: tuple[Mapping[str, Any], ...]
    mean: Mapping[str, float]
    ranges: Mapping[str, tuple[float, float]]
    tolerance: Mapping[str, float]
    homophily: Mapping[str, tuple[float, float]]
    homophily_aliases: Mapping[str, str]
    seed_paper_runs: Mapping[str, tuple[float, float]]


@cache
def load_reference() -> ReferenceData:
    """Read ``reference_networks.json`` from the package (cached)."""
    raw = json.loads(
        resources.files("friendsim.analysis")
        .joinpath("data/reference_networks.json")
        .read_text(encoding="utf-8")
    )
    return ReferenceData(
        networks=tuple(raw["networks"]),
        mean=raw["mean"],
        ranges={k: (float(v[0]), float(v[1])) for k, v in raw["range"].items()},
        tolerance=raw.get("tolerance", {}),
        homophily={k: (float(v[0]), float(v[1])) for k, v in raw["homophily_same_ratio"].items()},
        homophily_aliases=raw.get("homophily_aliases", {}),
        seed_paper_runs={k: (float(v[0]), float(v[1])) for k, v in raw["seed_paper_runs"].items()},
    )


def compare_to_reference(
    metrics: Mapping[str, Any], *, ref: ReferenceData | None = None
) -> dict[str, dict[str, Any]]:
    """Flag each reference metric of a run inside/outside the min–max range of the eight.

    Returns {metric: {value, mean, min, max, inside}}; ``inside`` is ``None`` when the run's
    value is missing or undefined.
    """
    ref = ref or load_reference()
    out: dict[str, dict[str, Any]] = {}
    for name in REFERENCE_METRICS:
        lo, hi = ref.ranges[name]
        value = metrics.get(name)
        inside = None if value is None else bool(lo <= float(value) <= hi)
        out[name] = {"value": value, "mean": ref.mean[name], "min": lo, "max": hi, "inside": inside}
    return out


def compare_homophily(
    same_ratios: Mapping[str, float | None], *, ref: ReferenceData | None = None
) -> dict[str, dict[str, Any]]:
    """Flag each attribute's same-ratio against the literature range of the attribute with the
    same name (case-insensitive; aliases such as ``sex`` → gender); unknown attributes get
    ``range`` None and ``inside`` None."""
    ref = ref or load_reference()
    out: dict[str, dict[str, Any]] = {}
    for attr, value in same_ratios.items():
        key = attr.strip().lower()
        key = ref.homophily_aliases.get(key, key)
        rng = ref.homophily.get(key)
        inside = None
        if rng is not None and value is not None:
            inside = bool(rng[0] - 1e-9 <= value <= rng[1] + 1e-9)
        out[attr] = {
            "value": value,
            "literature": key if rng else None,
            "range": list(rng) if rng else None,
            "inside": inside,
        }
    return out


def reference_metrics(g: nx.Graph, *, seed: int = 0) -> dict[str, Any]:
    """The reference metrics (plus n, m, median degree) of one graph, computed like a run's."""
    full = graph_metrics(g, seed=seed, fit_power_law=False)
    keys = ("nodes", "edges", *REFERENCE_METRICS, "avg_path", "efficiency", "median_degree")
    return {k: full[k] for k in keys}


def karate_metrics(*, seed: int = 0) -> dict[str, Any]:
    """Zachary's karate club, recomputed live from ``networkx.karate_club_graph()`` (unweighted)."""
    g = nx.Graph()
    g.add_edges_from(nx.karate_club_graph().edges())
    return reference_metrics(g, seed=seed)


def load_edge_list(path: str | Path) -> nx.Graph:
    """Read an undirected edge list: one ``u v`` per line, separated by whitespace, commas or
    semicolons; an optional numeric third column (weight) is ignored. Blank lines and ``#``
    comments are skipped, as is a header line such as ``source,target``. Node ids are strings.

    Raises :class:`EdgeListError` naming the file and line for anything else (one column,
    more than three, a non-numeric third column, a self-loop, no edges at all).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeListError(f"{p}: cannot read edge list: {exc}") from exc
    g = nx.Graph()
    seen_data = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        tokens = [t.strip("\"'") for t in _SPLIT.split(body) if t]
        if (
            not seen_data
            and len(tokens) >= 2
            and (tokens[0].lower(), tokens[1].lower()) in _HEADERS
        ):
            seen_data = True
            continue
        seen_data = True
        if len(tokens) not in (2, 3):
            raise EdgeListError(
                f"{p}, line {lineno}: expected 'u v' (optionally a weight), "
                f"got {len(tokens)} field(s): {line.strip()!r}"
            )
        if len(tokens) == 3:
            try:
                float(tokens[2])
            except ValueError:
                raise EdgeListError(
                    f"{p}, line {lineno}: third field {tokens[2]!r} is not a numeric weight"
                ) from None
        u, v = tokens[0], tokens[1]
        if u == v:
            raise EdgeListError(f"{p}, line {lineno}: self-loop {u!r}-{v!r} is not allowed")
        g.add_edge(u, v)
    if g.number_of_edges() == 0:
        raise EdgeListError(f"{p}: no edges found")
    return g


def side_by_side(
    runs: Mapping[str, Mapping[str, Any]],
    *,
    user_networks: Mapping[str, nx.Graph] | None = None,
    include_live_karate: bool = True,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Rows {name, kind, n, density, clustering, lcc, path_ln, modularity} for a table: the run
    networks given (metric dicts), user networks (graphs; metrics computed here), the live karate
    club, the eight shipped references and their mean."""
    ref = load_reference()
    rows: list[dict[str, Any]] = []
    for name, m in runs.items():
        rows.append({"name": name, "kind": "run", "n": m.get("nodes")} | _pick(m))
    for name, g in (user_networks or {}).items():
        m = reference_metrics(g, seed=seed)
        rows.append({"name": name, "kind": "user", "n": m["nodes"]} | _pick(m))
    if include_live_karate:
        m = karate_metrics(seed=seed)
        rows.append(
            {"name": "Zachary karate club (live)", "kind": "live", "n": m["nodes"]} | _pick(m)
        )
    for net in ref.networks:
        rows.append({"name": net["name"], "kind": "reference", "n": net["n"]} | _pick(net))
    rows.append({"name": "reference mean", "kind": "mean", "n": None} | _pick(ref.mean))
    return rows


def _pick(m: Mapping[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in REFERENCE_METRICS}


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of :func:`side_by_side` rows (4 decimals; "—" for undefined)."""
    head = "| network | kind | n | " + " | ".join(REFERENCE_METRICS) + " |"
    sep = "|---|---|---|" + "---|" * len(REFERENCE_METRICS)
    lines = [head, sep]
    for r in rows:
        cells = [_fmt(r.get(k)) for k in REFERENCE_METRICS]
        n = "—" if r.get("n") is None else str(r["n"])
        lines.append(f"| {r['name']} | {r['kind']} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(x: Any) -> str:
    return "—" if x is None else f"{float(x):.4f}"
