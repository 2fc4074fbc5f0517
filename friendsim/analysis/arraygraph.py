"""Graphs on integer vertex ids, built straight from the event log for the metrics.

A run's analysis measures dozens of graphs (tie networks per window and threshold, the follow
graph, interaction graphs per window). Building each as a networkx graph and then converting it
to arrays cost more than the metrics themselves, so :func:`friendsim.analysis.summary.
network_summary` builds :class:`ArrayGraph` values directly with :class:`GraphBuilder` and
:func:`friendsim.analysis.metrics.array_graph_metrics` measures them. networkx graphs stay what
users pass in and get back (:func:`friendsim.analysis.metrics.graph_metrics` converts one with
:func:`from_networkx` and runs the same code).

Vertex order is part of the contract: seeded Louvain and sampled path estimators depend on it.
A builder numbers vertices exactly as networkx orders the nodes of the equivalent graph (the
given nodes first, then each new endpoint in the order its first edge was added), so the array
path and the networkx path give the same numbers.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import networkx as nx
import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True, kw_only=True, slots=True)
class ArrayGraph:
    """A graph on vertices ``0..n-1`` (``labels[i]`` names vertex ``i``).

    ``adjacency`` is the symmetric 0/1 CSR matrix of the undirected, simple view (self loops
    dropped) that every structural metric uses. ``arcs`` holds, for a directed graph, its
    distinct arcs as codes ``u * n + v`` (self loops included, sorted); ``None`` when undirected.
    """

    labels: tuple[Hashable, ...]
    adjacency: sp.csr_matrix
    arcs: np.ndarray | None = None

    @property
    def directed(self) -> bool:
        """Whether the graph was directed (reciprocity is defined)."""
        return self.arcs is not None

    @property
    def n(self) -> int:
        """Number of vertices."""
        return len(self.labels)

    @property
    def m(self) -> int:
        """Number of edges of the undirected simple view."""
        return int(self.adjacency.nnz // 2)

    def degrees(self) -> np.ndarray:
        """Degree of every vertex in the undirected simple view (int64, vertex order)."""
        return np.diff(self.adjacency.indptr).astype(np.int64)

    def edge_pairs(self) -> set[frozenset[Hashable]]:
        """The undirected edges as label pairs (for comparisons between graphs)."""
        upper = sp.triu(self.adjacency, k=1).tocoo()
        lab = self.labels
        return {frozenset((lab[i], lab[j])) for i, j in zip(upper.row, upper.col, strict=True)}


def symmetric_adjacency(rows: np.ndarray, cols: np.ndarray, n: int) -> sp.csr_matrix:
    """Symmetric 0/1 CSR adjacency of the edges ``rows[k]``–``cols[k]`` without self loops."""
    if len(rows) == 0:
        return sp.csr_matrix((n, n), dtype=np.int64)
    keep = rows != cols
    rows, cols = rows[keep], cols[keep]
    data = np.ones(2 * len(rows), dtype=np.int64)
    a = sp.csr_matrix(
        (data, (np.concatenate([rows, cols]), np.concatenate([cols, rows]))), shape=(n, n)
    )
    a.data[:] = 1
    a.sum_duplicates()
    a.data[:] = 1
    return a


class GraphBuilder:
    """Collects nodes and edges (by label) and builds an :class:`ArrayGraph`.

    Nodes are numbered in networkx's order for the same calls (``add_nodes_from``, then
    ``add_edge``/``add_node``). A repeated edge is one edge; a directed builder keeps arcs and
    can remove one (as ``DiGraph.remove_edge``, the nodes stay).
    """

    __slots__ = ("_directed", "_edges", "_index", "_labels")

    def __init__(self, nodes: Iterable[Hashable] = (), *, directed: bool = False) -> None:
        self._labels: list[Hashable] = list(dict.fromkeys(nodes))
        self._index: dict[Hashable, int] = {v: i for i, v in enumerate(self._labels)}
        self._edges: dict[tuple[int, int], None] = {}
        self._directed = directed

    def add_node(self, v: Hashable) -> int:
        """The id of ``v``, added at the end if new."""
        i = self._index.get(v)
        if i is None:
            i = self._index[v] = len(self._labels)
            self._labels.append(v)
        return i

    def add_edge(self, u: Hashable, v: Hashable) -> None:
        """Add the edge (arc, if directed) ``u``–``v``; new endpoints are added u first."""
        self._edges[(self.add_node(u), self.add_node(v))] = None

    def remove_arc(self, u: Hashable, v: Hashable) -> None:
        """Remove the arc ``u``→``v`` if present (directed builders only)."""
        if not self._directed:
            raise TypeError("remove_arc needs a directed builder")
        i, j = self._index.get(u), self._index.get(v)
        if i is not None and j is not None:
            self._edges.pop((i, j), None)

    def build(self) -> ArrayGraph:
        """The graph of everything added so far."""
        n = len(self._labels)
        pairs = np.fromiter(
            (x for e in self._edges for x in e), dtype=np.int64, count=2 * len(self._edges)
        ).reshape(-1, 2)
        rows, cols = pairs[:, 0], pairs[:, 1]
        arcs = np.unique(rows * n + cols) if self._directed else None
        return ArrayGraph(
            labels=tuple(self._labels), adjacency=symmetric_adjacency(rows, cols, n), arcs=arcs
        )


def from_networkx(g: nx.Graph) -> ArrayGraph:
    """The :class:`ArrayGraph` of a networkx graph (node order kept; weights ignored)."""
    lab = tuple(g.nodes)
    index = {v: i for i, v in enumerate(lab)}
    m = g.number_of_edges()
    rows = np.fromiter((index[u] for u, _ in g.edges()), dtype=np.int64, count=m)
    cols = np.fromiter((index[v] for _, v in g.edges()), dtype=np.int64, count=m)
    n = len(lab)
    arcs = np.unique(rows * n + cols) if g.is_directed() else None
    return ArrayGraph(labels=lab, adjacency=symmetric_adjacency(rows, cols, n), arcs=arcs)
