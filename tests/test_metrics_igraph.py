"""The compiled metrics (python-igraph BFS and Louvain, array homophily) agree with networkx,
the reference, on the test graphs.

Tolerances: shortest-path length and global efficiency are exact computations and agree to
1e-9; Louvain is seed-dependent in both libraries (different vertex orders), so modularity
agrees within 0.03 and the igraph partition's own modularity, recomputed by networkx, must equal
the value we report (to 1e-9).
"""

from __future__ import annotations

import random

import networkx as nx
import pytest

from friendsim.analysis import metrics as m


def _graphs() -> list[tuple[str, nx.Graph]]:
    return [
        ("karate", nx.karate_club_graph()),
        ("les_miserables", nx.convert_node_labels_to_integers(nx.les_miserables_graph())),
        ("watts_strogatz", nx.connected_watts_strogatz_graph(400, 6, 0.1, seed=1)),
        ("erdos_renyi_disconnected", nx.gnp_random_graph(500, 0.004, seed=3)),
        ("barabasi_albert", nx.barabasi_albert_graph(600, 3, seed=2)),
        ("caveman", nx.connected_caveman_graph(12, 8)),
    ]


@pytest.mark.parametrize(("name", "g"), _graphs())
def test_exact_paths_and_efficiency_agree_with_networkx(name: str, g: nx.Graph) -> None:
    ps = m.path_stats(g, seed=0)
    lcc = g.subgraph(max(nx.connected_components(g), key=len))
    assert ps.exact
    assert ps.lcc_size == lcc.number_of_nodes()
    assert ps.avg_path == pytest.approx(nx.average_shortest_path_length(lcc), rel=1e-9)
    assert ps.efficiency == pytest.approx(nx.global_efficiency(g), rel=1e-9)


@pytest.mark.parametrize(("name", "g"), _graphs())
def test_louvain_modularity_agrees_with_networkx(name: str, g: nx.Graph) -> None:
    q, k = m.louvain(g, seed=7)
    ref = nx.community.louvain_communities(g, weight=None, seed=7)
    q_ref = nx.community.modularity(g, ref, weight=None)
    assert q is not None
    assert q == pytest.approx(q_ref, abs=0.03)
    assert k >= 2


def test_louvain_partition_modularity_is_what_networkx_computes() -> None:
    g = nx.connected_caveman_graph(10, 6)
    a, order = m.adjacency(g)
    h = m.to_igraph(a)
    with m.seeded_igraph(3):
        parts = h.community_multilevel()
    comms = [{order[i] for i in c} for c in parts]
    q, k = m.louvain(g, seed=3)
    assert k == len(comms)
    assert q == pytest.approx(nx.community.modularity(g, comms, weight=None), abs=1e-9)


def test_louvain_is_deterministic_per_seed_and_leaves_global_random_alone() -> None:
    g = nx.barabasi_albert_graph(800, 2, seed=5)
    state = random.getstate()
    first = m.louvain(g, seed=11)
    assert random.getstate() == state
    assert m.louvain(g, seed=11) == first


def test_sampled_paths_estimate_networkx_within_their_standard_error() -> None:
    g = nx.connected_watts_strogatz_graph(1500, 6, 0.05, seed=4)
    ps = m.path_stats(g, exact_max_nodes=100, samples=300, seed=2)
    assert not ps.exact and ps.sources == 300
    exact = nx.average_shortest_path_length(g)
    assert abs(ps.avg_path - exact) <= 4 * ps.avg_path_se + 1e-9  # type: ignore[operator]
    assert abs(ps.efficiency - nx.global_efficiency(g)) <= 4 * ps.efficiency_se + 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_array_homophily_equals_the_graph_versions(seed: int) -> None:
    g = nx.gnp_random_graph(300, 0.03, seed=seed)
    rng = random.Random(seed)
    groups = {v: rng.choice("abcd") for v in g.nodes if rng.random() < 0.85}
    a, order = m.adjacency(g)
    ratio, assort = m.homophily_adjacency(a, m.group_codes(order, groups))
    assert ratio == m.same_ratio(g, groups)
    assert assort == m.attribute_assortativity(g, groups)
    labelled = nx.Graph()
    labelled.add_nodes_from((v, {"g": groups[v]}) for v in groups)
    labelled.add_edges_from((u, v) for u, v in g.edges if u in groups and v in groups)
    assert assort == pytest.approx(nx.attribute_assortativity_coefficient(labelled, "g"), abs=1e-9)
