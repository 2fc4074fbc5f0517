"""Network metrics for tie, follow and interaction graphs (paper App. C, Chang et al. 2025).

All structural metrics treat the graph as undirected, unweighted and simple (the paper evaluates
the binarised symmetrised tie graph); directed graphs are symmetrised first, weights ignored.
Large graphs are handled with exact sparse-matrix methods (triangles) or seeded sampling
estimators with a standard error (shortest paths, efficiency) — see :func:`path_stats`.

The heavy metrics run in compiled code: triangles, components and degrees on a SciPy sparse
adjacency; shortest paths (BFS), efficiency and Louvain communities in python-igraph, which is
built once per graph from the same adjacency. networkx stays the graph type callers pass in and
see, and is the reference the tests compare with (see ``tests/test_metrics_igraph.py`` for the
tolerances: exact metrics agree to 1e-9; Louvain modularity, being seed-dependent, within 0.03).

Values that are undefined (e.g. modularity of an edgeless graph, the average path and
path/ln(|LCC|) when |LCC| = 1: there is no pair to average over) are ``None`` so results stay
JSON-ready.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from friendsim._seed import numpy_entropy
from friendsim.analysis.arraygraph import ArrayGraph, symmetric_adjacency

EXACT_PATH_MAX_NODES = 3000
"""Up to this many nodes in a component, shortest-path metrics are exact (BFS from every node)."""
DEFAULT_PATH_SAMPLES = 200
_BFS_CHUNK = 64
_TRI_CHUNK = 4096


def undirected_simple(g: nx.Graph) -> nx.Graph:
    """The undirected, self-loop-free view the structural metrics use (a copy if needed)."""
    if g.is_directed() or g.is_multigraph() or nx.number_of_selfloops(g):
        h = nx.Graph()
        h.add_nodes_from(g.nodes)
        h.add_edges_from((u, v) for u, v in g.edges() if u != v)
        return h
    return g


def adjacency(g: nx.Graph) -> tuple[sp.csr_matrix, list[Hashable]]:
    """Symmetric 0/1 CSR adjacency (no self loops) and the node order."""
    nodes = list(g.nodes)
    index = {v: i for i, v in enumerate(nodes)}
    n = len(nodes)
    if g.number_of_edges() == 0:
        return sp.csr_matrix((n, n), dtype=np.int64), nodes
    rows = np.fromiter((index[u] for u, _ in g.edges()), dtype=np.int64, count=g.number_of_edges())
    cols = np.fromiter((index[v] for _, v in g.edges()), dtype=np.int64, count=g.number_of_edges())
    return symmetric_adjacency(rows, cols, n), nodes


def to_igraph(a: sp.csr_matrix) -> Any:
    """The undirected simple ``igraph.Graph`` of a symmetric 0/1 adjacency (same vertex order)."""
    import igraph

    upper = sp.triu(a, k=1).tocoo()
    edges = np.column_stack((upper.row, upper.col)).tolist()
    return igraph.Graph(n=a.shape[0], edges=edges, directed=False)


@contextmanager
def seeded_igraph(seed: int) -> Iterator[None]:
    """igraph draws from a ``random.Random(seed)`` inside the block (its default is the global
    ``random`` module, which would make results depend on whatever ran before)."""
    import igraph

    igraph.set_random_number_generator(random.Random(seed))
    try:
        yield
    finally:
        igraph.set_random_number_generator(random)


def density(g: nx.Graph) -> float:
    """2m / (n(n−1)) of the undirected simple graph; 0 for n < 2."""
    h = undirected_simple(g)
    n = h.number_of_nodes()
    return 0.0 if n < 2 else 2.0 * h.number_of_edges() / (n * (n - 1))


def triangles(a: sp.csr_matrix) -> np.ndarray:
    """Triangles through each node: diag(A³)/2, computed in row chunks of A·A masked by A."""
    n = a.shape[0]
    out = np.zeros(n, dtype=np.int64)
    for start in range(0, n, _TRI_CHUNK):
        block = a[start : start + _TRI_CHUNK]
        out[start : start + block.shape[0]] = np.asarray(
            (block @ a).multiply(block).sum(axis=1)
        ).ravel()
    return out // 2


def clustering_stats(a: sp.csr_matrix) -> tuple[float, float]:
    """(average clustering with degree < 2 counting 0, transitivity) from exact triangle counts."""
    n = a.shape[0]
    if n == 0:
        return 0.0, 0.0
    deg = np.asarray(a.sum(axis=1)).ravel().astype(np.float64)
    tri = triangles(a).astype(np.float64)
    pairs = deg * (deg - 1) / 2.0
    local = np.divide(tri, pairs, out=np.zeros(n), where=pairs > 0)
    total_pairs = pairs.sum()
    trans = float(tri.sum() / total_pairs) if total_pairs > 0 else 0.0
    return float(local.mean()), trans


def average_clustering(g: nx.Graph) -> float:
    """Mean local clustering over all nodes; nodes of degree < 2 count 0 (as networkx)."""
    return clustering_stats(adjacency(undirected_simple(g))[0])[0]


def transitivity(g: nx.Graph) -> float:
    """3 × triangles / connected triples (networkx's ``transitivity``)."""
    return clustering_stats(adjacency(undirected_simple(g))[0])[1]


def components(a: sp.csr_matrix) -> tuple[int, np.ndarray]:
    """(number of connected components, label per node) of the undirected graph."""
    return csgraph.connected_components(a, directed=False)


def lcc_fraction(g: nx.Graph) -> float:
    """|largest (weakly) connected component| / n; 0 for the empty graph."""
    n = g.number_of_nodes()
    if n == 0:
        return 0.0
    _, labels = components(adjacency(undirected_simple(g))[0])
    return float(np.bincount(labels).max() / n)


@dataclass(frozen=True, kw_only=True, slots=True)
class PathStats:
    """Shortest-path metrics. ``exact`` False means BFS from ``sources`` sampled sources
    (seeded); the ``*_se`` fields are the estimator's standard errors (0 when exact)."""

    avg_path: float | None
    """``None`` when the LCC has a single node (no pair; networkx would say 0)."""
    avg_path_ln: float | None
    avg_path_se: float
    efficiency: float
    efficiency_se: float
    lcc_size: int
    exact: bool
    sources: int


def _bfs_sums(a: sp.csr_matrix, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per source: (sum of hop distances to reachable others, sum of inverse distances).

    BFS in igraph (C): closeness gives 1 / Σd over the reachable vertices, harmonic centrality
    Σ 1/d; neither materialises a distance matrix.
    """
    if len(sources) == 0:
        return np.zeros(0), np.zeros(0)
    g = to_igraph(a)
    src = sources.tolist()
    close = np.asarray(g.closeness(vertices=src, mode="all", normalized=False), dtype=float)
    harm = np.asarray(
        g.harmonic_centrality(vertices=src, mode="all", normalized=False), dtype=float
    )
    ok = np.isfinite(close) & (close > 0)
    sum_d = np.divide(1.0, close, out=np.zeros(len(src)), where=ok)
    return sum_d, np.nan_to_num(harm)


def _total(values: np.ndarray, population: int, exact: bool) -> tuple[float, float]:
    """Estimate Σ over the population from a sample (or the exact sum) and its SE."""
    if exact:
        return float(values.sum()), 0.0
    k = len(values)
    fpc = max(0.0, 1.0 - k / population)
    se = float(values.std(ddof=1) / math.sqrt(k) * math.sqrt(fpc)) if k > 1 else 0.0
    return float(values.mean() * population), se * population


def path_stats(
    g: nx.Graph,
    *,
    exact_max_nodes: int = EXACT_PATH_MAX_NODES,
    samples: int = DEFAULT_PATH_SAMPLES,
    seed: int = 0,
) -> PathStats:
    """Average shortest path on the LCC (raw and / ln|LCC|) and global efficiency.

    Exact (BFS from every node) when the LCC, and separately the union of the other components,
    have at most ``exact_max_nodes`` nodes. Otherwise the part concerned is estimated from BFS out
    of ``samples`` sources drawn uniformly without replacement with ``numpy.random.
    default_rng(seed)``: the average path is the mean over sources of each source's mean distance
    to the rest of the LCC (unbiased for the exact all-pairs mean), efficiency sums 1/d over the
    sampled sources scaled by population size. Standard errors use the sample standard deviation
    with the finite-population correction. Cost is O(samples · m) instead of O(n · m).
    """
    return path_stats_adjacency(
        adjacency(undirected_simple(g))[0],
        exact_max_nodes=exact_max_nodes,
        samples=samples,
        seed=seed,
    )


def path_stats_adjacency(
    a: sp.csr_matrix,
    *,
    exact_max_nodes: int = EXACT_PATH_MAX_NODES,
    samples: int = DEFAULT_PATH_SAMPLES,
    seed: int = 0,
) -> PathStats:
    """:func:`path_stats` on a symmetric 0/1 adjacency."""
    n = a.shape[0]
    if n < 2:
        return PathStats(
            avg_path=None,
            avg_path_ln=None,
            avg_path_se=0.0,
            efficiency=0.0,
            efficiency_se=0.0,
            lcc_size=n,
            exact=True,
            sources=n,
        )
    rng = np.random.default_rng(numpy_entropy(seed))
    _, labels = components(a)
    sizes = np.bincount(labels)
    lcc_label = int(sizes.argmax())
    in_lcc = labels == lcc_label
    lcc_nodes = np.flatnonzero(in_lcc)
    rest = np.flatnonzero(~in_lcc & (sizes[labels] > 1))
    size = len(lcc_nodes)

    lcc_exact = size <= exact_max_nodes
    src = (
        np.arange(size)
        if lcc_exact
        else np.sort(rng.choice(size, size=min(samples, size), replace=False))
    )
    sum_d, sum_inv = _bfs_sums(a[lcc_nodes][:, lcc_nodes], src)
    n_sources = len(src)
    exact = lcc_exact
    avg_path: float | None = None
    avg_se = 0.0
    if size > 1:
        per_source = sum_d / (size - 1)
        avg_path = float(per_source.mean())
        avg_se = 0.0 if lcc_exact else _total(per_source, size, False)[1] / size
    inv_total, inv_var = 0.0, 0.0
    t, se = _total(sum_inv, size, lcc_exact)
    inv_total += t
    inv_var += se**2
    if len(rest):
        rest_exact = len(rest) <= exact_max_nodes
        rsrc = (
            np.arange(len(rest))
            if rest_exact
            else np.sort(rng.choice(len(rest), size=min(samples, len(rest)), replace=False))
        )
        _, r_inv = _bfs_sums(a[rest][:, rest], rsrc)
        n_sources += len(rsrc)
        exact &= rest_exact
        t, se = _total(r_inv, len(rest), rest_exact)
        inv_total += t
        inv_var += se**2
    denom = n * (n - 1)
    return PathStats(
        avg_path=avg_path,
        avg_path_ln=avg_path / math.log(size) if avg_path is not None else None,
        avg_path_se=avg_se,
        efficiency=inv_total / denom,
        efficiency_se=math.sqrt(inv_var) / denom,
        lcc_size=size,
        exact=exact,
        sources=n_sources,
    )


def louvain(g: nx.Graph, *, seed: int = 0, resolution: float = 1.0) -> tuple[float | None, int]:
    """(modularity, number of communities) of seeded Louvain communities (unweighted).

    ``None`` modularity for a graph without edges (undefined).
    """
    a, _ = adjacency(undirected_simple(g))
    return louvain_adjacency(a, seed=seed, resolution=resolution)


def louvain_adjacency(
    a: sp.csr_matrix, *, seed: int = 0, resolution: float = 1.0, graph: Any = None
) -> tuple[float | None, int]:
    """:func:`louvain` on a symmetric adjacency: igraph's multilevel algorithm (Blondel et al.,
    the same method as ``networkx.community.louvain_communities``) with a ``seed``-ed generator;
    ``graph`` is the adjacency's igraph graph when the caller already built it."""
    n = a.shape[0]
    if a.nnz == 0:
        return None, n
    h = graph if graph is not None else to_igraph(a)
    with seeded_igraph(seed):
        parts = h.community_multilevel(weights=None, return_levels=False, resolution=resolution)
    q = h.modularity(parts.membership, resolution=resolution)
    return float(q), len(parts)


def degree_stats(g: nx.Graph) -> dict[str, Any]:
    """Median and mean degree, max degree, and the normalised degree histogram.

    ``distribution`` maps degree/(n−1) (rounded to 6 places, as a string key) to node counts.
    """
    h = undirected_simple(g)
    n = h.number_of_nodes()
    return _degree_summary(np.fromiter((d for _, d in h.degree()), dtype=np.int64, count=n))


def _degree_summary(degs: np.ndarray) -> dict[str, Any]:
    n = len(degs)
    if n == 0:
        return {"median": None, "mean": None, "max": None, "distribution": {}}
    norm = max(1, n - 1)
    hist = Counter(degs.tolist())
    return {
        "median": float(np.median(degs)),
        "mean": float(degs.mean()),
        "max": int(degs.max()),
        "distribution": {f"{d / norm:.6f}": c for d, c in sorted(hist.items())},
    }


def reciprocity(g: nx.DiGraph) -> float | None:
    """Share of directed edges whose reverse also exists (``None`` without edges)."""
    if not g.is_directed():
        raise TypeError("reciprocity needs a directed graph")
    m = g.number_of_edges()
    if m == 0:
        return None
    return sum(1 for u, v in g.edges() if u != v and g.has_edge(v, u)) / m


def same_ratio(g: nx.Graph, groups: Mapping[Any, str]) -> float | None:
    """Homophily same-ratio: (share of edges joining same-group nodes) ÷ (share of node pairs
    in the same group). Only nodes with a group count; ``None`` when undefined: fewer than two
    labelled nodes, no edge between them, or a single group (every pair and every edge is then
    "same", a ratio of 1 that measures nothing and would read as inside the literature's
    ranges)."""
    h = undirected_simple(g)
    labelled = [v for v in h.nodes if v in groups]
    n = len(labelled)
    if n < 2:
        return None
    counts = Counter(groups[v] for v in labelled)
    if len(counts) < 2:
        return None
    pair_share = sum(c * (c - 1) / 2 for c in counts.values()) / (n * (n - 1) / 2)
    edges = [(u, v) for u, v in h.edges() if u in groups and v in groups]
    if not edges or pair_share == 0:
        return None
    edge_share = sum(1 for u, v in edges if groups[u] == groups[v]) / len(edges)
    return edge_share / pair_share


def attribute_assortativity(g: nx.Graph, groups: Mapping[Any, str]) -> float | None:
    """Newman's attribute assortativity r = (Σ e_ii − Σ a_i b_i) / (1 − Σ a_i b_i) over the edges
    whose endpoints both have a group (each undirected edge counted in both directions, as
    networkx's ``attribute_assortativity_coefficient``). Vectorised: networkx's version takes
    ~10 s per attribute on a million edges. ``None`` if undefined (no edges, one group)."""
    h = undirected_simple(g)
    nodes = [v for v in h.nodes if v in groups]
    labels = sorted({groups[v] for v in nodes})
    if len(labels) < 2:
        return None
    code = {lab: i for i, lab in enumerate(labels)}
    gid = {v: code[groups[v]] for v in nodes}
    pairs = np.array(
        [(gid[u], gid[v]) for u, v in h.edges() if u in gid and v in gid], dtype=np.int64
    ).reshape(-1, 2)
    if len(pairs) == 0:
        return None
    k = len(labels)
    both = np.concatenate([pairs, pairs[:, ::-1]])
    mix = np.bincount(both[:, 0] * k + both[:, 1], minlength=k * k).reshape(k, k) / len(both)
    ab = float(mix.sum(axis=1) @ mix.sum(axis=0))
    if ab >= 1.0:
        return None
    return float((np.trace(mix) - ab) / (1.0 - ab))


def group_codes(nodes: Iterable[Hashable], groups: Mapping[Any, str]) -> np.ndarray:
    """Per node (in ``nodes`` order) the index of its group among the sorted group names of
    the nodes that have one; -1 for a node without a group."""
    order = list(nodes)
    labels = sorted({groups[v] for v in order if v in groups})
    code = {lab: i for i, lab in enumerate(labels)}
    return np.fromiter(
        (code[groups[v]] if v in groups else -1 for v in order), dtype=np.int64, count=len(order)
    )


def homophily_adjacency(a: sp.csr_matrix, codes: np.ndarray) -> tuple[float | None, float | None]:
    """(:func:`same_ratio`, :func:`attribute_assortativity`) on a symmetric 0/1 adjacency with
    :func:`group_codes` for its nodes: the same numbers, computed on arrays."""
    labelled = codes[codes >= 0]
    n = len(labelled)
    k = int(labelled.max()) + 1 if n else 0
    upper = sp.triu(a, k=1).tocoo()
    cu, cv = codes[upper.row], codes[upper.col]
    both_labelled = (cu >= 0) & (cv >= 0)
    cu, cv = cu[both_labelled], cv[both_labelled]
    ratio: float | None = None
    if n >= 2 and np.unique(labelled).size >= 2:
        counts = np.bincount(labelled, minlength=k).astype(np.float64)
        pair_share = float((counts * (counts - 1) / 2).sum() / (n * (n - 1) / 2))
        if len(cu) and pair_share != 0:
            ratio = float(np.count_nonzero(cu == cv) / len(cu)) / pair_share
    assort: float | None = None
    if k >= 2 and len(cu):
        src = np.concatenate([cu, cv])
        dst = np.concatenate([cv, cu])
        mix = np.bincount(src * k + dst, minlength=k * k).reshape(k, k) / len(src)
        ab = float(mix.sum(axis=1) @ mix.sum(axis=0))
        if ab < 1.0:
            assort = float((np.trace(mix) - ab) / (1.0 - ab))
    return ratio, assort


def _edge_set(g: nx.Graph) -> set[frozenset[Hashable]]:
    return {frozenset((u, v)) for u, v in g.edges() if u != v}


def triadic_closure(prev: nx.Graph, nxt: nx.Graph) -> float | None:
    """Fraction of ties new in ``nxt`` whose endpoints had a common neighbour in ``prev``
    (i.e. the new tie closes an open triad of ``prev``). ``None`` when no tie is new."""
    p = undirected_simple(prev)
    old = _edge_set(p)
    new = [e for e in _edge_set(undirected_simple(nxt)) if e not in old]
    if not new:
        return None
    closing = 0
    for e in new:
        u, v = tuple(e)
        if u in p and v in p and any(True for _ in nx.common_neighbors(p, u, v)):
            closing += 1
    return closing / len(new)


def persistence(prev: nx.Graph, nxt: nx.Graph) -> dict[str, float | None]:
    """Jaccard similarity of the two (undirected) edge sets and the share of ``prev``'s ties
    still present in ``nxt`` (``None`` when undefined)."""
    a, b = _edge_set(prev), _edge_set(nxt)
    union = a | b
    return {
        "jaccard": len(a & b) / len(union) if union else None,
        "retained": len(a & b) / len(a) if a else None,
    }


def graph_metrics(
    g: nx.Graph,
    *,
    attributes: Mapping[str, Mapping[Any, str]] | None = None,
    seed: int = 0,
    fit_power_law: bool = True,
    exact_max_nodes: int = EXACT_PATH_MAX_NODES,
    path_samples: int = DEFAULT_PATH_SAMPLES,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Every structural metric of ``g`` as a JSON-ready dict.

    ``attributes`` maps attribute name -> {node: group} for homophily (same-ratio and
    assortativity per attribute). Directed graphs also get ``reciprocity``. ``timings``, when
    given, receives seconds spent per metric (for benchmarks). The graph is converted once
    (:func:`~friendsim.analysis.arraygraph.from_networkx`, node order kept) and measured by
    :func:`array_graph_metrics`.
    """
    from friendsim.analysis.arraygraph import from_networkx

    t_acc: dict[str, float] = timings if timings is not None else {}
    t0 = time.perf_counter()
    ag = from_networkx(g)
    t_acc["adjacency"] = t_acc.get("adjacency", 0.0) + time.perf_counter() - t0
    out = array_graph_metrics(
        ag,
        attributes=attributes,
        seed=seed,
        fit_power_law=fit_power_law,
        exact_max_nodes=exact_max_nodes,
        path_samples=path_samples,
        timings=t_acc,
    )
    if g.is_directed() and g.is_multigraph():
        out["reciprocity"] = reciprocity(g)
    return out


def arc_reciprocity(ag: ArrayGraph) -> float | None:
    """:func:`reciprocity` of a directed :class:`ArrayGraph` (``None`` without arcs)."""
    if ag.arcs is None:
        raise TypeError("reciprocity needs a directed graph")
    m = len(ag.arcs)
    if m == 0:
        return None
    n = ag.n
    u, v = np.divmod(ag.arcs, n)
    mutual = np.isin(v * n + u, ag.arcs) & (u != v)
    return int(np.count_nonzero(mutual)) / m


def array_graph_metrics(
    ag: ArrayGraph,
    *,
    attributes: Mapping[str, Mapping[Any, str]] | None = None,
    seed: int = 0,
    fit_power_law: bool = True,
    exact_max_nodes: int = EXACT_PATH_MAX_NODES,
    path_samples: int = DEFAULT_PATH_SAMPLES,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """:func:`graph_metrics` of an :class:`~friendsim.analysis.arraygraph.ArrayGraph` (the same
    keys and numbers as for the equivalent networkx graph with the same node order)."""
    from friendsim.analysis.powerlaw import fit_power_law as _fit

    t_acc: dict[str, float] = timings if timings is not None else {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        t_acc[name] = t_acc.get(name, 0.0) + time.perf_counter() - t0
        return out

    a = ag.adjacency
    n, m = ag.n, ag.m
    out: dict[str, Any] = {"nodes": n, "edges": m}
    out["density"] = 0.0 if n < 2 else 2.0 * m / (n * (n - 1))
    clust, trans = timed("clustering", lambda: clustering_stats(a))
    out["clustering"], out["transitivity"] = clust, trans
    out["lcc"] = timed("lcc", lambda: float(np.bincount(components(a)[1]).max() / n) if n else 0.0)
    ps = timed(
        "paths",
        lambda: path_stats_adjacency(
            a, exact_max_nodes=exact_max_nodes, samples=path_samples, seed=seed
        ),
    )
    out.update(
        avg_path=ps.avg_path,
        path_ln=ps.avg_path_ln,
        avg_path_se=ps.avg_path_se,
        efficiency=ps.efficiency,
        efficiency_se=ps.efficiency_se,
        paths_exact=ps.exact,
        path_sources=ps.sources,
    )
    q, ncom = timed("modularity", lambda: louvain_adjacency(a, seed=seed))
    out["modularity"], out["communities"] = q, ncom
    degs = ag.degrees()
    deg = timed("degrees", lambda: _degree_summary(degs))
    out["median_degree"], out["mean_degree"] = deg["median"], deg["mean"]
    out["degree_distribution"] = deg["distribution"]
    if fit_power_law:
        fit = timed("power_law", lambda: _fit(degs[degs > 0]))
        out["power_law"] = fit.to_dict() if fit is not None else None
    if ag.directed:
        out["reciprocity"] = timed("reciprocity", lambda: arc_reciprocity(ag))
    if attributes:
        hom: dict[str, Any] = {}
        for name, groups in sorted(attributes.items()):
            t0 = time.perf_counter()
            ratio, assort = homophily_adjacency(a, group_codes(ag.labels, groups))
            t_acc["homophily"] = t_acc.get("homophily", 0.0) + time.perf_counter() - t0
            hom[name] = {"same_ratio": ratio, "assortativity": assort}
        out["homophily"] = hom
    return out


def pairwise_dynamics(graphs: Iterable[nx.Graph]) -> list[dict[str, float | None]]:
    """Triadic closure and persistence between consecutive graphs of a sequence."""
    seq = list(graphs)
    out = []
    for prev, nxt in itertools.pairwise(seq):
        row: dict[str, float | None] = {"triadic_closure": triadic_closure(prev, nxt)}
        row.update(persistence(prev, nxt))
        out.append(row)
    return out


def array_pairwise_dynamics(graphs: Iterable[ArrayGraph]) -> list[dict[str, float | None]]:
    """:func:`pairwise_dynamics` of :class:`~friendsim.analysis.arraygraph.ArrayGraph` values
    (vertices matched by label; the same numbers as for the networkx graphs)."""
    out: list[dict[str, float | None]] = []
    prev: ArrayGraph | None = None
    prev_edges: set[frozenset[Hashable]] = set()
    for nxt in graphs:
        edges = nxt.edge_pairs()
        if prev is not None:
            new = [e for e in edges if e not in prev_edges]
            closure: float | None = None
            if new:
                index = {v: i for i, v in enumerate(prev.labels)}
                ptr, nbr = prev.adjacency.indptr, prev.adjacency.indices
                closing = 0
                for e in new:
                    u, v = tuple(e)
                    i, j = index.get(u), index.get(v)
                    if i is None or j is None:
                        continue
                    if np.intersect1d(nbr[ptr[i] : ptr[i + 1]], nbr[ptr[j] : ptr[j + 1]]).size:
                        closing += 1
                closure = closing / len(new)
            union = prev_edges | edges
            both = len(prev_edges & edges)
            out.append(
                {
                    "triadic_closure": closure,
                    "jaccard": both / len(union) if union else None,
                    "retained": both / len(prev_edges) if prev_edges else None,
                }
            )
        prev, prev_edges = nxt, edges
    return out
