"""Behavioural rewards (SOC, INF, PRE, COORD, EMO) as pure functions of the event log.

:class:`RewardScorer` is fed events in ``seq`` order and emits one :class:`AgentScores` per
registered agent at every ``WindowEnded``; :func:`score_log` runs it over a whole log. The same
code scores a live run (the coach service feeds it from the bus), a finished run and a replay,
so the numbers are identical by construction. Formulas: :mod:`friendsim.analysis.rewards_params`.

How the log maps onto the paper's quantities (choices the paper leaves open; see docs/rewards.md):

* **Window.** Events from ``WindowStarted(w)`` to ``WindowEnded(w)``. Events outside any window
  update the persistent state (agents, post authors, the topic universe, exposure history) but
  count towards no window. A ``WindowStarted`` while a window is open abandons the open one (a
  resumed run, a log imported from another tool): its events so far count towards no window, and
  a window started again counts only what follows its last start. The tie strengths and the
  interaction graphs (:mod:`friendsim.analysis.ties`, :mod:`friendsim.analysis.graphs`) follow
  the same rule. A ``WindowEnded`` for a window that is not open is a :class:`RewardLogError`.
* **Agents.** Every agent registered (``AgentRegistered``) so far is scored, |V| is their number.
* **Interactions** (SOC, EMO). DMs, and comments (``PostCreated`` with ``parent_id``) addressed to
  the author of the parent. Self-replies (and self-DMs) are not interactions: they count in
  neither sent, received nor B_dir. B_dir = all interactions of the window.
* **Actions** (SOC's and PRE's N). Rounds mode (``WindowStarted.mode == "rounds"``): the N planned
  actions, ``params.n_actions``. Any other mode (continuous): the agent's own action events in the
  window — posts, comments, DMs, vote events, follows and unfollows. The likes term of PRE uses
  ``max(1, actions)`` as N in continuous mode.
* **Posts** (PRE): top-level posts (``parent_id is None``, quotes/reposts included).
* **Likes** (PRE): the net effect of the window's vote events on all items (posts and comments,
  any age) written by u: ``VoteCast`` +value, ``VoteChanged`` value−old, ``VoteCleared`` −old.
  Self-votes are ignored.
* **Exposure** (INF). C(u) = the distinct post ids in the window's ``FeedServed`` events of u;
  topics come from ``FeedServed.topics`` (normalised; from the post itself when missing). T(u) =
  distinct topics of C(u) never shown to u in an earlier window; H(u) = Shannon entropy (natural
  log) of the topic counts of C(u); K = distinct topics seen on the platform so far (posts and
  feeds), so T <= K and H <= log K. The empty topic is no topic.
* **Mentions** (COORD): the window's posts and comments that @mention u (each item once; self-
  mentions ignored), over the window's posts and comments. "DMs u sends to users who DMed u last
  window" counts distinct users: the share of the previous window's DM senders u DMed back.
* **EMO**: sentiment of the text of each DM and comment u received in the window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import structlog

from friendsim.analysis import rewards_params as rp
from friendsim.analysis.rewards_params import (
    COMPONENTS,
    UNIFORM_LAMBDAS,
    RewardConfigError,
    RewardParams,
    validate_lambdas,
)
from friendsim.analysis.sentiment import SentimentModel, get_sentiment
from friendsim.platform.events import (
    AgentRegistered,
    DirectMessageSent,
    Event,
    FeedServed,
    Followed,
    PersonaChanged,
    PostCreated,
    Unfollowed,
    VoteCast,
    VoteChanged,
    VoteCleared,
    WindowEnded,
    WindowStarted,
    normalise_topic,
)

__all__ = [
    "COMPONENTS",
    "AgentScores",
    "RewardConfigError",
    "RewardLogError",
    "RewardParams",
    "RewardScorer",
    "score_log",
]

log = structlog.get_logger(__name__)


class RewardLogError(ValueError):
    """The event log cannot be scored (e.g. a window closed that was never opened); names the seq."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentScores:
    """The rewards of ``agent`` for ``window``: components (each in [0, 1]) and R = Σ λ_r·R_r.

    ``detail`` holds the raw window counts behind the components (sent, received, posts, ...), for
    explanations and the agents' "what did I do" summaries.
    """

    agent: str
    window: int
    components: Mapping[str, float]
    total: float
    detail: Mapping[str, float] = field(default_factory=dict)


class _Window:
    """Per-window tallies (reset at every ``WindowStarted``)."""

    __slots__ = (
        "actions",
        "b_dir",
        "comments",
        "dm_out",
        "dms",
        "exposure",
        "items",
        "mentions",
        "mode",
        "net_likes",
        "number",
        "posts",
        "received",
        "sent",
        "u_neg",
        "u_pos",
    )

    def __init__(self, number: int, mode: str) -> None:
        self.number = number
        self.mode = mode
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.b_dir = 0
        self.actions: Counter[str] = Counter()
        self.posts: Counter[str] = Counter()
        self.comments: Counter[str] = Counter()
        self.dms: Counter[str] = Counter()
        self.net_likes: Counter[str] = Counter()
        self.items = 0
        self.mentions: Counter[str] = Counter()
        self.dm_out: dict[str, set[str]] = {}
        self.exposure: dict[str, dict[int, str]] = {}
        self.u_pos: dict[str, float] = {}
        self.u_neg: dict[str, float] = {}


class RewardScorer:
    """Incremental reward scorer: a pure function of the event sequence it is fed.

    ``lambdas[agent]`` maps components to weights (>= 0, summing to 1); agents missing from it get
    uniform weights. ``sentiment`` defaults to ``get_sentiment(params.sentiment)``.
    """

    def __init__(
        self,
        *,
        params: RewardParams | None = None,
        lambdas: Mapping[str, Mapping[str, float]] | None = None,
        sentiment: SentimentModel | None = None,
    ) -> None:
        self.params = params or RewardParams()
        self._lambdas = {a: validate_lambdas(a, w) for a, w in (lambdas or {}).items()}
        self.sentiment = sentiment or get_sentiment(self.params.sentiment)
        self._score_text = self.sentiment.score
        self.agents: dict[str, None] = {}
        self.post_author: dict[int, str] = {}
        self.post_topic: dict[int, str] = {}
        self.topics: set[str] = set()
        self.seen_topics: dict[str, set[str]] = {}
        self._prev_dm_in: dict[str, set[str]] = {}
        self._win: _Window | None = None
        self._norm_cache: dict[str, str] = {}
        self.windows_scored = 0
        self._handlers: dict[type[Event], Callable[[Event], list[AgentScores]]] = {
            AgentRegistered: self._on_registered,
            PersonaChanged: self._on_persona_changed,
            PostCreated: self._on_post,
            DirectMessageSent: self._on_dm,
            VoteCast: self._on_vote,
            VoteChanged: self._on_vote,
            VoteCleared: self._on_vote,
            Followed: self._on_follow,
            Unfollowed: self._on_follow,
            FeedServed: self._on_feed,
            WindowStarted: self._on_window_started,
            WindowEnded: self._on_window_ended,
        }

    # --- public API ---------------------------------------------------------------------------

    @property
    def current_window(self) -> int | None:
        """The open window's number, or ``None`` between windows."""
        return None if self._win is None else self._win.number

    @property
    def event_types(self) -> frozenset[type[Event]]:
        """The event types :meth:`feed` reads; it ignores every other event, so a reader may
        skip them (the live view's digest selects only these rows)."""
        return frozenset(self._handlers)

    def lambdas_of(self, agent: str) -> Mapping[str, float]:
        """The reward mix λ of ``agent`` (uniform when not configured)."""
        return self._lambdas.get(agent, UNIFORM_LAMBDAS)

    def _on_persona_changed(self, e: Event) -> list[AgentScores]:
        """An intervention changed an agent's reward mix: it is scored by it from now on."""
        assert isinstance(e, PersonaChanged)
        lam = e.fields.get("lambdas")
        if isinstance(lam, Mapping):
            self._lambdas[e.agent] = validate_lambdas(e.agent, dict(lam))
        return []

    def feed(self, event: Event) -> list[AgentScores]:
        """Consume one event; returns the window's scores at ``WindowEnded``, else ``[]``."""
        handler = self._handlers.get(type(event))
        if handler is None:
            return []
        return handler(event)

    # --- handlers -----------------------------------------------------------------------------

    def _norm(self, topic: str) -> str:
        n = self._norm_cache.get(topic)
        if n is None:
            n = self._norm_cache[topic] = normalise_topic(topic)
        return n

    def _on_registered(self, ev: Event) -> list[AgentScores]:
        if ev.actor is not None:
            self.agents[ev.actor] = None
        return []

    def _on_post(self, ev: Event) -> list[AgentScores]:
        assert isinstance(ev, PostCreated)
        author = ev.actor or ""
        self.post_author[ev.post_id] = author
        topic = self._norm(ev.topic)
        if topic:
            self.post_topic[ev.post_id] = topic
            self.topics.add(topic)
        w = self._win
        if w is None:
            return []
        w.items += 1
        w.actions[author] += 1
        if ev.mentions:
            for m in set(ev.mentions):
                if m != author:
                    w.mentions[m] += 1
        if ev.parent_id is None:
            w.posts[author] += 1
            return []
        w.comments[author] += 1
        to = self.post_author.get(ev.parent_id)
        if to is not None and to != author:
            self._interaction(w, author, to, ev.text)
        return []

    def _interaction(self, w: _Window, sender: str, to: str, text: str) -> None:
        w.sent[sender] += 1
        w.received[to] += 1
        w.b_dir += 1
        s = self._score_text(text)
        if s > 0.0:
            w.u_pos[to] = w.u_pos.get(to, 0.0) + s
        elif s < 0.0:
            w.u_neg[to] = w.u_neg.get(to, 0.0) - s

    def _on_dm(self, ev: Event) -> list[AgentScores]:
        assert isinstance(ev, DirectMessageSent)
        w = self._win
        if w is None:
            return []
        sender = ev.actor or ""
        w.actions[sender] += 1
        w.dms[sender] += 1
        to = ev.recipient
        if to != sender:
            self._interaction(w, sender, to, ev.text)
            out = w.dm_out.get(sender)
            if out is None:
                w.dm_out[sender] = {to}
            else:
                out.add(to)
        return []

    def _on_vote(self, ev: Event) -> list[AgentScores]:
        w = self._win
        if w is None:
            return []
        voter = ev.actor or ""
        w.actions[voter] += 1
        match ev:
            case VoteCast(author=author, value=value):
                delta = value
            case VoteChanged(author=author, old=old, value=value):
                delta = value - old
            case VoteCleared(author=author, old=old):
                delta = -old
            case _:  # pragma: no cover - dispatch table only routes vote events here
                return []
        if author != voter and delta:
            w.net_likes[author] += delta
        return []

    def _on_follow(self, ev: Event) -> list[AgentScores]:
        w = self._win
        if w is not None:
            w.actions[ev.actor or ""] += 1
        return []

    def _on_feed(self, ev: Event) -> list[AgentScores]:
        assert isinstance(ev, FeedServed)
        agent = ev.actor or ""
        ids = ev.post_ids
        if len(ev.topics) == len(ids):
            cache = self._norm_cache
            topics = [cache.get(t) or self._norm(t) for t in ev.topics]
        else:
            pt = self.post_topic
            topics = [pt.get(pid, "") for pid in ids]
        self.topics.update(topics)
        w = self._win
        if w is None:
            self.seen_topics.setdefault(agent, set()).update(t for t in topics if t)
            return []
        exp = w.exposure.get(agent)
        if exp is None:
            w.exposure[agent] = dict(zip(ids, topics, strict=True))
        else:
            exp.update(zip(ids, topics, strict=True))
        return []

    def _on_window_started(self, ev: Event) -> list[AgentScores]:
        assert isinstance(ev, WindowStarted)
        if self._win is not None:
            log.warning(
                "reward_window_abandoned",
                window=self._win.number,
                restarted_by=ev.window,
                seq=ev.seq,
            )
        self._win = _Window(ev.window, ev.mode)
        return []

    def _on_window_ended(self, ev: Event) -> list[AgentScores]:
        assert isinstance(ev, WindowEnded)
        w = self._win
        if w is None or w.number != ev.window:
            open_ = "none" if w is None else str(w.number)
            raise RewardLogError(
                f"event seq={ev.seq}: WindowEnded(window={ev.window}) but the open window is {open_}"
            )
        self._win = None
        return self._close(w)

    # --- scoring ------------------------------------------------------------------------------

    def _close(self, w: _Window) -> list[AgentScores]:
        p = self.params
        self.topics.discard("")
        k = len(self.topics)
        n_agents = len(self.agents)
        rounds = w.mode == "rounds"
        out: list[AgentScores] = []
        for u in self.agents:
            acts = w.actions.get(u, 0)
            n_u = p.n_actions if rounds else acts
            n_likes = p.n_actions if rounds else max(1, acts)
            sent = w.sent.get(u, 0)
            received = w.received.get(u, 0)
            posts = w.posts.get(u, 0)
            net = w.net_likes.get(u, 0)
            mentions = w.mentions.get(u, 0)
            new_topics, h, exposed = self._exposure(u, w.exposure.get(u))
            last_dmers = self._prev_dm_in.get(u)
            replied = 0
            if last_dmers:
                out_u = w.dm_out.get(u)
                replied = len(last_dmers & out_u) if out_u else 0
            u_pos = w.u_pos.get(u, 0.0)
            u_neg = w.u_neg.get(u, 0.0)
            comps = {
                "SOC": rp.soc(sent=sent, received=received, b_dir=w.b_dir, n=n_u, beta=p.beta_soc),
                "INF": rp.inf(new_topics=new_topics, entropy_value=h, k=k, beta=p.beta_inf),
                "PRE": rp.pre(
                    posts=posts,
                    n=n_u,
                    net_likes=net,
                    n_agents=n_agents,
                    n_likes=n_likes,
                    beta=p.beta_pre,
                ),
                "COORD": rp.coord(
                    mentions=mentions,
                    items=w.items,
                    replied=replied,
                    last_dmers=len(last_dmers) if last_dmers else 0,
                    beta=p.beta_coord,
                ),
                "EMO": rp.emo(u_pos=u_pos, u_neg=u_neg, beta=p.beta_emo, eps=p.eps),
            }
            lam = self._lambdas.get(u, UNIFORM_LAMBDAS)
            detail = {
                "actions": acts,
                "posts": posts,
                "comments": w.comments.get(u, 0),
                "dms": w.dms.get(u, 0),
                "sent": sent,
                "received": received,
                "b_dir": w.b_dir,
                "net_likes": net,
                "mentions": mentions,
                "items": w.items,
                "exposed": exposed,
                "new_topics": new_topics,
                "entropy": h,
                "k": k,
                "replied": replied,
                "last_dmers": len(last_dmers) if last_dmers else 0,
                "u_pos": u_pos,
                "u_neg": u_neg,
            }
            out.append(
                AgentScores(
                    agent=u,
                    window=w.number,
                    components=comps,
                    total=rp.total(comps, lam),
                    detail=detail,
                )
            )
        dm_in: dict[str, set[str]] = {}
        for sender, recipients in w.dm_out.items():
            for r in recipients:
                dm_in.setdefault(r, set()).add(sender)
        self._prev_dm_in = dm_in
        self.windows_scored += 1
        return out

    def _exposure(self, u: str, exp: dict[int, str] | None) -> tuple[int, float, int]:
        """(new topics T(u), entropy H(u), |C(u)|); updates u's exposure history."""
        if not exp:
            return 0, 0.0, 0
        counts = Counter(exp.values())
        counts.pop("", None)
        seen = self.seen_topics.get(u)
        if seen is None:
            seen = self.seen_topics[u] = set()
        new = 0
        for t in counts:
            if t not in seen:
                new += 1
                seen.add(t)
        return new, rp.entropy(list(counts.values())), len(exp)


def score_log(
    events: Iterable[Event],
    *,
    params: RewardParams | None = None,
    lambdas: Mapping[str, Mapping[str, float]] | None = None,
    sentiment: SentimentModel | None = None,
) -> list[AgentScores]:
    """Score a whole log (events in ``seq`` order): every agent's scores for every window."""
    scorer = RewardScorer(params=params, lambdas=lambdas, sentiment=sentiment)
    out: list[AgentScores] = []
    feed = scorer.feed
    for ev in events:
        res = feed(ev)
        if res:
            out.extend(res)
    return out
