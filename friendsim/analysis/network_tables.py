"""A run's networks as tables, one row per window and directed pair, for R, Gephi, igraph and
dataframes: what ``friendsim log export --table ties|follows|interactions`` writes.

Every ended window (``WindowEnded``) gives its rows, in window order, pairs sorted; a window that
never ended (a killed run's last) gives none. The numbers are the analysis's, computed in one
pass over the log by the same code :meth:`friendsim.api.Run.graphs` and ``friendsim analyze`` use:

* ``ties``: ``window, source, target, strength``: every directed tie strength A[source→target]
  after the window (:class:`~friendsim.analysis.ties.TieTracker` with the run's tie settings;
  strengths at or below ``prune_below`` are zero and have no row), exactly
  ``Run.graphs(window=w).tie_strengths``.
* ``follows``: ``window, source, target``: the follow graph at the window's end (source follows
  target), exactly the edges of ``Run.graphs(window=w).follow``: a snapshot per window, so one
  window's rows are its whole network.
* ``interactions``: ``window, source, target, kind, count``: how many interactions of ``kind``
  (``comment``, ``dm``, ``mention``, ``vote``; :mod:`friendsim.analysis.graphs`) source addressed
  to target *inside* that window. An interaction outside any window (before the first, between
  two, or in a window abandoned by a ``WindowStarted`` before it ended:
  :func:`~friendsim.analysis.graphs.interactions_and_ends`) is in no window's rows, as the
  rewards and the tie strengths count it towards no window; :attr:`WindowNetwork.outside` says
  how many there were. Summed over the windows up to w, the rows plus those ``outside`` give the
  counts of ``Run.graphs(window=w).interactions``.

:func:`window_networks` yields each window's rows with the agents then known (every agent is a
node of the window's network, isolated ones included), so one window can be written as a graph
(:func:`window_graph`), and one window's ties as the undirected network binarised at a
threshold θ that ``friendsim analyze`` measures (:func:`window_tie_graph`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from friendsim.analysis.graphs import Interaction, interactions_and_ends
from friendsim.analysis.sentiment import SentimentModel
from friendsim.analysis.ties import Pair, TieParams, TieTracker, tie_graph
from friendsim.platform.events import (
    COACH_ACTOR,
    DirectMessageSent,
    Event,
    Followed,
    Unfollowed,
    WindowEnded,
)

NETWORK_TABLES = ("ties", "follows", "interactions")
COLUMNS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "ties": (
        ("window", "int64"),
        ("source", "string"),
        ("target", "string"),
        ("strength", "float64"),
    ),
    "follows": (("window", "int64"), ("source", "string"), ("target", "string")),
    "interactions": (
        ("window", "int64"),
        ("source", "string"),
        ("target", "string"),
        ("kind", "string"),
        ("count", "int64"),
    ),
}
"""Each table's columns with their Parquet types, in order."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WindowNetwork:
    """One ended window of a table: its rows (dicts with the table's columns) and the sorted
    agents known at its end (the network's nodes). ``outside`` (``interactions`` only, else 0):
    how many interactions of the log up to the window's end were outside any window, so in no
    window's rows."""

    window: int
    agents: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    outside: int = 0


def window_networks(
    table: str,
    events: Iterable[Event],
    *,
    params: TieParams | None = None,
    sentiment: SentimentModel | None = None,
    text_evidence: Mapping[int, Mapping[Pair, float]] | None = None,
) -> Iterator[WindowNetwork]:
    """The rows of ``table`` (one of :data:`NETWORK_TABLES`) per ended window of ``events``, in
    log order, as each window ends. ``params``, ``sentiment`` and ``text_evidence`` are the tie
    model's (:class:`~friendsim.analysis.ties.TieTracker`; ``ties`` only)."""
    match table:
        case "ties":
            yield from _ties(
                events,
                params=params or TieParams(),
                sentiment=sentiment,
                text_evidence=text_evidence,
            )
        case "follows":
            yield from _follows(events)
        case "interactions":
            yield from _interactions(events)
        case _:
            raise ValueError(
                f"unknown network table {table!r}; tables: {', '.join(NETWORK_TABLES)}"
            )


def _ties(
    events: Iterable[Event],
    *,
    params: TieParams,
    sentiment: SentimentModel | None,
    text_evidence: Mapping[int, Mapping[Pair, float]] | None,
) -> Iterator[WindowNetwork]:
    tracker = TieTracker(params=params, sentiment=sentiment, text_evidence=text_evidence)
    for ev in events:
        tw = tracker.feed(ev)
        if tw is None:
            continue
        rows = tuple(
            {"window": tw.window, "source": v, "target": u, "strength": a}
            for (v, u), a in sorted(tw.strengths.items())
        )
        yield WindowNetwork(window=tw.window, agents=tw.agents, rows=rows)


def _note_agent(ev: Event, agents: set[str]) -> None:
    """The agents rule of :func:`~friendsim.analysis.graphs.agents_and_attributes`."""
    if ev.actor is not None and ev.actor != COACH_ACTOR:
        agents.add(ev.actor)
    if isinstance(ev, DirectMessageSent):
        agents.add(ev.recipient)


def _follows(events: Iterable[Event]) -> Iterator[WindowNetwork]:
    agents: set[str] = set()
    edges: set[Pair] = set()
    for ev in events:
        _note_agent(ev, agents)
        match ev:
            case Followed(actor=str(u), target=v):
                edges.add((u, v))
            case Unfollowed(actor=str(u), target=v):
                edges.discard((u, v))
            case WindowEnded(window=w):
                rows = tuple({"window": w, "source": u, "target": v} for u, v in sorted(edges))
                yield WindowNetwork(window=w, agents=tuple(sorted(agents)), rows=rows)
            case _:
                pass


def _interactions(events: Iterable[Event]) -> Iterator[WindowNetwork]:
    agents: set[str] = set()
    counts: Counter[tuple[int, str, str, str]] = Counter()
    outside = 0

    def noted(evs: Iterable[Event]) -> Iterator[Event]:
        for ev in evs:
            _note_agent(ev, agents)
            yield ev

    for x in interactions_and_ends(noted(events)):
        if isinstance(x, Interaction):
            if x.window is not None:
                counts[(x.window, x.source, x.target, x.kind)] += 1
            else:
                outside += 1
            continue
        w = x.window
        mine = sorted(k for k in counts if k[0] == w)
        rows = tuple(
            {
                "window": w,
                "source": s,
                "target": t,
                "kind": kind,
                "count": counts.pop((w, s, t, kind)),
            }
            for _, s, t, kind in mine
        )
        yield WindowNetwork(window=w, agents=tuple(sorted(agents)), rows=rows, outside=outside)


def window_graph(table: str, net: WindowNetwork) -> nx.DiGraph:
    """One window's network as a directed graph: every agent a node; edges source→target with
    ``strength`` (ties), none (follows), or ``weight`` and one count per kind (interactions)."""
    from friendsim.analysis.graphs import INTERACTION_KINDS

    g = nx.DiGraph(window=net.window, table=table)
    g.add_nodes_from(net.agents)
    for row in net.rows:
        s, t = row["source"], row["target"]
        match table:
            case "ties":
                g.add_edge(s, t, strength=float(row["strength"]))
            case "follows":
                g.add_edge(s, t)
            case _:
                if not g.has_edge(s, t):
                    g.add_edge(s, t, weight=0, **dict.fromkeys(INTERACTION_KINDS, 0))
                g[s][t]["weight"] += row["count"]
                g[s][t][row["kind"]] += row["count"]
    return g


def window_tie_graph(net: WindowNetwork, *, theta: float) -> nx.Graph:
    """One window of the ``ties`` table as the network ``friendsim analyze`` measures at
    ``theta``: exactly :func:`~friendsim.analysis.ties.tie_graph` of its strengths (undirected,
    an edge where the symmetrised strength is at least θ, carrying it as ``strength``; every
    agent a node), the graph ``Run.graphs(window=w).ties[theta]`` gives, with the graph
    attributes ``window``, ``table`` and ``theta``. A θ outside (0, 1] raises
    :class:`~friendsim.analysis.ties.TieParamsError`."""
    strengths = {(row["source"], row["target"]): float(row["strength"]) for row in net.rows}
    g = tie_graph(strengths, theta=theta, nodes=net.agents)
    g.graph.update(window=net.window, table="ties", theta=float(theta))
    return g
