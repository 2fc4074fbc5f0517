"""The report's figures as PNG bytes (matplotlib, Agg backend, imported lazily).

Every function is pure: data in, PNG bytes out; layouts are seeded, so the same data gives the
same picture. No fonts or files are fetched: matplotlib's bundled DejaVu fonts are used.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FIG_DPI = 100
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

MAX_DRAWN_NODES = 1_000
"""The most agents :func:`network_drawing` lays out. The spring layout's cost is quadratic in
the nodes (about 200 s of CPU at 10,000, against 17 s for the run that made them), and at the
figure's size a thousand nodes already cover it; a larger network is drawn as the subgraph of
its most strongly tied agents, as the figure's title says."""
LAYOUT_PAIR_STEPS = 50_000_000
"""Node pairs × iterations :func:`spring_positions` may spend (its cost is quadratic in the
nodes; about 0.15 s of CPU): 500 iterations, igraph's default, up to about 300 nodes, then fewer,
down to 50 (networkx's default) at :data:`MAX_DRAWN_NODES`."""

Series = Sequence[Mapping[str, Any]]
"""Points ``{"window", "mean", "lower", "upper"}`` (``lower``/``upper`` may be ``None``)."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - matplotlib is a core dependency
        raise ImportError("figures need matplotlib: pip install matplotlib") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIG_DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def reward_curves(
    panels: Mapping[str, Mapping[str, Series]],
    *,
    title: str,
    ylabel: str = "mean total reward",
    ymin: float = 0.0,
    ymax: float = 1.0,
) -> bytes:
    """One panel per policy group; in each, one line per series (a run, or a sweep cell) with
    its band (``lower``..``upper``) shaded. Windows on x, mean total reward on y (``ymin`` ..
    ``ymax``, 0..1 by default; other per-window series such as survey answers reuse it)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    names = list(panels) or ["(no rewards)"]
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    labels_seen: dict[str, Any] = {}
    series_names = sorted({s for p in panels.values() for s in p})
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series_names)}
    for idx, ax in enumerate(axes.flat):
        if idx >= len(names):
            ax.set_visible(False)
            continue
        name = names[idx]
        for label, pts in (panels.get(name) or {}).items():
            pts = [p for p in pts if p.get("mean") is not None]
            if not pts:
                continue
            xs = [p["window"] for p in pts]
            ys = [p["mean"] for p in pts]
            (line,) = ax.plot(xs, ys, marker="o", ms=3, color=colour[label], label=label)
            labels_seen.setdefault(label, line)
            band = [
                (p["window"], p["lower"], p["upper"]) for p in pts if p.get("lower") is not None
            ]
            if band:
                ax.fill_between(
                    [b[0] for b in band],
                    [b[1] for b in band],
                    [b[2] for b in band],
                    color=colour[label],
                    alpha=0.2,
                    linewidth=0,
                )
        ax.set_title(name, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("window")
        ax.set_ylabel(ylabel)
        ax.set_ylim(ymin, ymax)
        ax.grid(alpha=0.3)
    if labels_seen:
        fig.legend(
            list(labels_seen.values()),
            list(labels_seen),
            loc="lower center",
            ncol=min(4, len(labels_seen)),
            fontsize=8,
            bbox_to_anchor=(0.5, -0.02),
        )
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    return _png(fig)


def network_drawing(
    nodes: Sequence[str],
    edges: Iterable[tuple[str, str, float]],
    *,
    groups: Mapping[str, str],
    attribute: str,
    title: str,
    seed: int = 0,
    max_nodes: int = MAX_DRAWN_NODES,
) -> bytes:
    """The tie network drawn with a seeded spring layout, nodes coloured by ``groups``
    (agent → group of ``attribute``; agents without one are grey), edge width by strength.
    A network of more than ``max_nodes`` agents is drawn as the subgraph of the ``max_nodes``
    with the greatest total tie strength (then by name), said in the title."""
    import networkx as nx

    plt = _pyplot()
    g = nx.Graph()
    g.add_nodes_from(nodes)
    for u, v, s in edges:
        g.add_edge(u, v, strength=float(s))
    total = g.number_of_nodes()
    g = drawn_graph(g, max_nodes=max_nodes)
    if g.number_of_nodes() < total:
        title += f" ({max_nodes:,} most strongly tied of {total:,} agents drawn)"
    order = list(g.nodes)
    index = {v: i for i, v in enumerate(order)}
    xy = spring_positions(len(order), [(index[u], index[v]) for u, v in g.edges], seed=seed)
    pos = {v: (float(x), float(y)) for v, (x, y) in zip(order, xy, strict=True)}
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    names = sorted({groups[n] for n in g.nodes if n in groups})
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    widths = [0.4 + 2.5 * d.get("strength", 0.0) for _, _, d in g.edges(data=True)]
    nx.draw_networkx_edges(g, pos, ax=ax, width=widths, alpha=0.35, edge_color="#555555")
    node_colours = [colour.get(groups.get(n, ""), "#bbbbbb") for n in g.nodes]
    nx.draw_networkx_nodes(g, pos, ax=ax, node_size=140, node_color=node_colours, linewidths=0.5)
    if g.number_of_nodes() <= 60:
        nx.draw_networkx_labels(g, pos, ax=ax, font_size=6)
    for name in names:
        ax.scatter([], [], color=colour[name], label=name)
    if names:
        ax.legend(title=attribute, fontsize=8, title_fontsize=8, loc="best", frameon=True)
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    return _png(fig)


def drawn_graph(g: Any, *, max_nodes: int = MAX_DRAWN_NODES) -> Any:
    """The part of the networkx graph ``g`` that :func:`network_drawing` lays out: all of it, or
    if it has more than ``max_nodes`` nodes, the subgraph of the ``max_nodes`` with the greatest
    total tie strength (then by name), nodes and edges in ``g``'s order."""
    import networkx as nx

    if g.number_of_nodes() <= max_nodes:
        return g
    tied = dict(g.degree(weight="strength"))
    keep = set(sorted(g.nodes, key=lambda n: (-tied[n], str(n)))[:max_nodes])
    h = nx.Graph()  # in g's order: a subgraph view may iterate the (hash-ordered) set
    h.add_nodes_from(n for n in g.nodes if n in keep)
    h.add_edges_from((u, v, d) for u, v, d in g.edges(data=True) if u in keep and v in keep)
    return h


def spring_positions(n: int, edges: Sequence[tuple[int, int]], *, seed: int) -> Any:
    """Positions (an ``n`` × 2 numpy array, centred, largest coordinate 1) of the graph on nodes
    ``0 .. n-1`` by igraph's compiled Fruchterman–Reingold layout (no grid; 50 to 500
    iterations, :data:`LAYOUT_PAIR_STEPS`). It starts from coordinates drawn from
    ``numpy.random.default_rng(seed)`` and any random step it takes comes from
    ``random.Random(seed)``: the same graph and seed give the same positions, whatever ran
    before."""
    import numpy as np

    if n <= 1:
        return np.zeros((n, 2))
    import igraph

    from friendsim.analysis.metrics import seeded_igraph

    start = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, 2))
    graph = igraph.Graph(n=n, edges=list(edges), directed=False)
    niter = min(500, max(50, LAYOUT_PAIR_STEPS // (n * n)))
    with seeded_igraph(seed):
        layout = graph.layout_fruchterman_reingold(seed=start.tolist(), niter=niter, grid=False)
    xy = np.asarray(layout.coords, dtype=float)
    xy -= xy.mean(axis=0)
    top = float(np.abs(xy).max())
    return xy / top if top > 0 else xy


def degree_distributions(
    series: Mapping[str, Mapping[str, int]],
    *,
    title: str,
    nodes: Mapping[str, float] | None = None,
) -> bytes:
    """Degree distributions as bars, one small panel per network: the number of nodes with each
    degree d = 0, 1, 2, … (isolated nodes included as d = 0). ``series`` maps each network to
    its ``degree_distribution`` (normalised degree d/(n−1) -> node count, as the analysis
    stores it); ``nodes`` gives n per network when the counts are pooled over several networks
    (default: the sum of the counts). At the population sizes of these
    experiments (tens of agents) a log-log plot has a handful of points and hides the zeros;
    bars show every count. Integer ticks, thinned by the axis locator, never overlap."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    items = [(label, dist) for label, dist in series.items() if sum(dist.values()) > 0]
    if not items:
        fig, ax = plt.subplots(figsize=(6.4, 2.4))
        ax.text(0.5, 0.5, "no nodes: nothing to draw", ha="center", va="center")
        ax.set_axis_off()
        ax.set_title(title, fontsize=10)
        return _png(fig)
    cols = min(3, len(items))
    rows = math.ceil(len(items) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    for idx, ax in enumerate(axes.flat):
        if idx >= len(items):
            ax.set_visible(False)
            continue
        label, dist = items[idx]
        n_nodes = float((nodes or {}).get(label) or sum(float(c) for c in dist.values()))
        counts: dict[int, float] = {}
        for k, c in dist.items():
            d = round(float(k) * max(0.0, n_nodes - 1))
            counts[d] = counts.get(d, 0.0) + float(c)
        top = max(counts)
        xs = list(range(0, top + 1))
        ax.bar(xs, [counts.get(x, 0.0) for x in xs], color=PALETTE[idx % len(PALETTE)], width=0.8)
        n = sum(counts.values())
        ax.set_title(f"{label} (n={n:g}, isolated {counts.get(0, 0.0):g})", fontsize=9)
        ax.set_xlim(-0.6, max(top, 1) + 0.6)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        ax.set_xlabel("degree", fontsize=8)
        ax.set_ylabel("nodes", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return _png(fig)
