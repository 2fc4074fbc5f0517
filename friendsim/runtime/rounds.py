"""The paper's rounds protocol on the virtual clock.

Round ``w`` is window ``w`` and spans virtual time ``[(w-1)·L, w·L)``. Its phases, each at a
fixed point of the round so that ``posts_between`` and feeds can address them by time:

* ``t0`` — ``WindowStarted``; flush; each agent (sorted) is served the full-visibility feed of
  the previous round's public content (``serve_feed`` with ``since_t``/``until_t`` = the previous
  round, so exposure is logged as ``FeedServed``) and its DMs of the previous round. Round 1 has
  no previous round: no feed is served and only ``POST`` is allowed.
* all policies plan concurrently; at ``t0 + L/3`` the decisions are applied sorted by agent.
* ``t0 + 2L/3`` — vote phase: flush; every agent is offered every public item (post or comment)
  of this round that it did not write (``vote_limit`` caps that at a seeded sample, for large
  populations; unset = all, as in the paper) and votes +1/-1/0 concurrently; non-zero votes are
  cast sorted by agent then post id.
* ``t0 + L`` — ``WindowEnded``; flush; the runtime awaits ``coach.window_done(w)``, which scores
  the round from the log and records guidance, before round ``w+1`` starts (deterministic).

Vote-phase offers are not logged as exposure: INF's "items shown" is the planning feed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence

from friendsim.platform.events import DirectMessageSent, WindowEnded, WindowStarted
from friendsim.runtime.engine import Engine, WindowTally
from friendsim.runtime.observe import feed_item
from friendsim.vocabulary import (
    PAPER_ACTIONS,
    ActionType,
    FeedItem,
    InboxMessage,
    Observation,
)

ROUND_ONE_ALLOWED: tuple[ActionType, ...] = ("POST",)
EXECUTE_AT = 1 / 3
VOTE_AT = 2 / 3


class RoundsScheduler:
    """Runs ``rounds`` rounds of plan–execute–reflect, vote and window end."""

    def __init__(
        self,
        engine: Engine,
        *,
        rounds: int,
        round_length: float = 3600.0,
        vote_limit: int | None = None,
        seed: int = 0,
    ) -> None:
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        if round_length <= 0:
            raise ValueError(f"round_length must be > 0, got {round_length}")
        self.engine = engine
        self.rounds = rounds
        self.round_length = float(round_length)
        self.vote_limit = vote_limit
        self.seed = seed
        self.reports: list[WindowTally] = []
        """Tallies of the rounds completed so far (kept when a run is interrupted), each added
        once its ``WindowEnded`` is committed, before it is scored and coached and before the
        failure budget judges it: a window that spends the budget, or whose guidance could not
        be given (the coach's provider down), is complete in the log and counted in the
        manifest (``windows``, ``totals``) of the run it stops."""

    async def run(self) -> list[WindowTally]:
        """Run every round; returns one tally per round."""
        self.engine.listener.run_started(windows=self.rounds, agents=len(self.engine.agents))
        for w in range(1, self.rounds + 1):
            await self.engine.before_window(w)
            tally = await self.run_round(w)
            self.reports.append(tally)
            tally.scores = await self.engine.window_done(w)
            self.engine.window_ended(tally)
        return list(self.reports)

    async def run_round(self, w: int) -> WindowTally:
        """Run one round (window ``w``) up to its committed ``WindowEnded``."""
        engine, platform = self.engine, self.engine.platform
        length = self.round_length
        t0 = (w - 1) * length
        tally = WindowTally(window=w)
        engine.begin_window(w)

        engine.check_stop()
        platform.clock.advance_to(t0)
        await platform.record(WindowStarted(t=t0, window=w, mode="rounds", t_end=t0 + length))
        await platform.flush()
        await engine.hooks.window_started(w)
        first = w == 1
        allowed = ROUND_ONE_ALLOWED if first else PAPER_ACTIONS

        agents = engine.active(w)
        inboxes: dict[str, list[DirectMessageSent]] | None = None
        feeds = engine.feeds_ahead(() if first else agents, since_t=t0 - length, until_t=t0)

        async def observe(agent: str) -> Observation:
            nonlocal inboxes
            if first:
                feed: tuple[FeedItem, ...] = ()
                inbox: tuple[InboxMessage, ...] = ()
            else:
                feed = await feeds.take(agent)
                if inboxes is None:  # the last round's DMs, read once for every agent
                    inboxes = await platform.dms_between(t0 - length, t0)
                inbox = engine.inbox_of(agent, inboxes.get(agent, ()))
            return await engine.observe(agent, window=w, allowed=allowed, feed=feed, inbox=inbox)

        try:
            observations = await engine.observe_and_decide(
                agents,
                observe,
                tally,
                before_apply=lambda: platform.clock.advance_to(t0 + length * EXECUTE_AT),
            )
        finally:
            await feeds.aclose()
        await engine.hooks.applied(w)

        engine.check_stop()
        platform.clock.advance_to(t0 + length * VOTE_AT)
        await platform.flush()
        items = tuple(feed_item(v) for v in await platform.posts_between(t0, t0 + length))
        await engine.vote_and_apply(observations, self._offers(w, items, observations), tally)
        await engine.hooks.window_ending(w)

        platform.clock.advance_to(t0 + length)
        ended = await platform.record(WindowEnded(t=t0 + length, window=w))
        tally.end_seq = ended.seq
        await platform.flush()
        return tally

    def _offers(
        self, w: int, items: tuple[FeedItem, ...], voters: Mapping[str, object]
    ) -> Mapping[str, tuple[FeedItem, ...]]:
        """Items offered to each agent that planned this round (``voters``): all items not its
        own that moderation lets it see, or a seeded sample of ``vote_limit`` of them (drawn
        without scanning the whole list: O(limit) per agent)."""
        offers: dict[str, tuple[FeedItem, ...]] = {}
        limit = self.vote_limit
        at: dict[str, list[int]] = {}
        for k, item in enumerate(items):
            at.setdefault(item.author, []).append(k)
        everyone = items
        platform = self.engine.platform
        for agent in (a for a in self.engine.agents if a in voters):
            items, mine = everyone, len(at.get(agent, ()))
            if platform.hides_any:
                shown = set(platform.visible(agent, [i.post_id for i in everyone]))
                items = tuple(i for i in everyone if i.post_id in shown)
                mine = sum(1 for i in items if i.author == agent)
            if limit is None or len(items) - mine <= limit:
                offers[agent] = (
                    _without(everyone, at.get(agent, ()))
                    if items is everyone
                    else tuple(i for i in items if i.author != agent)
                )
                continue
            rng = random.Random(f"{self.seed}:vote:{w}:{agent}")
            picked: set[int] = set()
            while len(picked) < limit:
                k = rng.randrange(len(items))
                if items[k].author != agent:
                    picked.add(k)
            offers[agent] = tuple(items[k] for k in sorted(picked))
        return offers


def _without(items: tuple[FeedItem, ...], positions: Sequence[int]) -> tuple[FeedItem, ...]:
    """``items`` without the ones at ``positions`` (ascending), order kept: slices joined in C
    instead of a test per item (every voter of a round is offered nearly every item)."""
    if not positions:
        return items
    parts: list[tuple[FeedItem, ...]] = []
    prev = 0
    for k in positions:
        parts.append(items[prev:k])
        prev = k + 1
    parts.append(items[prev:])
    return tuple(itertools.chain.from_iterable(parts))
