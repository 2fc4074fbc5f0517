"""The analysis measures graphs built as integer-id arrays straight from the log; networkx is the
reference.

* On the test graphs every metric agrees with networkx's own functions: node and edge counts,
  density, clustering, transitivity, LCC, exact average path and global efficiency, degrees,
  reciprocity and attribute assortativity to 1e-9; Louvain modularity (seeded, vertex-order
  dependent in both libraries) within 0.03.
* On a real run's log the array graphs are the networkx graphs the analysis used to build (same
  nodes in the same order, same edges), so every metric, the dynamics between windows and the
  whole network summary are *equal* to what the networkx path gives; only ``mean_evidence`` is
  compared to 1e-12 (it is now summed exactly with ``math.fsum``; the old plain sum depended on
  set order).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest
from scipy import stats

from friendsim.analysis import metrics as m
from friendsim.analysis import powerlaw
from friendsim.analysis.arraygraph import GraphBuilder, from_networkx
from friendsim.analysis.graphs import (
    INTERACTION_KINDS,
    agents_and_attributes,
    follow_array_graph,
    follow_graph,
    groups_for,
    interaction_arrays,
    interaction_graph,
    interaction_graphs_by_window,
    tie_array_graphs,
    tie_networks,
)
from friendsim.analysis.reference import compare_homophily, compare_to_reference
from friendsim.analysis.rewards_cli import iter_events
from friendsim.analysis.sentiment import get_sentiment
from friendsim.analysis.summary import json_ready, network_summary, theta_key
from friendsim.analysis.ties import DEFAULT_THETAS, TieParams, tie_windows
from friendsim.platform.events import Event
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import load_config
from friendsim.runtime.config import parse_config as _parse

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _with_groups(g: nx.Graph, seed: int) -> tuple[nx.Graph, dict[Any, str]]:
    rng = random.Random(seed)
    groups = {v: rng.choice("abc") for v in g.nodes if rng.random() < 0.9}
    return g, groups


def _digraph() -> nx.DiGraph:
    g = nx.gnp_random_graph(300, 0.02, seed=5, directed=True)
    g.add_edges_from([(1, 0), (0, 1), (7, 7)])  # a mutual pair and a self loop
    g.add_nodes_from(["isolated-a", "isolated-b"])
    return g


def _test_graphs() -> list[tuple[str, nx.Graph]]:
    les = nx.les_miserables_graph()  # string labels
    return [
        ("karate", nx.karate_club_graph()),
        ("les_miserables", nx.Graph(les.edges())),
        ("erdos_renyi_disconnected", nx.gnp_random_graph(500, 0.004, seed=3)),
        ("barabasi_albert", nx.barabasi_albert_graph(600, 3, seed=2)),
        ("directed_with_loop", _digraph()),
    ]


@pytest.mark.parametrize(("name", "g"), _test_graphs())
def test_metrics_agree_with_networkx(name: str, g: nx.Graph) -> None:
    g, groups = _with_groups(g, seed=len(name))
    got = m.graph_metrics(g, attributes={"team": groups}, seed=3)
    h = nx.Graph(g.to_undirected()) if g.is_directed() else nx.Graph(g)
    h.remove_edges_from(list(nx.selfloop_edges(h)))
    assert got["nodes"] == h.number_of_nodes()
    assert got["edges"] == h.number_of_edges()
    assert got["density"] == pytest.approx(nx.density(h), abs=1e-9)
    assert got["clustering"] == pytest.approx(nx.average_clustering(h), abs=1e-9)
    assert got["transitivity"] == pytest.approx(nx.transitivity(h), abs=1e-9)
    lcc = h.subgraph(max(nx.connected_components(h), key=len))
    assert got["lcc"] == pytest.approx(lcc.number_of_nodes() / h.number_of_nodes(), abs=1e-9)
    assert got["paths_exact"] is True
    assert got["avg_path"] == pytest.approx(nx.average_shortest_path_length(lcc), rel=1e-9)
    assert got["efficiency"] == pytest.approx(nx.global_efficiency(h), rel=1e-9)
    ref = nx.community.louvain_communities(h, weight=None, seed=3)
    assert got["modularity"] == pytest.approx(
        nx.community.modularity(h, ref, weight=None), abs=0.03
    )
    degs = [d for _, d in h.degree()]
    assert got["median_degree"] == pytest.approx(float(np.median(degs)), abs=1e-9)
    assert got["mean_degree"] == pytest.approx(sum(degs) / len(degs), abs=1e-9)
    norm = h.number_of_nodes() - 1
    assert got["degree_distribution"] == {
        f"{d / norm:.6f}": c for d, c in sorted(Counter(degs).items())
    }
    if g.is_directed():
        assert got["reciprocity"] == pytest.approx(nx.overall_reciprocity(g), abs=1e-9)
    else:
        assert "reciprocity" not in got
    labelled = h.subgraph([v for v in h.nodes if v in groups]).copy()
    nx.set_node_attributes(labelled, groups, "team")
    assert got["homophily"]["team"]["assortativity"] == pytest.approx(
        nx.attribute_assortativity_coefficient(labelled, "team"), abs=1e-9
    )


def test_builder_numbers_nodes_as_networkx_does() -> None:
    rng = random.Random(11)
    labels = [f"u{i}" for i in range(40)]
    for directed in (False, True):
        g = nx.DiGraph() if directed else nx.Graph()
        start = rng.sample(labels[:20], 10)
        g.add_nodes_from(start)
        b = GraphBuilder(start, directed=directed)
        for _ in range(400):
            u, v = rng.choice(labels), rng.choice(labels)
            op = rng.random()
            if directed and op < 0.2:
                if g.has_edge(u, v):
                    g.remove_edge(u, v)
                b.remove_arc(u, v)
            elif op < 0.3:
                g.add_node(u)
                b.add_node(u)
            else:
                g.add_edge(u, v)
                b.add_edge(u, v)
        ag, ref = b.build(), from_networkx(g)
        assert ag.labels == tuple(g.nodes)
        assert (ag.adjacency != ref.adjacency).nnz == 0
        if directed:
            assert ag.arcs is not None and ref.arcs is not None
            assert ag.arcs.tolist() == ref.arcs.tolist()
        assert m.array_graph_metrics(ag, seed=2) == m.graph_metrics(g, seed=2)


def test_undirected_builder_has_no_arcs_to_remove() -> None:
    with pytest.raises(TypeError, match="directed"):
        GraphBuilder(["a"]).remove_arc("a", "b")


def _old_lognorm(x: np.ndarray, xmin: int, mu: float, sigma: float) -> np.ndarray:
    lo = (np.log(x - 0.5) - mu) / sigma
    hi = (np.log(x + 0.5) - mu) / sigma
    mass = np.where(
        lo > 0, stats.norm.sf(lo) - stats.norm.sf(hi), stats.norm.cdf(hi) - stats.norm.cdf(lo)
    )
    tail = stats.norm.sf((math.log(xmin - 0.5) - mu) / sigma) if xmin > 0.5 else 1.0
    return np.log(np.maximum(mass, 1e-300)) - math.log(max(tail, 1e-300))


@pytest.mark.parametrize(("mu", "sigma"), [(0.5, 1.0), (2.0, 0.3), (-1.0, 4.0), (6.0, 0.05)])
def test_lognormal_mass_is_bit_identical_to_scipy_stats(mu: float, sigma: float) -> None:
    x = np.sort(np.random.default_rng(1).zipf(2.2, 3000).astype(np.float64))
    x = x[x >= 2]
    for xmin in (1, 2, 5):
        tail = x[x >= xmin]
        new = powerlaw._lognorm_logpdf_params(tail, xmin, mu, sigma)
        assert np.array_equal(new, _old_lognorm(tail, xmin, mu, sigma))


def _old_json_ready(value: Any) -> Any:
    from collections.abc import Mapping

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _old_json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_old_json_ready(v) for v in value]
    return value


def test_json_ready_fast_paths_give_the_general_result() -> None:
    from types import MappingProxyType

    value = {
        "a": [1, 2.5, float("nan"), (float("inf"), "x"), None, True],
        3: {"n": np.float64("nan"), "m": np.float64(1.5), "k": np.int64(4)},
        (1, 2): MappingProxyType({1: -float("inf"), "t": (1,)}),
        "nested": [[{"z": float("-inf")}]],
    }
    got, want = json_ready(value), _old_json_ready(value)
    assert got == want
    assert repr(got) == repr(want)  # same types (numpy scalars kept as they were)


# --- a real run's log: the array path equals the networkx path ---


@pytest.fixture(scope="module")
def run_events(tmp_path_factory: pytest.TempPathFactory) -> list[Event]:
    path = EXAMPLES / "continuous.toml"
    data = load_config(path).model_dump(mode="json")
    cfg = _parse(data, source=path)
    out = tmp_path_factory.mktemp("arrays") / "run"
    asyncio.run(run_experiment(cfg, out_dir=out, config_path=path))
    return list(iter_events(out / "events.db"))


def _edges(g: nx.Graph) -> set[frozenset[Hashable]]:
    return {frozenset((u, v)) for u, v in g.edges() if u != v}


def test_log_graphs_equal_the_networkx_graphs(run_events: list[Event]) -> None:
    evs = run_events
    agents, _ = agents_and_attributes(evs)
    kinds = Counter(type(ev).__name__ for ev in evs)
    assert kinds["Followed"] and kinds["Unfollowed"] and kinds["DirectMessageSent"]

    windows = tie_windows(evs, params=TieParams(), sentiment=get_sentiment())
    assert len(windows) >= 10
    for tw in windows:
        arrays, graphs = tie_array_graphs(tw), tie_networks(tw)
        for th in DEFAULT_THETAS:
            assert arrays[th].labels == tuple(graphs[th].nodes)
            assert arrays[th].edge_pairs() == _edges(graphs[th])

    fa, fg = follow_array_graph(evs, nodes=agents), follow_graph(evs, nodes=agents)
    assert fa.labels == tuple(fg.nodes)
    assert fa.arcs is not None
    n = fa.n
    assert {(int(c) // n, int(c) % n) for c in fa.arcs} == {
        (fa.labels.index(u), fa.labels.index(v)) for u, v in fg.edges()
    }

    ia = interaction_arrays(evs, nodes=agents)
    ig = interaction_graph(evs, nodes=agents)
    assert ia.final.labels == tuple(ig.nodes)
    assert ia.final.edge_pairs() == _edges(ig)
    assert dict(ia.kinds) == {
        k: sum(d[k] for _, _, d in ig.edges(data=True)) for k in INTERACTION_KINDS
    }
    by_window = interaction_graphs_by_window(evs, nodes=agents)
    assert [w for w, _ in ia.per_window] == [w for w, _ in by_window]
    for (_, a), (_, g) in zip(ia.per_window, by_window, strict=True):
        assert a.labels == tuple(g.nodes)
        assert a.edge_pairs() == _edges(g)
    assert m.array_pairwise_dynamics(a for _, a in ia.per_window) == m.pairwise_dynamics(
        g for _, g in by_window
    )


def _networkx_summary(evs: list[Event], seed: int) -> dict[str, Any]:
    """The network summary as the analysis computed it before the array path (networkx graphs
    measured one by one), for the parts that changed."""
    agents, recorded = agents_and_attributes(evs)
    groups = groups_for(recorded, agents)
    windows = tie_windows(evs, params=TieParams(), sentiment=get_sentiment())
    keys = ("nodes", "edges", "density", "clustering", "transitivity", "lcc", "avg_path",
            "path_ln", "efficiency", "modularity", "communities", "median_degree",
            "mean_degree", "reciprocity", "homophily")  # fmt: skip

    def compact(x: dict[str, Any]) -> dict[str, Any]:
        return {k: x[k] for k in keys if k in x}

    per_window, by_theta = [], {th: [] for th in DEFAULT_THETAS}  # type: ignore[var-annotated]
    for tw in windows:
        es = [ev.e for ev in tw.evidence.values()]
        row: dict[str, Any] = {"mean_evidence": sum(es) / len(es) if es else None, "thetas": {}}
        for th, g in tie_networks(tw).items():
            by_theta[th].append(g)
            mm = m.graph_metrics(g, attributes=groups, seed=seed, fit_power_law=False)
            row["thetas"][theta_key(th)] = compact(mm)
        per_window.append(row)
    final = {}
    for th, g in tie_networks(windows[-1]).items():
        mm = m.graph_metrics(g, attributes=groups, seed=seed)
        mm["reference"] = compare_to_reference(mm)
        mm["homophily_reference"] = compare_homophily(
            {a: h["same_ratio"] for a, h in mm.get("homophily", {}).items()}
        )
        final[theta_key(th)] = mm
    ig = interaction_graph(evs, nodes=agents)
    inter_final = m.graph_metrics(ig, attributes=groups, seed=seed)
    inter_windows = interaction_graphs_by_window(evs, nodes=agents)
    return json_ready(
        {
            "per_window": per_window,
            "final": final,
            "dynamics": {theta_key(th): m.pairwise_dynamics(gs) for th, gs in by_theta.items()},
            "follow": m.graph_metrics(
                follow_graph(evs, nodes=agents), attributes=groups, seed=seed
            ),
            "inter_final": inter_final,
            "inter_rows": [
                compact(m.graph_metrics(g, attributes=groups, seed=seed, fit_power_law=False))
                for _, g in inter_windows
            ],
            "inter_dyn": m.pairwise_dynamics(g for _, g in inter_windows),
        }
    )


def _without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def test_network_summary_equals_the_networkx_path(run_events: list[Event]) -> None:
    got = network_summary(run_events, attributes={}, params=TieParams(), seed=4)
    ref = _networkx_summary(run_events, seed=4)
    rows = got["ties"]["per_window"]
    assert len(rows) == len(ref["per_window"])
    for row, want in zip(rows, ref["per_window"], strict=True):
        assert row["thetas"] == want["thetas"]
        assert row["mean_evidence"] == pytest.approx(want["mean_evidence"], rel=1e-12)
    assert got["ties"]["final"] == ref["final"]
    assert got["ties"]["dynamics"] == ref["dynamics"]
    assert got["follow"] == ref["follow"]
    assert (
        _without(got["interaction"]["final"], "interactions", "total_weight")
        == (ref["inter_final"])
    )
    assert [_without(r, "window") for r in got["interaction"]["per_window"]] == ref["inter_rows"]
    assert got["interaction"]["dynamics"] == ref["inter_dyn"]
    assert got["follow"]["edges"] > 0 and got["interaction"]["final"]["edges"] > 0


def test_mean_evidence_is_the_exact_mean_of_the_window_evidence(run_events: list[Event]) -> None:
    got = network_summary(run_events, attributes={}, params=TieParams(), seed=0)
    windows = tie_windows(run_events, params=TieParams(), sentiment=get_sentiment())
    for row, tw in zip(got["ties"]["per_window"], windows, strict=True):
        es = sorted(ev.e for ev in tw.evidence.values())
        assert es, "every window of the example has active pairs"
        assert row["mean_evidence"] == math.fsum(reversed(es)) / len(es)
