"""Benchmark: every network metric on a large synthetic interaction graph.

Full run: a directed interaction graph of 100,000 nodes and 1,000,000 edges (heavy-tailed
Chung–Lu activity with 60 % of edges inside blocks of 100 nodes, for clustering and community
structure; a share of edges reciprocated), two persona attributes per node. ``--quick``: 20,000
nodes, 200,000 edges. Prints per-metric wall seconds, total wall and CPU seconds and the load
average (the machine is shared: wall time inflates under load, CPU time does not); the FINAL line
is one JSON object.

    .venv/bin/python bench/analysis.py [--quick] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import networkx as nx
import numpy as np

from friendsim.analysis.metrics import graph_metrics


def synthetic_interaction_graph(n: int, m: int, *, seed: int) -> nx.DiGraph:
    """A seeded heavy-tailed directed graph with exactly ``m`` distinct edges (no self loops)."""
    rng = np.random.default_rng(seed)
    w = rng.pareto(2.0, n) + 1.0
    p = w / w.sum()
    block = 100
    k = int(m * 1.3)
    src = rng.choice(n, size=k, p=p)
    local = rng.random(k) < 0.6
    dst = np.where(
        local, (src // block) * block + rng.integers(0, block, k), rng.choice(n, size=k, p=p)
    )
    dst = np.minimum(dst, n - 1)
    edges = np.stack([src, dst], axis=1)
    back = edges[rng.random(k) < 0.2][:, ::-1]
    mixed = np.empty((len(edges) + len(back), 2), dtype=edges.dtype)
    order = rng.permutation(len(mixed))
    mixed[order] = np.concatenate([edges, back])
    edges = mixed
    edges = edges[edges[:, 0] != edges[:, 1]]
    _, first = np.unique(edges, axis=0, return_index=True)
    edges = edges[np.sort(first)][:m]
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges.tolist(), weight=1)
    return g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="20k nodes / 200k edges (< 60 s)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    n, m = (20_000, 200_000) if args.quick else (100_000, 1_000_000)
    t0 = time.perf_counter()
    g = synthetic_interaction_graph(n, m, seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    attrs = {
        "gender": {v: str(x) for v, x in zip(g.nodes, rng.integers(0, 2, n), strict=True)},
        "stance": {v: str(x) for v, x in zip(g.nodes, rng.integers(0, 5, n), strict=True)},
    }
    build_s = time.perf_counter() - t0
    print(
        f"graph: {g.number_of_nodes()} nodes, {g.number_of_edges()} edges, built in {build_s:.1f} s"
    )
    timings: dict[str, float] = {}
    t1, c1 = time.perf_counter(), time.process_time()
    res = graph_metrics(g, attributes=attrs, seed=args.seed, timings=timings)
    total, cpu = time.perf_counter() - t1, time.process_time() - c1
    for name, sec in sorted(timings.items(), key=lambda kv: -kv[1]):
        print(f"{name:>14}: {sec:7.2f} s")
    print(
        f"{'total':>14}: {total:7.2f} s wall, {cpu:.2f} s CPU (load avg {os.getloadavg()[0]:.1f})"
    )
    summary = {
        "bench": "analysis",
        "quick": args.quick,
        "nodes": n,
        "edges": g.number_of_edges(),
        "build_s": round(build_s, 2),
        "total_s": round(total, 2),
        "cpu_s": round(cpu, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "seconds": {k: round(v, 3) for k, v in sorted(timings.items())},
        "density": res["density"],
        "clustering": res["clustering"],
        "lcc": res["lcc"],
        "avg_path": res["avg_path"],
        "avg_path_se": res["avg_path_se"],
        "efficiency": res["efficiency"],
        "modularity": res["modularity"],
        "reciprocity": res["reciprocity"],
        "power_law_alpha": res["power_law"]["alpha"] if res["power_law"] else None,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "networkx": nx.__version__,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
