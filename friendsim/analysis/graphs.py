"""Graphs built from the event log: tie networks, the follow graph, the interaction graph.

* Follow graph: directed, u→v while u follows v (``Followed``/``Unfollowed`` replayed in order).
* Interaction graph: directed and weighted, v→u counts v's interactions addressed to u —
  ``comment`` (v commented on a post by u), ``dm`` (v DMed u), ``mention`` (v @mentioned u in a
  post, comment or DM) and ``vote`` (v cast or changed a non-zero vote on a post by u). Edge
  attributes: ``weight`` (total) and one count per kind. Per window (only that window's events) or
  cumulative up to the end of each window. Which window an interaction belongs to is the rewards'
  rule (:func:`interactions_and_ends`): a window started again before it ended counts only what
  follows its last start, and what came before counts towards no window.
* Tie networks: the binarised symmetrised tie-strength graphs of :mod:`friendsim.analysis.ties`.

Every graph has all registered agents (and every actor seen) as nodes, isolated ones included,
because density and LCC fraction depend on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

import networkx as nx

from friendsim.analysis.arraygraph import ArrayGraph, GraphBuilder
from friendsim.analysis.ties import (
    DEFAULT_THETAS,
    TieWindow,
    check_theta,
    symmetrise,
    tie_graph,
)
from friendsim.platform.events import (
    COACH_ACTOR,
    AgentRegistered,
    DirectMessageSent,
    Event,
    Followed,
    PostCreated,
    Unfollowed,
    VoteCast,
    VoteChanged,
    WindowEnded,
    WindowStarted,
)

INTERACTION_KINDS = ("comment", "dm", "mention", "vote")


@dataclass(frozen=True, kw_only=True, slots=True)
class Interaction:
    """One directed interaction ``source`` → ``target`` of ``kind`` in ``window`` (or None)."""

    window: int | None
    source: str
    target: str
    kind: str


def agents_and_attributes(
    events: Iterable[Event],
) -> tuple[tuple[str, ...], dict[str, dict[str, str]]]:
    """Sorted agent ids (registered or acting) and {attribute: {agent: group}} from
    ``AgentRegistered.attributes`` (values turned into strings; the last registration wins)."""
    agents: set[str] = set()
    attrs: dict[str, dict[str, str]] = {}
    for ev in events:
        if ev.actor is not None and ev.actor != COACH_ACTOR:
            agents.add(ev.actor)
        if isinstance(ev, AgentRegistered) and ev.actor is not None:
            for key, value in ev.attributes.items():
                if value is not None:
                    attrs.setdefault(str(key), {})[ev.actor] = str(value)
        elif isinstance(ev, DirectMessageSent):
            agents.add(ev.recipient)
    return tuple(sorted(agents)), attrs


def follow_graph(events: Iterable[Event], *, nodes: Iterable[str] = ()) -> nx.DiGraph:
    """The follow graph at the end of ``events``."""
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    for ev in events:
        match ev:
            case Followed(actor=str(u), target=v):
                g.add_edge(u, v)
            case Unfollowed(actor=str(u), target=v):
                if g.has_edge(u, v):
                    g.remove_edge(u, v)
            case _:
                if ev.actor is not None and ev.actor != COACH_ACTOR:
                    g.add_node(ev.actor)
    return g


def iter_interactions(events: Iterable[Event]) -> Iterator[Interaction]:
    """Every directed interaction of the log, in order, tagged with its window (see
    :func:`interactions_and_ends` for which window that is)."""
    for x in interactions_and_ends(events):
        if isinstance(x, Interaction):
            yield x


def interactions_and_ends(events: Iterable[Event]) -> Iterator[Interaction | WindowEnded]:
    """:func:`iter_interactions` with the ``WindowEnded`` events in their places (for a
    consumer that closes each window as it ends).

    An interaction belongs to window w when it lies between ``WindowStarted(w)`` and
    ``WindowEnded(w)``, the rewards' rule (:mod:`friendsim.analysis.rewards`, which the tie
    strengths follow too): a ``WindowStarted`` while a window is open abandons the open window
    (a resumed run, or a log written by another tool), so the interactions since that window's
    start belong to no window (``window=None``, like those between windows), and a window started
    again counts only what follows its last start. The window still open at the end of the log
    keeps its interactions (a run still going, or killed)."""
    author: dict[int, str] = {}
    window: int | None = None
    pending: list[Interaction] = []
    for ev in events:
        match ev:
            case WindowStarted(window=w):
                for x in pending:
                    yield replace(x, window=None)
                pending = []
                window = w
            case WindowEnded():
                yield from pending
                pending = []
                window = None
                yield ev
            case _:
                for x in _interactions_of(ev, author, window):
                    if window is None:
                        yield x
                    else:
                        pending.append(x)
    yield from pending


def _interactions_of(
    ev: Event, author: dict[int, str], window: int | None
) -> Iterator[Interaction]:
    """The interactions of one event (``author`` maps post ids to authors, updated here)."""
    match ev:
        case PostCreated(actor=str(v), post_id=pid, mentions=mentions, parent_id=parent):
            author[pid] = v
            if parent is not None and parent in author and author[parent] != v:
                yield Interaction(window=window, source=v, target=author[parent], kind="comment")
            for u in mentions:
                if u != v:
                    yield Interaction(window=window, source=v, target=u, kind="mention")
        case DirectMessageSent(actor=str(v), recipient=u, mentions=mentions):
            if u != v:
                yield Interaction(window=window, source=v, target=u, kind="dm")
            for m in mentions:
                if m != v:
                    yield Interaction(window=window, source=v, target=m, kind="mention")
        case (
            VoteCast(actor=str(v), author=u, value=val)
            | VoteChanged(actor=str(v), author=u, value=val)
        ) if val != 0 and u != v:
            yield Interaction(window=window, source=v, target=u, kind="vote")
        case _:
            pass


def counted_windows(events: Iterable[Event]) -> list[int]:
    """The windows the analyses report, in the order they ended: every window that ended
    (a window started again counted once), then the window still open at the end of the log,
    if any. A window abandoned by the next ``WindowStarted`` is not one of them (see
    :func:`interactions_and_ends`)."""
    out: dict[int, None] = {}
    open_: int | None = None
    for ev in events:
        if isinstance(ev, WindowStarted):
            open_ = ev.window
        elif isinstance(ev, WindowEnded):
            out[ev.window] = None
            open_ = None
    if open_ is not None:
        out[open_] = None
    return list(out)


def _add(g: nx.DiGraph, it: Interaction) -> None:
    if g.has_edge(it.source, it.target):
        data = g[it.source][it.target]
    else:
        g.add_edge(it.source, it.target, weight=0, **dict.fromkeys(INTERACTION_KINDS, 0))
        data = g[it.source][it.target]
    data["weight"] += 1
    data[it.kind] += 1


def interaction_graph(
    events: Iterable[Event], *, nodes: Iterable[str] = (), windows: Iterable[int] | None = None
) -> nx.DiGraph:
    """The weighted interaction graph of the whole log, or only of the given ``windows``."""
    keep = None if windows is None else set(windows)
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    for it in iter_interactions(events):
        if keep is None or it.window in keep:
            _add(g, it)
    return g


def interaction_graphs_by_window(
    events: Iterable[Event], *, nodes: Iterable[str] = (), cumulative: bool = False
) -> list[tuple[int, nx.DiGraph]]:
    """One interaction graph per window of :func:`counted_windows` (in its order): that
    window's interactions only (:func:`interactions_and_ends` says which: a window started
    again before it ended counts what follows its last start, as the rewards and the tie
    strengths count it), or, with ``cumulative``, every interaction of the log up to that
    window's ``WindowEnded`` (its last one; the end of the log for the window still open
    there), those outside windows included where they happen."""
    evs = list(events)
    base = list(nodes)
    per: dict[int, nx.DiGraph] = {}
    for w in counted_windows(evs):
        g = nx.DiGraph()
        g.add_nodes_from(base)
        per[w] = g
    if not cumulative:
        for it in iter_interactions(evs):
            if it.window is not None:
                _add(per[it.window], it)
        return list(per.items())
    acc = nx.DiGraph()
    acc.add_nodes_from(base)
    at_end: dict[int, nx.DiGraph] = {}
    for x in interactions_and_ends(evs):
        if isinstance(x, Interaction):
            _add(acc, x)
        elif x.window in per:
            at_end[x.window] = acc.copy()
    return [(w, at_end[w] if w in at_end else acc.copy()) for w in per]


def undirected_weighted(g: nx.DiGraph) -> nx.Graph:
    """Undirected version of a weighted digraph; weights (and kind counts) of u→v and v→u add."""
    h = nx.Graph()
    h.add_nodes_from(g.nodes)
    for u, v, data in g.edges(data=True):
        if u == v:
            continue
        if h.has_edge(u, v):
            for key, val in data.items():
                h[u][v][key] = h[u][v].get(key, 0) + val
        else:
            h.add_edge(u, v, **data)
    return h


def tie_networks(
    tw: TieWindow, *, thetas: Iterable[float] = DEFAULT_THETAS
) -> dict[float, nx.Graph]:
    """The binarised tie network of one window at every θ."""
    return {th: tie_graph(tw.strengths, theta=th, nodes=tw.agents) for th in thetas}


def groups_for(
    attributes: Mapping[str, Mapping[str, str]], nodes: Iterable[str]
) -> dict[str, dict[str, str]]:
    """``attributes`` restricted to ``nodes`` (drops attributes no node has)."""
    keep = set(nodes)
    out = {a: {n: g for n, g in m.items() if n in keep} for a, m in attributes.items()}
    return {a: m for a, m in out.items() if m}


def tie_array_graphs(
    tw: TieWindow, *, thetas: Iterable[float] = DEFAULT_THETAS
) -> dict[float, ArrayGraph]:
    """:func:`tie_networks` as :class:`~friendsim.analysis.arraygraph.ArrayGraph` values (the
    same nodes in the same order, the same edges)."""
    ths = tuple(thetas)
    for th in ths:
        check_theta(th)
    sym = symmetrise(tw.strengths)
    out: dict[float, ArrayGraph] = {}
    for th in ths:
        b = GraphBuilder(tw.agents)
        for key, s in sym.items():
            if s >= th:
                u, v = sorted(key)
                b.add_edge(u, v)
        out[th] = b.build()
    return out


def follow_array_graph(events: Iterable[Event], *, nodes: Iterable[str] = ()) -> ArrayGraph:
    """:func:`follow_graph` as a directed :class:`~friendsim.analysis.arraygraph.ArrayGraph`."""
    b = GraphBuilder(nodes, directed=True)
    for ev in events:
        match ev:
            case Followed(actor=str(u), target=v):
                b.add_edge(u, v)
            case Unfollowed(actor=str(u), target=v):
                b.remove_arc(u, v)
            case _:
                if ev.actor is not None and ev.actor != COACH_ACTOR:
                    b.add_node(ev.actor)
    return b.build()


@dataclass(frozen=True, kw_only=True, slots=True)
class InteractionArrays:
    """The interaction graphs of a log as directed :class:`ArrayGraph` values: ``final`` (the
    whole log, as :func:`interaction_graph`), ``per_window`` (as
    :func:`interaction_graphs_by_window`) and the number of interactions of each kind."""

    final: ArrayGraph
    per_window: tuple[tuple[int, ArrayGraph], ...]
    kinds: Mapping[str, int]


def interaction_arrays(events: Iterable[Event], *, nodes: Iterable[str] = ()) -> InteractionArrays:
    """All interaction graphs of ``events`` in one pass (see :class:`InteractionArrays`)."""
    evs = list(events)
    base = list(nodes)
    final = GraphBuilder(base, directed=True)
    per = {w: GraphBuilder(base, directed=True) for w in counted_windows(evs)}
    kinds = dict.fromkeys(INTERACTION_KINDS, 0)
    for it in iter_interactions(evs):
        final.add_edge(it.source, it.target)
        if it.window is not None:
            per[it.window].add_edge(it.source, it.target)
        kinds[it.kind] += 1
    return InteractionArrays(
        final=final.build(),
        per_window=tuple((w, b.build()) for w, b in per.items()),
        kinds=kinds,
    )
