"""One JSON-ready summary of a run's networks: tie networks, follow graph, interaction graph.

:func:`network_summary` is a pure function of the event log (plus parameters); it is what
``friendsim analyze RUN_DIR --json`` and the report show.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from friendsim.analysis.arraygraph import ArrayGraph
from friendsim.analysis.graphs import (
    INTERACTION_KINDS,
    agents_and_attributes,
    follow_array_graph,
    groups_for,
    interaction_arrays,
    tie_array_graphs,
)
from friendsim.analysis.metrics import array_graph_metrics, array_pairwise_dynamics
from friendsim.analysis.reference import compare_homophily, compare_to_reference
from friendsim.analysis.sentiment import SentimentModel, get_sentiment
from friendsim.analysis.ties import DEFAULT_THETAS, Pair, TieParams, tie_windows
from friendsim.platform.events import Event

_WINDOW_KEYS = ("nodes", "edges", "density", "clustering", "transitivity", "lcc", "avg_path",
                "path_ln", "efficiency", "modularity", "communities", "median_degree",
                "mean_degree", "reciprocity", "homophily")  # fmt: skip


class AttributesShapeError(ValueError):
    """``attributes`` is not keyed by the log's agent ids (probably attribute-first)."""


def theta_key(theta: float) -> str:
    """The JSON key of a threshold (``0.05`` -> ``"0.05"``)."""
    return f"{theta:g}"


def json_ready(value: Any) -> Any:
    """Recursively replace NaN/inf by ``None`` and tuples by lists (strict JSON)."""
    # Exact-type fast paths first (a run's analysis holds millions of values); subclasses
    # (numpy scalars, other mappings) take the general branches below with the same result.
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        return value if math.isfinite(value) else None
    if t is dict:
        return {k if type(k) is str else str(k): json_ready(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [json_ready(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def _compact(m: Mapping[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in _WINDOW_KEYS if k in m}


def _homophily_ratios(m: Mapping[str, Any]) -> dict[str, float | None]:
    return {a: h["same_ratio"] for a, h in m.get("homophily", {}).items()}


def network_summary(
    events: Iterable[Event],
    *,
    attributes: Mapping[str, Mapping[str, str]],
    params: TieParams,
    thetas: Iterable[float] = DEFAULT_THETAS,
    sentiment: SentimentModel | None = None,
    text_evidence: Mapping[int, Mapping[Pair, float]] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """All network metrics of a run, JSON-ready.

    ``attributes`` maps agent id -> {attribute: group} (persona attributes); it is merged over
    the attributes recorded in ``AgentRegistered`` events (explicit values win). Agents not in
    the log are ignored; if no key is an agent, :class:`AttributesShapeError` is raised. ``sentiment``
    (default VADER) scores DMs for the tone signal; ``text_evidence`` is needed for
    ``params.method == "text"``. Keys of the result:

    * ``params``, ``thetas``, ``agents``, ``windows``;
    * ``ties``: ``final`` (per θ: metrics, ``reference`` range flags, ``homophily_reference``),
      ``per_window`` (per window: active pairs, mean evidence, per θ compact metrics),
      ``dynamics`` (per θ, between consecutive windows: triadic closure, Jaccard, retained),
      ``strengths`` (final directed A, sorted);
    * ``follow``: metrics of the final follow graph (with reciprocity);
    * ``interaction``: ``final`` (cumulative, with weights per kind), ``per_window`` (each
      window's own interactions, compact) and ``dynamics`` between window graphs.
    """
    evs = list(events)
    ths = tuple(thetas)
    agents, recorded = agents_and_attributes(evs)
    by_attr: dict[str, dict[str, str]] = {a: dict(m) for a, m in recorded.items()}
    for agent, attrs in attributes.items():
        for key, group in attrs.items():
            by_attr.setdefault(str(key), {})[agent] = str(group)
    unknown = set(attributes) - set(agents)
    if attributes and unknown == set(attributes):
        raise AttributesShapeError(
            "attributes must map agent id -> {attribute: group}; none of its keys "
            f"({', '.join(sorted(map(str, unknown))[:5])}) is an agent of this log"
        )
    groups = groups_for(by_attr, agents)
    if sentiment is None and params.method == "signals":
        sentiment = get_sentiment()
    windows = tie_windows(evs, params=params, sentiment=sentiment, text_evidence=text_evidence)

    per_window: list[dict[str, Any]] = []
    graphs_by_theta: dict[float, list[ArrayGraph]] = {th: [] for th in ths}
    last: dict[float, ArrayGraph] = {}
    for tw in windows:
        last = tie_array_graphs(tw, thetas=ths)
        es = [ev.e for ev in tw.evidence.values()]
        row: dict[str, Any] = {
            "window": tw.window,
            "active_pairs": len(tw.active),
            "nonzero_ties": len(tw.strengths),
            "mean_evidence": math.fsum(es) / len(es) if es else None,
            "thetas": {},
        }
        for th, g in last.items():
            graphs_by_theta[th].append(g)
            m = array_graph_metrics(g, attributes=groups, seed=seed, fit_power_law=False)
            row["thetas"][theta_key(th)] = _compact(m)
        per_window.append(row)

    final: dict[str, Any] = {}
    for th, g in last.items():
        m = array_graph_metrics(g, attributes=groups, seed=seed)
        m["reference"] = compare_to_reference(m)
        m["homophily_reference"] = compare_homophily(_homophily_ratios(m))
        final[theta_key(th)] = m
    dynamics = {theta_key(th): array_pairwise_dynamics(gs) for th, gs in graphs_by_theta.items()}
    strengths = []
    if windows:
        strengths = [
            {"source": v, "target": u, "strength": a}
            for (v, u), a in sorted(windows[-1].strengths.items())
        ]

    follow = array_graph_metrics(
        follow_array_graph(evs, nodes=agents), attributes=groups, seed=seed
    )

    inter = interaction_arrays(evs, nodes=agents)
    inter_final = array_graph_metrics(inter.final, attributes=groups, seed=seed)
    inter_final["interactions"] = {k: inter.kinds[k] for k in INTERACTION_KINDS}
    inter_final["total_weight"] = sum(inter.kinds.values())
    inter_rows = [
        {
            "window": w,
            **_compact(array_graph_metrics(g, attributes=groups, seed=seed, fit_power_law=False)),
        }
        for w, g in inter.per_window
    ]
    inter_dyn = array_pairwise_dynamics(g for _, g in inter.per_window)

    return json_ready(
        {
            "params": params.to_dict(),
            "thetas": [theta_key(th) for th in ths],
            "agents": len(agents),
            "windows": [tw.window for tw in windows],
            "ties": {
                "final": final,
                "per_window": per_window,
                "dynamics": dynamics,
                "strengths": strengths,
            },
            "follow": follow,
            "interaction": {"final": inter_final, "per_window": inter_rows, "dynamics": inter_dyn},
        }
    )


def format_summary(summary: Mapping[str, Any]) -> str:
    """A short Markdown rendering of :func:`network_summary` output (for ``analyze`` without
    ``--json``): final tie networks per θ with reference-range flags, then follow and
    interaction graphs."""
    keys = ("density", "clustering", "lcc", "path_ln", "modularity", "median_degree")
    lines = [
        f"agents: {summary['agents']}, windows: {len(summary['windows'])}",
        "",
        "| network | edges | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]

    def cell(m: Mapping[str, Any], k: str) -> str:
        v = m.get(k)
        text = "—" if v is None else f"{float(v):.4f}"
        flag = m.get("reference", {}).get(k, {}).get("inside")
        return text + ("" if flag is None else (" ✓" if flag else " ✗"))

    rows: list[tuple[str, Mapping[str, Any]]] = [
        (f"ties θ={th}", m) for th, m in summary["ties"]["final"].items()
    ]
    rows += [("follow", summary["follow"]), ("interaction", summary["interaction"]["final"])]
    for name, m in rows:
        lines.append(f"| {name} | {m['edges']} | " + " | ".join(cell(m, k) for k in keys) + " |")
    lines += ["", "✓/✗: inside/outside the range of the eight reference friendship networks."]
    return "\n".join(lines)
