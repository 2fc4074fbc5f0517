"""Agent memory with a bounded prompt footprint.

Three stores (DESIGN section 2) plus reward history:

- conversation memory: a fixed-size list of the most recent interactions (own actions, DMs and
  comments received), each a short snippet, plus rolling counters over the whole run;
- relationship memory: per other agent, counts of interactions each way, last tone, likes and
  dislikes given/received, last window seen; the prompt shows only the ``max_relations`` most
  relevant peers plus a one-line tally of the rest;
- opinion memory: one stance entry per topic (latest tone and how often the agent spoke on it);
  the prompt shows the ``max_opinions`` most recent topics;
- the last window's actions with their reward scores, and the best window so far.

Everything the prompt renders is capped, so prompt size stops growing after a few windows no
matter how long the run is. :func:`estimate_tokens` is the shared size measure (``len/4``, as in ``friendsim.llm.tokens``).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from friendsim.llm.tokens import estimate_tokens as _llm_estimate
from friendsim.vocabulary import Action, FeedItem, Observation, RewardFeedback

SNIPPET_CHARS = 80


def estimate_tokens(text: str) -> int:
    """Token estimate used for prompt-size reporting (about 4 characters per token; the same
    estimate as the LLM layer's accounting)."""
    return _llm_estimate(text)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """One-line, length-capped preview of a text."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


@dataclass(frozen=True, kw_only=True, slots=True)
class Interaction:
    """One remembered interaction. ``direction`` is "out" (by me) or "in" (to me)."""

    window: int
    kind: str
    direction: str
    peer: str | None
    topic: str
    tone: str | None
    text: str


@dataclass(kw_only=True, slots=True)
class Relationship:
    """Rolling counters about one other agent."""

    sent: int = 0
    received: int = 0
    mentions_out: int = 0
    mentions_in: int = 0
    likes_given: int = 0
    dislikes_given: int = 0
    likes_received: int = 0
    dislikes_received: int = 0
    last_tone: str | None = None
    last_window: int = 0

    @property
    def weight(self) -> int:
        """How much this relationship matters for the prompt (interaction volume)."""
        return (
            self.sent + self.received + self.mentions_out + self.mentions_in
            + self.likes_given + self.likes_received
        )  # fmt: skip


@dataclass(kw_only=True, slots=True)
class Opinion:
    """The agent's latest stance on one topic."""

    tone: str
    window: int
    count: int = 1


@dataclass(kw_only=True, slots=True)
class WindowRecord:
    """What the agent did in a window and how it scored (score filled in when known)."""

    window: int
    actions: tuple[str, ...]
    total: float | None = None
    components: dict[str, float] = field(default_factory=dict)


class AgentMemory:
    """Bounded memory of one agent. Not thread-safe; one instance per agent."""

    def __init__(
        self,
        agent_id: str,
        *,
        max_recent: int = 8,
        max_relations: int = 6,
        max_opinions: int = 6,
        max_windows: int = 4,
        max_own_posts: int = 256,
    ) -> None:
        self.agent_id = agent_id
        self.max_relations = max_relations
        self.max_opinions = max_opinions
        self.recent: deque[Interaction] = deque(maxlen=max_recent)
        self.relations: dict[str, Relationship] = {}
        self.opinions: dict[str, Opinion] = {}
        self.counters: dict[str, int] = {}
        self.windows: deque[WindowRecord] = deque(maxlen=max_windows)
        self.best: WindowRecord | None = None
        self._own_posts: deque[int] = deque(maxlen=max_own_posts)
        self._own_post_set: set[int] = set()
        self._post_author: dict[int, str] = {}
        self._seen_in: dict[tuple[object, ...], None] = {}
        self._max_seen = 4096
        self.last_dm_senders: tuple[str, ...] = ()
        self._inbox_window = -1

    def is_own_post(self, post_id: int) -> bool:
        """Whether ``post_id`` is one of my (recently seen) posts."""
        return post_id in self._own_post_set

    # --- ingestion ---------------------------------------------------------------------------

    def _rel(self, peer: str) -> Relationship:
        rel = self.relations.get(peer)
        if rel is None:
            rel = self.relations[peer] = Relationship()
        return rel

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def _own_post(self, post_id: int) -> None:
        if post_id in self._own_post_set:
            return
        if len(self._own_posts) == self._own_posts.maxlen:
            self._own_post_set.discard(self._own_posts[0])
        self._own_posts.append(post_id)
        self._own_post_set.add(post_id)

    def note_authors(self, items: Iterable[FeedItem]) -> None:
        """Remember who wrote which post (bounded), to attribute comments and votes later."""
        for item in items:
            self._post_author[item.post_id] = item.author
        while len(self._post_author) > self._max_seen:
            del self._post_author[next(iter(self._post_author))]

    def _mark_seen(self, key: tuple[object, ...]) -> None:
        self._seen_in[key] = None
        if len(self._seen_in) > self._max_seen:
            del self._seen_in[next(iter(self._seen_in))]

    def observe(self, obs: Observation) -> None:
        """Ingest what an observation reveals: DMs to me, comments on my posts, mentions of me,
        and the reward feedback of earlier windows. Idempotent per item (safe to call twice)."""
        self.note_authors(obs.feed)
        for item in obs.feed:
            if item.author == self.agent_id:
                self._own_post(item.post_id)
        for item in obs.feed:
            if item.author == self.agent_id or ("feed", item.post_id) in self._seen_in:
                continue
            to_me = item.parent_id is not None and item.parent_id in self._own_post_set
            mentioned = self.agent_id in item.mentions
            if not (to_me or mentioned):
                continue
            self._mark_seen(("feed", item.post_id))
            rel = self._rel(item.author)
            rel.last_window = max(rel.last_window, obs.window - 1)
            if to_me:
                rel.received += 1
                self._count("comments_received")
            if mentioned:
                rel.mentions_in += 1
                self._count("mentions_received")
            self.recent.append(
                Interaction(window=obs.window - 1, kind="comment" if to_me else "mention",
                            direction="in", peer=item.author, topic=item.topic, tone=None,
                            text=snippet(item.text))
            )  # fmt: skip
        senders: list[str] = []
        for dm in obs.inbox:
            if ("dm", dm.dm_id) in self._seen_in:
                if dm.sender not in senders and not dm.is_broadcast:
                    senders.append(dm.sender)
                continue
            self._mark_seen(("dm", dm.dm_id))
            if dm.is_broadcast:  # from no user: no relationship, no DM received
                self._count("broadcasts_received")
                self.recent.append(
                    Interaction(window=obs.window, kind="broadcast", direction="in",
                                peer=dm.sender, topic=dm.topic, tone=None, text=snippet(dm.text))
                )  # fmt: skip
                continue
            if dm.sender not in senders:
                senders.append(dm.sender)
            rel = self._rel(dm.sender)
            rel.received += 1
            rel.last_window = max(rel.last_window, obs.window - 1)
            self._count("dms_received")
            self.recent.append(
                Interaction(window=obs.window - 1, kind="dm", direction="in", peer=dm.sender,
                            topic=dm.topic, tone=None, text=snippet(dm.text))
            )  # fmt: skip
        if obs.inbox or obs.window != self._inbox_window:
            self.last_dm_senders = tuple(senders)
            self._inbox_window = obs.window
        for rv in obs.received_votes:
            key = ("vote", rv.post_id, rv.voter)
            if rv.value == 0 or rv.voter == self.agent_id or key in self._seen_in:
                continue
            self._mark_seen(key)
            rel = self._rel(rv.voter)
            if rv.value > 0:
                rel.likes_received += 1
                self._count("likes_received")
            else:
                rel.dislikes_received += 1
                self._count("dislikes_received")
        if obs.last_rewards is not None:
            self._attach_reward(obs.last_rewards)
        if obs.best_rewards is not None:
            self._attach_best(obs.best_rewards)

    def _attach_reward(self, fb: RewardFeedback) -> None:
        for rec in self.windows:
            if rec.window == fb.window:
                rec.total = fb.total
                rec.components = dict(fb.components)
                if self.best is None or (self.best.total or 0.0) < fb.total:
                    self.best = rec
                return

    def _attach_best(self, fb: RewardFeedback) -> None:
        if self.best is not None and self.best.window == fb.window:
            self.best.total = fb.total
            return
        actions = next((r.actions for r in self.windows if r.window == fb.window), ())
        if not actions and fb.summary:
            actions = (fb.summary,)
        self.best = WindowRecord(window=fb.window, actions=actions, total=fb.total,
                                 components=dict(fb.components))  # fmt: skip

    def record_actions(self, window: int, applied: Iterable[Action]) -> None:
        """Remember my own applied actions of ``window``."""
        summaries: list[str] = []
        for a in applied:
            summaries.append(describe_action(a))
            self._count(f"{a.type.lower()}_sent")
            peer: str | None = None
            match a.type:
                case "DM" | "FOLLOW" | "UNFOLLOW":
                    peer = a.recipient
                case "COM" | "LIKE" | "DISLIKE" | "REPOST":
                    peer = (
                        self._post_author.get(a.target_post) if a.target_post is not None else None
                    )
                case _:
                    peer = None
            if peer is not None and peer != self.agent_id:
                rel = self._rel(peer)
                rel.last_window = max(rel.last_window, window)
                match a.type:
                    case "DM" | "COM":
                        rel.sent += 1
                        rel.last_tone = a.tone
                    case "LIKE":
                        rel.likes_given += 1
                    case "DISLIKE":
                        rel.dislikes_given += 1
                    case _:
                        pass
            if a.mention and a.mention != self.agent_id:
                mrel = self._rel(a.mention)
                mrel.mentions_out += 1
                mrel.last_window = max(mrel.last_window, window)
            if a.type in ("POST", "COM", "DM", "REPOST") and a.topic:
                op = self.opinions.get(a.topic)
                if op is None:
                    self.opinions[a.topic] = Opinion(tone=a.tone, window=window)
                else:
                    op.tone, op.window, op.count = a.tone, window, op.count + 1
                if len(self.opinions) > 4 * self.max_opinions:
                    keep = sorted(self.opinions.items(), key=lambda kv: kv[1].window)[
                        -2 * self.max_opinions :
                    ]
                    self.opinions = dict(keep)
            if a.type in ("POST", "COM", "DM", "REPOST"):
                self.recent.append(
                    Interaction(window=window, kind=a.type.lower(), direction="out", peer=peer,
                                topic=a.topic, tone=a.tone, text=snippet(a.text))
                )  # fmt: skip
        self.windows.append(WindowRecord(window=window, actions=tuple(summaries)))

    def record_votes(self, votes: Mapping[int, int], items: Iterable[FeedItem] = ()) -> None:
        """Remember the likes/dislikes I gave, per author (authors from ``items``, else from the
        last observation's feed)."""
        self.note_authors(items)
        post_author, relations, me = self._post_author, self.relations, self.agent_id
        given = {"likes_given": 0, "dislikes_given": 0}
        order: list[str] = []  # counters appear in the order they were first given
        for post_id, value in votes.items():
            if value == 0:
                continue
            author = post_author.get(post_id)
            if author is None or author == me:
                continue
            rel = relations.get(author) or self._rel(author)
            if value > 0:
                rel.likes_given += 1
                key = "likes_given"
            else:
                rel.dislikes_given += 1
                key = "dislikes_given"
            if not given[key]:
                order.append(key)
            given[key] += 1
        for key in order:
            self._count(key, given[key])

    # --- rendering ---------------------------------------------------------------------------

    def top_relations(self) -> list[tuple[str, Relationship]]:
        """The relationships shown in prompts: most recent first, then heaviest."""

        def rank(kv: tuple[str, Relationship]) -> tuple[int, int, str]:
            r = kv[1]
            weight = (
                r.sent + r.received + r.mentions_out + r.mentions_in
                + r.likes_given + r.likes_received
            )  # fmt: skip
            return -r.last_window, -weight, kv[0]

        # the first max_relations of the sorted order (nsmallest is that, ties included)
        return heapq.nsmallest(self.max_relations, self.relations.items(), key=rank)

    def relationship_line(self, peer: str) -> str:
        """One line describing my relationship to ``peer`` (used by the vote prompt)."""
        rel = self.relations.get(peer)
        if rel is None:
            return "no previous interaction"
        return (
            f"you sent {rel.sent}, received {rel.received}; you liked {rel.likes_given}/"
            f"disliked {rel.dislikes_given} of theirs; they liked {rel.likes_received}/"
            f"disliked {rel.dislikes_received} of yours; @mentions {rel.mentions_out} out, "
            f"{rel.mentions_in} in; last tone {rel.last_tone or 'n/a'}"
        )

    def render(self) -> str:
        """The bounded memory section of the planning prompt (escaped by the caller)."""
        lines: list[str] = []
        if self.counters:
            tally = ", ".join(f"{k}={v}" for k, v in sorted(self.counters.items()))
            lines.append(f"Totals so far: {tally}; contacts: {len(self.relations)}.")
        if self.recent:
            lines.append("Recent interactions (oldest first):")
            for it in self.recent:
                who = f" {'to' if it.direction == 'out' else 'from'} {it.peer}" if it.peer else ""
                tone = f", {it.tone}" if it.tone else ""
                lines.append(f"- w{it.window} {it.kind}{who} on '{it.topic}'{tone}: {it.text}")
        top = self.top_relations()
        if top:
            lines.append("Relationships (most recent):")
            for peer, _ in top:
                lines.append(f"- {peer}: {self.relationship_line(peer)}")
            rest = len(self.relations) - len(top)
            if rest > 0:
                lines.append(f"- and {rest} other contacts")
        if self.opinions:
            recent_ops = sorted(self.opinions.items(), key=lambda kv: (-kv[1].window, kv[0]))[
                : self.max_opinions
            ]
            lines.append(
                "Your stances so far: "
                + "; ".join(f"{t}: {o.tone} (x{o.count})" for t, o in recent_ops)
            )
        if self.windows:
            last = self.windows[-1]
            score = (
                f"total {last.total:.3f} " + _fmt_components(last.components)
                if last.total is not None
                else "not scored yet"
            )
            lines.append(
                f"Last window w{last.window}: {'; '.join(last.actions) or 'no actions'}; reward: {score}"
            )
        if self.best is not None and self.best.total is not None:
            lines.append(
                f"Best window so far w{self.best.window} (total {self.best.total:.3f}): "
                + ("; ".join(self.best.actions) or "n/a")
            )
        return "\n".join(lines) if lines else "(nothing yet)"


def _fmt_components(c: dict[str, float]) -> str:
    return "(" + ", ".join(f"{k} {v:.2f}" for k, v in c.items()) + ")" if c else ""


def describe_action(a: Action) -> str:
    """A compact, bounded description of an action for memory."""
    match a.type:
        case "POST":
            base = f"POST on '{a.topic}'"
        case "COM" | "LIKE" | "DISLIKE" | "REPOST":
            base = f"{a.type} on post {a.target_post}"
        case "DM" | "FOLLOW" | "UNFOLLOW":
            base = f"{a.type} to {a.recipient}"
        case _:
            base = a.type
    if a.mention:
        base += f" @{a.mention}"
    if a.type in ("POST", "COM", "DM"):
        base += f" ({a.tone})"
    return snippet(base, 60)
