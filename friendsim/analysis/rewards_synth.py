"""Build event logs without a platform: a small builder for tests and a synthetic log generator.

:class:`LogBuilder` assigns ``seq``/``t`` and post/DM ids the way the platform does, so the logs
it makes are shaped like real ones (it does not validate commands). :func:`synthetic_log` makes a
seeded, realistic-looking log (posts, comments, votes, DMs, follows, feeds, window markers) of a
requested size, for the reward benchmark.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from friendsim.platform.events import (
    AgentRegistered,
    DirectMessageSent,
    Event,
    FeedServed,
    Followed,
    PostCreated,
    VoteCast,
    VoteChanged,
    VoteCleared,
    WindowEnded,
    WindowStarted,
)


class LogBuilder:
    """Appends events with increasing ``seq`` and ``t``; remembers post authors for votes."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._seq = 0
        self._post_id = 0
        self._dm_id = 0
        self.authors: dict[int, str] = {}
        self.topics: dict[int, str] = {}
        self.roots: dict[int, int] = {}

    def _add(self, event: Event) -> Event:
        self.events.append(event)
        return event

    def _next(self) -> tuple[int, float]:
        self._seq += 1
        return self._seq, float(self._seq)

    def register(self, *agents: str) -> None:
        for a in agents:
            seq, t = self._next()
            self._add(AgentRegistered(seq=seq, t=t, actor=a, name=a.title()))

    def start(self, window: int, mode: str = "rounds") -> None:
        seq, t = self._next()
        self._add(WindowStarted(seq=seq, t=t, window=window, mode=mode))

    def end(self, window: int) -> None:
        seq, t = self._next()
        self._add(WindowEnded(seq=seq, t=t, window=window))

    def post(
        self,
        author: str,
        topic: str,
        text: str = "a post",
        *,
        mentions: Sequence[str] = (),
        parent: int | None = None,
    ) -> int:
        seq, t = self._next()
        self._post_id += 1
        pid = self._post_id
        root = None if parent is None else self.roots.get(parent, parent)
        self._add(
            PostCreated(
                seq=seq,
                t=t,
                actor=author,
                post_id=pid,
                text=text,
                topic=topic,
                mentions=tuple(mentions),
                parent_id=parent,
                root_id=root,
            )
        )
        self.authors[pid] = author
        self.topics[pid] = topic
        if root is not None:
            self.roots[pid] = root
        return pid

    def comment(self, author: str, parent: int, text: str = "a comment", **kw: object) -> int:
        return self.post(author, self.topics.get(parent, ""), text, parent=parent, **kw)  # type: ignore[arg-type]

    def dm(self, sender: str, recipient: str, text: str = "hi", topic: str = "") -> int:
        seq, t = self._next()
        self._dm_id += 1
        self._add(
            DirectMessageSent(
                seq=seq,
                t=t,
                actor=sender,
                dm_id=self._dm_id,
                recipient=recipient,
                text=text,
                topic=topic,
            )
        )
        return self._dm_id

    def vote(self, voter: str, post: int, value: int) -> None:
        seq, t = self._next()
        self._add(
            VoteCast(
                seq=seq, t=t, actor=voter, post_id=post, author=self.authors[post], value=value
            )
        )

    def change_vote(self, voter: str, post: int, old: int, value: int) -> None:
        seq, t = self._next()
        self._add(
            VoteChanged(
                seq=seq,
                t=t,
                actor=voter,
                post_id=post,
                author=self.authors[post],
                old=old,
                value=value,
            )
        )

    def clear_vote(self, voter: str, post: int, old: int) -> None:
        seq, t = self._next()
        self._add(
            VoteCleared(seq=seq, t=t, actor=voter, post_id=post, author=self.authors[post], old=old)
        )

    def follow(self, follower: str, target: str) -> None:
        seq, t = self._next()
        self._add(Followed(seq=seq, t=t, actor=follower, target=target))

    def feed(self, agent: str, posts: Sequence[int], *, with_topics: bool = True) -> None:
        seq, t = self._next()
        topics = tuple(self.topics[p] for p in posts) if with_topics else ()
        self._add(
            FeedServed(
                seq=seq, t=t, actor=agent, ranker="full", post_ids=tuple(posts), topics=topics
            )
        )


_WORDS = (
    "climate carbon policy energy solar wind tax future planet science data farmers cities "
    "transport jobs community honest really think maybe agree disagree love great terrible "
    "awful hope thanks friend worry risk cost evidence model people vote plan idea good bad"
).split()


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 24)))


def synthetic_log(
    n_events: int, *, n_agents: int = 1000, n_windows: int = 50, n_topics: int = 40, seed: int = 0
) -> Iterator[Event]:
    """Yield about ``n_events`` events shaped like a timeline run (seeded, deterministic).

    Per window and agent (on average): one feed of 20 items, ~1 post, ~1 comment, ~0.6 DM, ~14
    vote events (casts, some changes and clears), ~0.2 follows; texts are random word strings
    (mostly unique, so sentiment caching gets no unfair help).
    """
    rng = random.Random(seed)
    b = LogBuilder()
    agents = [f"u{i:04d}" for i in range(n_agents)]
    topics = [f"topic {i}" for i in range(n_topics)]
    b.register(*agents)
    per_window = max(3, (n_events - n_agents) // n_windows)
    votes: dict[tuple[str, int], int] = {}
    follows: set[tuple[str, str]] = set()
    recent: list[int] = []
    for w in range(1, n_windows + 1):
        b.start(w, "rounds" if w % 2 else "continuous")
        target = len(b.events) + per_window - 2
        while len(b.events) < target:
            a = rng.choice(agents)
            r = rng.random()
            if r < 0.06 or not recent:
                recent.append(
                    b.post(a, rng.choice(topics), _text(rng), mentions=_mentions(rng, agents))
                )
            elif r < 0.12:
                recent.append(b.comment(a, rng.choice(recent[-500:]), _text(rng)))
            elif r < 0.16:
                other = rng.choice(agents)
                if other != a:
                    b.dm(a, other, _text(rng))
            elif r < 0.175:
                other = rng.choice(agents)
                if other != a and (a, other) not in follows:
                    follows.add((a, other))
                    b.follow(a, other)
            elif r < 0.235:
                shown = rng.sample(recent[-400:], min(20, len(recent[-400:])))
                b.feed(a, shown)
            else:
                pid = rng.choice(recent[-400:])
                if b.authors[pid] == a:
                    continue
                old = votes.get((a, pid), 0)
                if old == 0:
                    v = 1 if rng.random() < 0.7 else -1
                    b.vote(a, pid, v)
                    votes[(a, pid)] = v
                elif rng.random() < 0.5:
                    b.change_vote(a, pid, old, -old)
                    votes[(a, pid)] = -old
                else:
                    b.clear_vote(a, pid, old)
                    votes[(a, pid)] = 0
        b.end(w)
        yield from b.events
        b.events.clear()


def _mentions(rng: random.Random, agents: list[str]) -> tuple[str, ...]:
    return (rng.choice(agents),) if rng.random() < 0.2 else ()
