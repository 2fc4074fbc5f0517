"""Directed tie strengths A[v→u] from the event log (the paper's update rule), pure functions.

A[v→u] ∈ [0, 1] starts at 0. The tie is *active* in window t when, inside that window, v DMed u,
@mentioned u (in a post, comment or DM), commented on u's content (a ``PostCreated`` whose
``parent_id`` is a post by u), or has a non-zero vote on a post by u (the last vote v left on each
post within the window counts; a vote cleared in the same window is no vote). At ``WindowEnded``:

* active:   A += min(Δmax, (1 − A) · max(0, e − ξ))
* inactive: A *= (1 − δ),  δ = 1 − 2^(−1/h)   (h = half-life in windows)

Evidence e ∈ [0, 1] (method ``"signals"``) is the weighted mean of the signals *available* for the
pair in that window (weights in :class:`TieParams`; a weighted mean with non-negative weights is
monotone non-decreasing in every signal, as the design requires):

* novelty ∈ {0, 1} — always available: 1 when, in this window, v showed u a topic u had never been
  shown before. "Showed" = u was served (``FeedServed``) a post authored by v, or v DMed u, and the
  item's topic was not in u's exposure history before that ``FeedServed``/DM event.
* approval — available when v has votes on u's posts this window:
  ((likes − dislikes)/max(1, votes) + 1)/2.
* reciprocity — available when L̂(v→u) + L̂(u→v) > 0 (two users who never liked each other are
  not "perfectly reciprocal"): 1 − |L̂(v→u) − L̂(u→v)|/(L̂(v→u) + L̂(u→v) + ε), where
  L̂_t = β_rec·likes_t + (1 − β_rec)·L̂_{t−1} counts likes v gave u's posts in window t (updated for
  every pair at every window end, before the evidence is computed).
* tone — available only when v DMed u this window and cast no vote on u's posts: (mean sentiment
  of those DMs + 1)/2, sentiment from a :class:`~friendsim.analysis.sentiment.SentimentModel`.

Method ``"text"`` replaces e by an externally supplied score in [0, 1] per (window, v, u), e.g.
:func:`friendsim.runtime.tie_scoring.text_evidence` (an LLM's 0–5 score / 5); a missing score is 0.

Strengths below ``prune_below`` are dropped from the sparse output (they only decay further and are
far below every reporting threshold θ).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import networkx as nx

from friendsim.analysis.sentiment import SentimentModel
from friendsim.platform.events import (
    COACH_ACTOR,
    DirectMessageSent,
    Event,
    FeedServed,
    PostCreated,
    VoteCast,
    VoteChanged,
    VoteCleared,
    WindowEnded,
    WindowStarted,
)

Pair = tuple[str, str]
"""A directed pair ``(v, u)``: the tie from v to u."""

DEFAULT_THETAS: tuple[float, ...] = (0.01, 0.05, 0.1)

TIE_EVENTS: frozenset[type[Event]] = frozenset(
    {
        WindowStarted,
        WindowEnded,
        PostCreated,
        DirectMessageSent,
        FeedServed,
        VoteCast,
        VoteChanged,
        VoteCleared,
    }
)
"""The event types that change tie strengths (:meth:`TieTracker.feed`'s cases). Of any other
event it reads only the actor (for :attr:`TieWindow.agents`), so a reader that needs only the
strengths may skip the rest (the live view's digest does; ``tests/test_serve_digest.py`` holds
it to the tracker fed every event)."""


class TieParamsError(ValueError):
    """A :class:`TieParams` field is out of range; the message names the field."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TieParams:
    """Parameters of the tie-strength model (the paper leaves all of them open).

    Defaults: ``xi=0.1`` (evidence must exceed 0.1 to strengthen a tie), ``delta_max=0.2`` (at
    most +0.2 per window, so a tie needs several good windows to get strong), ``half_life=3.0``
    windows of decay when inactive, ``beta_rec=0.5`` (EMA of likes weighs the latest window half),
    ``eps=1e-9``, evidence weights all 1 (plain mean of the available signals), method
    ``"signals"``; ``prune_below=1e-9``.
    """

    xi: float = 0.1
    delta_max: float = 0.2
    half_life: float = 3.0
    beta_rec: float = 0.5
    eps: float = 1e-9
    w_novelty: float = 1.0
    w_approval: float = 1.0
    w_reciprocity: float = 1.0
    w_tone: float = 1.0
    method: Literal["signals", "text"] = "signals"
    prune_below: float = 1e-9

    def __post_init__(self) -> None:
        checks = {
            "xi": 0.0 <= self.xi <= 1.0,
            "delta_max": 0.0 < self.delta_max <= 1.0,
            "half_life": self.half_life > 0 and math.isfinite(self.half_life),
            "beta_rec": 0.0 < self.beta_rec <= 1.0,
            "eps": self.eps > 0,
            "w_novelty": self.w_novelty >= 0,
            "w_approval": self.w_approval >= 0,
            "w_reciprocity": self.w_reciprocity >= 0,
            "w_tone": self.w_tone >= 0,
            "method": self.method in ("signals", "text"),
            "prune_below": 0.0 <= self.prune_below < 0.01,
        }
        for name, ok in checks.items():
            if not ok:
                raise TieParamsError(f"TieParams.{name}={getattr(self, name)!r} is out of range")
        if self.w_novelty == 0 and self.w_approval == 0 and self.w_reciprocity == 0:
            if self.w_tone == 0:
                raise TieParamsError("TieParams: at least one evidence weight must be > 0")

    @property
    def decay(self) -> float:
        """δ = 1 − 2^(−1/h): the fraction an inactive tie loses per window."""
        return 1.0 - 2.0 ** (-1.0 / self.half_life)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (for manifests and reports)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TieParams:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`TieParamsError` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TieParamsError(f"unknown TieParams field(s): {', '.join(unknown)}")
        return cls(**dict(data))


@dataclass(frozen=True, kw_only=True, slots=True)
class Evidence:
    """The signals of one active pair in one window (``None`` = not available) and e."""

    novelty: float
    approval: float | None
    reciprocity: float | None
    tone: float | None
    e: float


@dataclass(frozen=True, kw_only=True, slots=True)
class TieWindow:
    """Tie state after window ``window``: sparse strengths {(v, u): A} (> ``prune_below``)."""

    window: int
    agents: tuple[str, ...]
    strengths: Mapping[Pair, float]
    active: frozenset[Pair]
    evidence: Mapping[Pair, Evidence] = field(default_factory=dict)


def evidence_value(
    params: TieParams,
    *,
    novelty: float,
    approval: float | None,
    reciprocity: float | None,
    tone: float | None,
) -> float:
    """The documented evidence map: weighted mean of the available signals, in [0, 1]."""
    pairs = [(params.w_novelty, novelty)]
    if approval is not None:
        pairs.append((params.w_approval, approval))
    if reciprocity is not None:
        pairs.append((params.w_reciprocity, reciprocity))
    if tone is not None:
        pairs.append((params.w_tone, tone))
    total_w = sum(w for w, _ in pairs)
    if total_w <= 0:
        return 0.0
    return min(1.0, max(0.0, sum(w * s for w, s in pairs) / total_w))


def update_strength(a: float, *, active: bool, e: float, params: TieParams) -> float:
    """One window of the paper's rule for a single tie."""
    if active:
        return a + min(params.delta_max, (1.0 - a) * max(0.0, e - params.xi))
    return a * (1.0 - params.decay)


class TieTracker:
    """Incremental tie-strength computation; feed events in log order.

    :meth:`feed` returns a :class:`TieWindow` exactly at each ``WindowEnded``. Events outside any
    window still update content authorship and exposure history but activate no tie; so do the
    events of a window abandoned by a ``WindowStarted`` before it ended (the rewards' rule,
    :mod:`friendsim.analysis.rewards`): a window started again counts what follows its last start.
    ``text_evidence`` ({window: {(v, u): e}}) is required for method ``"text"``. Without a
    ``sentiment`` model the tone signal is never available.
    """

    def __init__(
        self,
        *,
        params: TieParams,
        sentiment: SentimentModel | None = None,
        text_evidence: Mapping[int, Mapping[Pair, float]] | None = None,
    ) -> None:
        if params.method == "text" and text_evidence is None:
            raise TieParamsError("TieParams.method='text' needs text_evidence")
        self.params = params
        self._sentiment = sentiment
        self._text = text_evidence or {}
        self._agents: set[str] = set()
        self._author: dict[int, str] = {}
        self._topic: dict[int, str] = {}
        self._seen: dict[str, set[str]] = defaultdict(set)
        self._strength: dict[Pair, float] = {}
        self._likes_ema: dict[Pair, float] = {}
        self._in_window: int | None = None
        self._reset_window()

    def _reset_window(self) -> None:
        self._active: set[Pair] = set()
        self._novel: set[Pair] = set()
        self._votes: dict[tuple[str, int], int] = {}
        self._dm_sent: dict[Pair, list[float]] = defaultdict(list)

    def _touch(self, v: str, u: str) -> None:
        if self._in_window is not None and v != u:
            self._active.add((v, u))

    def _expose(self, viewer: str, shown: Iterable[tuple[str | None, str]]) -> None:
        seen = self._seen[viewer]
        items = list(shown)
        for author, topic in items:
            if topic and topic not in seen and author is not None and author != viewer:
                if self._in_window is not None:
                    self._novel.add((author, viewer))
        seen.update(t for _, t in items if t)

    def feed(self, event: Event) -> TieWindow | None:
        """Consume one event; return the window's tie state at ``WindowEnded``."""
        if event.actor is not None and event.actor != COACH_ACTOR:
            self._agents.add(event.actor)
        match event:
            case WindowStarted(window=w):
                self._in_window = w
                self._reset_window()
            case WindowEnded(window=w):
                out = self._close(w)
                self._in_window = None
                self._reset_window()
                return out
            case PostCreated(actor=str(v), post_id=pid, topic=topic, mentions=mentions):
                self._author[pid] = v
                self._topic[pid] = topic
                for u in mentions:
                    self._touch(v, u)
                if event.parent_id is not None and event.parent_id in self._author:
                    self._touch(v, self._author[event.parent_id])
            case DirectMessageSent(actor=str(v), recipient=u, text=text, topic=topic):
                self._agents.add(u)
                self._touch(v, u)
                for m in event.mentions:
                    self._touch(v, m)
                if self._in_window is not None and v != u and self._sentiment is not None:
                    self._dm_sent[(v, u)].append(self._sentiment.score(text))
                self._expose(u, [(v, topic)])
            case FeedServed(actor=str(u), post_ids=pids, topics=topics):
                shown = [
                    (
                        self._author.get(pid),
                        topics[i] if i < len(topics) else self._topic.get(pid, ""),
                    )
                    for i, pid in enumerate(pids)
                ]
                self._expose(u, shown)
            case (
                VoteCast(actor=str(v), post_id=pid, author=u, value=val)
                | VoteChanged(actor=str(v), post_id=pid, author=u, value=val)
            ):
                self._author.setdefault(pid, u)
                if self._in_window is not None:
                    self._votes[(v, pid)] = val
            case VoteCleared(actor=str(v), post_id=pid, author=u):
                self._author.setdefault(pid, u)
                if self._in_window is not None:
                    self._votes[(v, pid)] = 0
            case _:
                pass
        return None

    def _close(self, window: int) -> TieWindow:
        p = self.params
        likes: dict[Pair, int] = defaultdict(int)
        dislikes: dict[Pair, int] = defaultdict(int)
        for (v, pid), val in self._votes.items():
            u = self._author[pid]
            if val == 0 or u == v:
                continue
            self._active.add((v, u))
            if val > 0:
                likes[(v, u)] += 1
            else:
                dislikes[(v, u)] += 1
        ema = self._likes_ema
        for pair in set(ema) | set(likes):
            ema[pair] = p.beta_rec * likes.get(pair, 0) + (1.0 - p.beta_rec) * ema.get(pair, 0.0)
            if ema[pair] < 1e-12:
                del ema[pair]

        evidence: dict[Pair, Evidence] = {}
        text = self._text.get(window, {})
        for pair in self._active:
            v, u = pair
            n_votes = likes.get(pair, 0) + dislikes.get(pair, 0)
            approval = None
            if n_votes:
                approval = ((likes.get(pair, 0) - dislikes.get(pair, 0)) / n_votes + 1.0) / 2.0
            a_vu, a_uv = ema.get((v, u), 0.0), ema.get((u, v), 0.0)
            recip = None
            if a_vu + a_uv > 0:
                recip = 1.0 - abs(a_vu - a_uv) / (a_vu + a_uv + p.eps)
            tone = None
            dms = self._dm_sent.get(pair)
            if dms and n_votes == 0:
                tone = (sum(dms) / len(dms) + 1.0) / 2.0
            novelty = 1.0 if pair in self._novel else 0.0
            if p.method == "text":
                e = min(1.0, max(0.0, float(text.get(pair, 0.0))))
            else:
                e = evidence_value(
                    p, novelty=novelty, approval=approval, reciprocity=recip, tone=tone
                )
            evidence[pair] = Evidence(
                novelty=novelty, approval=approval, reciprocity=recip, tone=tone, e=e
            )

        new: dict[Pair, float] = {}
        for pair in set(self._strength) | self._active:
            ev = evidence.get(pair)
            a = update_strength(
                self._strength.get(pair, 0.0),
                active=ev is not None,
                e=ev.e if ev is not None else 0.0,
                params=p,
            )
            if a > p.prune_below:
                new[pair] = a
        self._strength = new
        return TieWindow(
            window=window,
            agents=tuple(sorted(self._agents)),
            strengths=dict(new),
            active=frozenset(self._active),
            evidence=evidence,
        )


def tie_windows(
    events: Iterable[Event],
    *,
    params: TieParams,
    sentiment: SentimentModel | None = None,
    text_evidence: Mapping[int, Mapping[Pair, float]] | None = None,
) -> list[TieWindow]:
    """The tie state after every window of the log, in window order."""
    tracker = TieTracker(params=params, sentiment=sentiment, text_evidence=text_evidence)
    out = []
    for ev in events:
        tw = tracker.feed(ev)
        if tw is not None:
            out.append(tw)
    return out


def symmetrise(strengths: Mapping[Pair, float]) -> dict[frozenset[str], float]:
    """Undirected strengths S{u, v} = (A[u→v] + A[v→u]) / 2 (missing direction = 0)."""
    out: dict[frozenset[str], float] = defaultdict(float)
    for (v, u), a in strengths.items():
        if v != u:
            out[frozenset((v, u))] += a / 2.0
    return dict(out)


def check_theta(theta: float) -> None:
    """Raise :class:`TieParamsError` unless 0 < ``theta`` ≤ 1."""
    if not 0 < theta <= 1:
        raise TieParamsError(f"theta={theta!r} must be in (0, 1]")


def tie_graph(
    strengths: Mapping[Pair, float], *, theta: float, nodes: Iterable[str] = ()
) -> nx.Graph:
    """Undirected binarised tie network: edge {u, v} iff the symmetrised strength ≥ θ.

    Every node in ``nodes`` (all agents) is present, isolated or not; edges carry ``strength``.
    """
    check_theta(theta)
    g = nx.Graph()
    g.add_nodes_from(nodes)
    for key, s in symmetrise(strengths).items():
        if s >= theta:
            u, v = sorted(key)
            g.add_edge(u, v, strength=s)
    return g


def iter_tie_graphs(
    windows: Iterable[TieWindow], *, thetas: Iterable[float] = DEFAULT_THETAS
) -> Iterator[tuple[int, float, nx.Graph]]:
    """``(window, θ, graph)`` for every window and threshold."""
    ths = tuple(thetas)
    for tw in windows:
        for th in ths:
            yield tw.window, th, tie_graph(tw.strengths, theta=th, nodes=tw.agents)
