"""The report's tie-network drawing lays out a bounded number of agents: the spring layout is
quadratic in its nodes (a 10,000-agent run's report spent 196 of its 205 CPU seconds there, 12 times
the run's own CPU), so a larger network is drawn as the subgraph of its most strongly tied agents,
and says so; a smaller one is drawn whole, as before."""

from __future__ import annotations

from typing import Any

import networkx as nx
import pytest

from friendsim.report import figures


@pytest.fixture
def laid_out(monkeypatch: pytest.MonkeyPatch) -> list[nx.Graph]:
    """The graphs handed to the spring layout."""
    seen: list[nx.Graph] = []
    real = figures.drawn_graph

    def drawn(g: nx.Graph, **kw: Any) -> nx.Graph:
        seen.append(real(g, **kw))
        return seen[-1]

    monkeypatch.setattr(figures, "drawn_graph", drawn)
    return seen


def _titles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import matplotlib.axes

    titles: list[str] = []
    real = matplotlib.axes.Axes.set_title

    def set_title(self: Any, label: str, *a: Any, **kw: Any) -> Any:
        titles.append(label)
        return real(self, label, *a, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", set_title)
    return titles


def test_a_network_larger_than_the_limit_draws_its_most_tied_agents(
    laid_out: list[nx.Graph], monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = figures.MAX_DRAWN_NODES
    n = limit + 205
    nodes = [f"a{i:05d}" for i in range(n)]
    tied = nodes[-300:]  # the alphabetically last agents hold every tie
    edges = [(tied[i], tied[i + 1], 0.2 + i / 1000) for i in range(len(tied) - 1)]
    titles = _titles(monkeypatch)
    png = figures.network_drawing(nodes, edges, groups={}, attribute="", title="ties")
    assert png.startswith(b"\x89PNG")
    (g,) = laid_out
    assert g.number_of_nodes() == limit
    assert set(tied) <= set(g.nodes)
    isolated = sorted(set(g.nodes) - set(tied))
    assert isolated == nodes[: limit - len(tied)]  # then by name
    assert g.number_of_edges() == len(edges)
    assert titles[-1] == f"ties ({limit:,} most strongly tied of {n:,} agents drawn)"


def test_a_network_within_the_limit_is_drawn_whole(
    laid_out: list[nx.Graph], monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = [f"a{i}" for i in range(figures.MAX_DRAWN_NODES)]
    titles = _titles(monkeypatch)
    figures.network_drawing(nodes, [("a1", "a2", 0.5)], groups={}, attribute="", title="ties")
    (g,) = laid_out
    assert g.number_of_nodes() == len(nodes) and g.number_of_edges() == 1
    assert titles[-1] == "ties"


_DRAW = """
import sys
from friendsim.report import figures
nodes = [f"a{i:03d}" for i in range(60)]
edges = [(nodes[i], nodes[(7 * i) % 60], 0.1 + i / 100) for i in range(0, 60, 2)]
png = figures.network_drawing(nodes, edges, groups={}, attribute="", title="t", max_nodes=25)
sys.stdout.buffer.write(png)
"""


def test_a_capped_network_is_drawn_the_same_in_every_process() -> None:
    """Keeping fewer than half of the agents must not hand the layout the kept agents in the
    order of a Python set of names, which changes with each process's string hashing."""
    import os
    import subprocess
    import sys

    pngs = set()
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", _DRAW], env=env, capture_output=True, check=True, timeout=120
        )
        assert out.stdout.startswith(b"\x89PNG")
        pngs.add(out.stdout)
    assert len(pngs) == 1


def test_the_layout_depends_on_its_seed_only() -> None:
    import random

    import numpy as np

    edges = [(i, (3 * i + 1) % 40) for i in range(40)]
    runs = []
    for other in (1, 2):
        random.seed(other)
        np.random.seed(other)
        runs.append(figures.spring_positions(40, edges, seed=7))
    assert runs[0].shape == (40, 2)
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], figures.spring_positions(40, edges, seed=8))
    assert float(np.abs(runs[0]).max()) == 1.0
