"""Repost and reply cascades of every item, and who was exposed to them (from the log only).

A *cascade* is the tree of items under a top-level item: a reply's parent is the item it
replies to (``parent_id``), a repost's or quote's parent is the item it quotes (``quote_of``).
Per root item (:class:`Cascade`):

* ``size`` — items in the tree, the root included; ``reposts`` and ``replies`` among them;
* ``depth`` — the longest root-to-leaf path in edges (a lone item: 0);
* ``max_breadth`` — the most items at one depth;
* ``virality`` — structural virality (Goel, Anderson, Hofman & Watts 2016): the mean
  shortest-path distance over all pairs of the tree's items (0 for a lone item), computed as the
  Wiener index ``Σ_edges s·(n−s)`` (``s`` the items below the edge) over ``n(n−1)/2``;
* ``users`` — distinct authors in the tree; ``time_to`` — for each k of :data:`KS`, the virtual
  seconds from the root until k distinct users took part (the root's author is the first);
  ``None`` if never;
* ``exposed`` — distinct agents other than the root's author who were served the root item
  (``FeedServed``), ``reach`` — those served any item of the tree: exposure counts, not only
  engagement;
* ``truth`` — the truth label of an injected root (``ItemInjected``), ``None`` otherwise.

:func:`summarise` groups cascades by truth label (injected items) and gives the population's
distribution; both are JSON-ready.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from friendsim.platform.events import Event, FeedServed, ItemInjected, PostCreated

KS: tuple[int, ...] = (2, 5, 10)


@dataclass(frozen=True, kw_only=True, slots=True)
class Cascade:
    root: int
    author: str
    t: float
    size: int
    reposts: int
    replies: int
    depth: int
    max_breadth: int
    virality: float
    users: int
    time_to: Mapping[int, float | None]
    exposed: int
    reach: int
    truth: str | None = None
    item_id: str | None = None
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["time_to"] = {str(k): v for k, v in self.time_to.items()}
        return out


@dataclass(slots=True)
class _Node:
    author: str
    t: float
    parent: int | None
    repost: bool
    children: list[int] = field(default_factory=list)


def wiener_virality(children: Mapping[int, list[int]], root: int) -> float:
    """Mean pairwise distance of the tree under ``root`` (``children``: node -> its children)."""
    order: list[int] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(children.get(node, ()))
    n = len(order)
    if n < 2:
        return 0.0
    below: dict[int, int] = {}
    wiener = 0
    for node in reversed(order):
        s = 1 + sum(below[c] for c in children.get(node, ()))
        below[node] = s
        if node != root:
            wiener += s * (n - s)
    return wiener / (n * (n - 1) / 2)


def cascades(events: Iterable[Event]) -> list[Cascade]:
    """Every top-level item's cascade, in post id order."""
    nodes: dict[int, _Node] = {}
    roots: list[int] = []
    truth: dict[int, ItemInjected] = {}
    served: dict[int, set[str]] = {}
    for e in events:
        if isinstance(e, PostCreated):
            parent = e.parent_id if e.parent_id is not None else e.quote_of
            nodes[e.post_id] = _Node(
                author=e.actor or "",
                t=e.t,
                parent=parent,
                repost=e.parent_id is None and e.quote_of is not None,
            )
            if parent is None:
                roots.append(e.post_id)
            elif parent in nodes:
                nodes[parent].children.append(e.post_id)
        elif isinstance(e, ItemInjected):
            truth[e.post_id] = e
        elif isinstance(e, FeedServed) and e.actor is not None:
            for pid in e.post_ids:
                served.setdefault(pid, set()).add(e.actor)
    children = {pid: n.children for pid, n in nodes.items() if n.children}
    out: list[Cascade] = []
    for root in roots:
        r = nodes[root]
        levels: list[int] = []
        members: list[tuple[float, str]] = []
        reposts = replies = 0
        reach: set[str] = set()
        frontier = [(root, 0)]
        while frontier:
            node, d = frontier.pop()
            n = nodes[node]
            if d == len(levels):
                levels.append(0)
            levels[d] += 1
            members.append((n.t, n.author))
            reach |= served.get(node, set())
            if node != root:
                reposts += n.repost
                replies += not n.repost
            frontier.extend((c, d + 1) for c in n.children)
        members.sort()
        first_at: list[float] = []
        seen: set[str] = set()
        for t, author in members:
            if author not in seen:
                seen.add(author)
                first_at.append(t)
        inj = truth.get(root)
        out.append(
            Cascade(
                root=root,
                author=r.author,
                t=r.t,
                size=sum(levels),
                reposts=reposts,
                replies=replies,
                depth=len(levels) - 1,
                max_breadth=max(levels),
                virality=wiener_virality(children, root),
                users=len(seen),
                time_to={k: (first_at[k - 1] - r.t if len(first_at) >= k else None) for k in KS},
                exposed=len(served.get(root, set()) - {r.author}),
                reach=len(reach - {r.author}),
                truth=inj.truth if inj else None,
                item_id=inj.item_id if inj else None,
                source=inj.source if inj else "",
            )
        )
    return out


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _group(cs: list[Cascade]) -> dict[str, Any]:
    return {
        "items": len(cs),
        "mean_size": _mean([c.size for c in cs]),
        "max_size": max((c.size for c in cs), default=None),
        "mean_depth": _mean([c.depth for c in cs]),
        "mean_max_breadth": _mean([c.max_breadth for c in cs]),
        "mean_virality": _mean([c.virality for c in cs]),
        "mean_exposed": _mean([c.exposed for c in cs]),
        "mean_reach": _mean([c.reach for c in cs]),
        "reached_5_users": sum(1 for c in cs if c.time_to.get(5) is not None),
    }


def summarise(cs: list[Cascade]) -> dict[str, Any]:
    """``all`` (every cascade), ``by_truth`` (injected items by truth label) and ``injected``
    (one row per injected item)."""
    by_truth: dict[str, list[Cascade]] = {}
    for c in cs:
        if c.truth is not None:
            by_truth.setdefault(c.truth, []).append(c)
    return {
        "all": _group(cs),
        "by_truth": [{"truth": t, **_group(g)} for t, g in sorted(by_truth.items())],
        "injected": [
            {
                "item": c.item_id,
                "truth": c.truth,
                "source": c.source,
                "size": c.size,
                "depth": c.depth,
                "max_breadth": c.max_breadth,
                "virality": c.virality,
                "users": c.users,
                "exposed": c.exposed,
                "reach": c.reach,
            }
            for c in cs
            if c.truth is not None
        ],
    }
