"""Metric functions against hand-computed values on small graphs and against networkx."""

from __future__ import annotations

import math

import networkx as nx
import pytest

from friendsim.analysis.metrics import (
    attribute_assortativity,
    average_clustering,
    degree_stats,
    density,
    graph_metrics,
    group_codes,
    homophily_adjacency,
    lcc_fraction,
    louvain,
    path_stats,
    persistence,
    reciprocity,
    same_ratio,
    transitivity,
    triadic_closure,
)


def triangle_pendant(isolated: bool = False) -> nx.Graph:
    """Triangle 1-2-3 plus pendant 4 on node 3 (and optionally an isolated node 5)."""
    g = nx.Graph([(1, 2), (2, 3), (1, 3), (3, 4)])
    if isolated:
        g.add_node(5)
    return g


def two_triangles() -> nx.Graph:
    """Triangles 0-1-2 and 3-4-5 joined by the bridge 2-3."""
    return nx.Graph([(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)])


def test_triangle_plus_pendant_by_hand() -> None:
    g = triangle_pendant()
    # n = 4, m = 4: 2·4/(4·3) = 2/3
    assert density(g) == pytest.approx(2 / 3)
    # local clustering: 1, 1, 1/3 (node 3: 1 triangle of 3 neighbour pairs), 0 (degree 1)
    assert average_clustering(g) == pytest.approx((1 + 1 + 1 / 3 + 0) / 4)
    # 3·1 triangle / (1 + 1 + 3 + 0) connected triples = 0.6
    assert transitivity(g) == pytest.approx(0.6)
    assert lcc_fraction(g) == 1.0
    # distances: 1-2, 1-3, 2-3, 3-4 = 1; 1-4, 2-4 = 2 → mean 8/6
    ps = path_stats(g)
    assert ps.exact and ps.avg_path == pytest.approx(8 / 6)
    assert ps.avg_path_ln == pytest.approx((8 / 6) / math.log(4))
    # efficiency: (4·1 + 2·½)/6 = 5/6
    assert ps.efficiency == pytest.approx(5 / 6)
    ds = degree_stats(g)
    assert ds["median"] == 2.0 and ds["max"] == 3
    # degrees 2, 2, 3, 1 over n−1 = 3
    assert ds["distribution"] == {"0.333333": 1, "0.666667": 2, "1.000000": 1}


def test_isolated_node_changes_density_lcc_efficiency_not_path() -> None:
    g = triangle_pendant(isolated=True)
    assert density(g) == pytest.approx(8 / 20)
    assert lcc_fraction(g) == pytest.approx(0.8)
    assert average_clustering(g) == pytest.approx((7 / 3) / 5)
    ps = path_stats(g)
    assert ps.avg_path == pytest.approx(8 / 6) and ps.lcc_size == 4
    # ordered pairs: 2 × (4 + ½ + ½) = 10 over 5·4
    assert ps.efficiency == pytest.approx(0.5)


def test_two_triangles_modularity_homophily_assortativity() -> None:
    g = two_triangles()
    q, k = louvain(g, seed=1)
    # {0,1,2}, {3,4,5}: 2 × (3/7 − (7/14)²) = 5/14
    assert k == 2 and q == pytest.approx(5 / 14)
    groups = {0: "x", 1: "x", 2: "x", 3: "y", 4: "y", 5: "y"}
    # same-group edges 6/7; same-group pairs 6/15 → (6/7)/(2/5) = 15/7
    assert same_ratio(g, groups) == pytest.approx(15 / 7)
    # mixing e_xx = e_yy = 6/14, a = b = ½ → r = (12/14 − ½)/(1 − ½) = 5/7
    assert attribute_assortativity(g, groups) == pytest.approx(5 / 7)
    # unlabelled nodes are left out: drop node 5's label → pairs 4 same of 10, edges 4 same of 5
    partial = {k: v for k, v in groups.items() if k != 5}
    assert same_ratio(g, partial) == pytest.approx((4 / 5) / (4 / 10))
    assert same_ratio(g, dict.fromkeys(g, "x")) is None  # one group: nothing to compare
    one = dict.fromkeys(g, "x")
    adj = nx.to_scipy_sparse_array(g, nodelist=sorted(g)).tocsr()
    assert homophily_adjacency(adj, group_codes(sorted(g), one)) == (None, None)
    assert attribute_assortativity(g, dict.fromkeys(g, "x")) is None


def test_reciprocity_directed() -> None:
    d = nx.DiGraph([("a", "b"), ("b", "a"), ("a", "c")])
    assert reciprocity(d) == pytest.approx(2 / 3)
    assert reciprocity(d) == pytest.approx(nx.reciprocity(d))
    assert reciprocity(nx.DiGraph()) is None
    with pytest.raises(TypeError):
        reciprocity(nx.Graph())


def test_triadic_closure_and_persistence_by_hand() -> None:
    prev = nx.Graph([("a", "b"), ("b", "c")])
    prev.add_node("d")
    nxt = nx.Graph([("a", "b"), ("b", "c"), ("a", "c"), ("c", "d")])
    # new ties: a-c closes the open triad a-b-c; c-d does not → ½
    assert triadic_closure(prev, nxt) == pytest.approx(0.5)
    assert persistence(prev, nxt) == {"jaccard": pytest.approx(0.5), "retained": 1.0}
    nxt2 = nx.Graph([("a", "b"), ("a", "c")])
    assert triadic_closure(prev, nxt2) == 1.0
    assert persistence(prev, nxt2) == {"jaccard": pytest.approx(1 / 3), "retained": 0.5}
    assert triadic_closure(prev, prev) is None


def test_against_networkx_on_random_graphs() -> None:
    for seed in range(3):
        g = nx.gnm_random_graph(120, 180, seed=seed)  # several components
        assert average_clustering(g) == pytest.approx(nx.average_clustering(g))
        assert transitivity(g) == pytest.approx(nx.transitivity(g))
        assert density(g) == pytest.approx(nx.density(g))
        lcc = max(nx.connected_components(g), key=len)
        assert lcc_fraction(g) == pytest.approx(len(lcc) / 120)
        ps = path_stats(g)
        assert ps.avg_path == pytest.approx(nx.average_shortest_path_length(g.subgraph(lcc)))
        assert ps.efficiency == pytest.approx(nx.global_efficiency(g))


def test_sampling_estimator_within_tolerance_on_medium_graph() -> None:
    g = nx.connected_watts_strogatz_graph(2500, 6, 0.05, seed=3)
    g.add_edges_from(
        nx.gnm_random_graph(300, 400, seed=4).edges(),
    )  # overlap, still one LCC
    g.add_edges_from((10_000 + i, 10_001 + i) for i in range(0, 1200, 2))  # 600 small components
    exact = path_stats(g, exact_max_nodes=10_000)
    est = path_stats(g, exact_max_nodes=500, samples=200, seed=11)
    assert exact.exact and not est.exact
    assert est.sources == 400  # 200 in the LCC + 200 among the other components
    assert est.avg_path_se > 0
    assert abs(est.avg_path - exact.avg_path) < max(4 * est.avg_path_se, 1e-9)
    assert est.avg_path == pytest.approx(exact.avg_path, rel=0.02)
    assert est.efficiency == pytest.approx(exact.efficiency, rel=0.02)
    assert abs(est.efficiency - exact.efficiency) < 4 * est.efficiency_se
    # seeded: same seed, same estimate
    assert path_stats(g, exact_max_nodes=500, seed=11).avg_path == est.avg_path


def test_graph_metrics_on_karate_matches_networkx() -> None:
    g = nx.Graph(nx.karate_club_graph().edges())
    m = graph_metrics(g, seed=0)
    assert m["density"] == pytest.approx(nx.density(g))
    assert m["clustering"] == pytest.approx(nx.average_clustering(g))
    assert m["avg_path"] == pytest.approx(nx.average_shortest_path_length(g))
    assert m["efficiency"] == pytest.approx(nx.global_efficiency(g))
    assert m["median_degree"] == 3.0 and m["lcc"] == 1.0
    assert m["paths_exact"] is True
    assert m["power_law"]["alpha"] > 1


def test_directed_graph_metrics_symmetrise() -> None:
    d = nx.DiGraph([(1, 2), (2, 1), (2, 3), (3, 1), (3, 4)])
    m = graph_metrics(d, attributes={"g": {1: "a", 2: "a", 3: "b", 4: "b"}})
    assert m["edges"] == 4  # 1-2 counted once
    assert m["reciprocity"] == pytest.approx(2 / 5)
    assert m["clustering"] == pytest.approx(average_clustering(triangle_pendant()))
    # same-group edges 1-2, 3-4 of 4; same-group pairs 2 of 6 → (1/2)/(1/3)
    assert m["homophily"]["g"]["same_ratio"] == pytest.approx(1.5)


def test_empty_and_edgeless_graphs_are_defined() -> None:
    g = nx.empty_graph(5)
    m = graph_metrics(g)
    assert m["density"] == 0.0 and m["clustering"] == 0.0
    assert m["lcc"] == pytest.approx(0.2)
    assert m["modularity"] is None and m["path_ln"] is None
    assert m["efficiency"] == 0.0
    assert graph_metrics(nx.Graph())["lcc"] == 0.0


@pytest.mark.parametrize("n", [0, 1, 5])
def test_average_path_without_any_pair_is_undefined_not_zero(n: int) -> None:
    # every component a single node: no pair of nodes to average a distance over
    m = graph_metrics(nx.empty_graph(n))
    assert m["avg_path"] is None and m["path_ln"] is None and m["avg_path_se"] == 0.0
    ps = path_stats(nx.empty_graph(n))
    assert ps.avg_path is None and ps.avg_path_ln is None
    # one edge is one pair at distance 1
    assert graph_metrics(nx.Graph([(0, 1)]))["avg_path"] == 1.0
