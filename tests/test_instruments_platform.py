"""The platform honours moderation and suspensions: feeds, admission, the schema, reopening."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from friendsim.moderation.base import Verdict
from friendsim.moderation.service import ModerationService
from friendsim.platform import Platform, VirtualClock
from friendsim.platform.errors import ModeratedPostError, SuspendedAgentError
from friendsim.platform.events import (
    AgentSuspended,
    FeedServed,
    ModerationDecided,
    WindowStarted,
)
from friendsim.platform.feeds import ChronologicalRanker, FeedRanker, FullVisibilityRanker
from friendsim.testing import FakeModerator


async def setup(db: Path) -> Platform:
    p = await Platform.open(db, clock=VirtualClock(0.0))
    for a in ("a", "b", "c"):
        await p.register_agent(a, name=a.upper())
    await p.record(WindowStarted(t=0.0, window=1))
    for i, author in enumerate(("a", "a", "b", "c", "c"), start=1):
        p.clock.advance_to(float(i))
        await p.create_post(author, text=f"post {i}", topic="t")
    await p.flush()
    return p


async def feed(p: Platform, reader: str) -> list[tuple[int, str | None]]:
    views = await p.serve_feed(reader, FullVisibilityRanker(), limit=10, since_t=0.0)
    return [(v.post_id, v.label) for v in views]


async def test_decisions_shape_every_feed(tmp_path: Path) -> None:
    p = await setup(tmp_path / "e.db")
    fake = FakeModerator(
        {
            1: [Verdict(action="remove")],
            2: [Verdict(action="label", label="Missing context")],
            3: [Verdict(action="downrank")],
            4: [Verdict(action="shadowban")],
        }
    )
    service = ModerationService(p, moderator=fake)
    await service.start()
    assert await service.sweep() == 4
    assert [i.post_id for i in fake.seen] == [1, 2, 3, 4, 5]
    # removal: nobody, not even the author, is served post 1; the label travels with post 2;
    # the downranked post 3 comes after all others; c's items (4, 5) reach only c
    assert await feed(p, "b") == [(2, "Missing context"), (3, None)]
    assert await feed(p, "a") == [(2, "Missing context"), (3, None)]
    assert await feed(p, "c") == [(2, "Missing context"), (4, None), (5, None), (3, None)]
    assert p.visible("a", [1, 2, 3, 4, 5]) == [2, 3]
    # a feed that would show a removed or shadowbanned item is refused by the state check
    seq = p.last_seq + 1
    bad = FeedServed(seq=seq, t=p.clock.now(), actor="b", ranker="x", post_ids=(4,), topics=("t",))
    with pytest.raises(ModeratedPostError):
        await p.ingest(bad)
    # nobody replies to, quotes or votes on a removed item any more
    for act in (
        p.create_post("b", text="re", topic="t", parent_id=1),
        p.create_post("b", text="", topic="t", quote_of=1),
        p.vote("b", 1, 1),
    ):
        with pytest.raises(ModeratedPostError):
            await act
    await p.vote("b", 2, 1)  # a labelled item may be voted on
    await service.stop()
    await p.close()
    # reopening rebuilds the moderation state from the tables
    again = await Platform.open(tmp_path / "e.db")
    assert await feed(again, "b") == [(2, "Missing context"), (3, None)]
    await again.close()
    with sqlite3.connect(tmp_path / "e.db") as con:
        rows = con.execute("SELECT action, post_id, author FROM moderation ORDER BY seq").fetchall()
    assert rows == [
        ("remove", 1, "a"),
        ("label", 2, "a"),
        ("downrank", 3, "b"),
        ("shadowban", 4, "c"),
    ]


async def test_suspended_agents_cannot_act_until_their_suspension_ends(tmp_path: Path) -> None:
    p = await setup(tmp_path / "s.db")
    await p.record(AgentSuspended(t=5.0, agent="b", from_window=2, until_window=3))
    await p.record(WindowStarted(t=10.0, window=2))
    assert p.suspended("b", 2) and not p.suspended("b", 4) and not p.suspended("a", 2)
    for act in (
        p.create_post("b", text="hi", topic="t"),
        p.vote("b", 1, 1),
        p.follow("b", "a"),
        p.send_dm("b", "a", text="hi"),
    ):
        with pytest.raises(SuspendedAgentError):
            await act
    await p.create_post("a", text="still here", topic="t")
    await p.flush()
    await p.close()
    again = await Platform.open(tmp_path / "s.db")  # the suspension survives a reopen
    with pytest.raises(SuspendedAgentError):
        await again.create_post("b", text="hi", topic="t")
    await again.record(WindowStarted(t=20.0, window=4))
    await again.create_post("b", text="back", topic="t")
    await again.close()


def test_schema_rejects_impossible_moderation(tmp_path: Path) -> None:
    import asyncio

    p = asyncio.run(setup(tmp_path / "c.db"))
    asyncio.run(p.close())
    con = sqlite3.connect(tmp_path / "c.db")
    con.execute("PRAGMA foreign_keys = ON")
    base = "INSERT INTO moderation(seq, t, window, moderator, action, post_id, author, label, from_window, until_window) VALUES "
    for values in (
        "(100, 0, 1, 'r', 'ban', 1, 'a', '', NULL, NULL)",  # unknown action
        "(101, 0, 1, 'r', 'label', 1, 'a', '', NULL, NULL)",  # a label without text
        "(102, 0, 1, 'r', 'suspend', 1, 'a', '', NULL, NULL)",  # a suspension without windows
        "(103, 0, 1, 'r', 'suspend', 1, 'a', '', 3, 2)",  # ends before it starts
        "(104, 0, 1, 'r', 'remove', 99, 'a', '', NULL, NULL)",  # no such post
    ):
        with pytest.raises(sqlite3.IntegrityError):
            con.execute(base + values)
    with pytest.raises(sqlite3.IntegrityError):
        con.execute(
            "INSERT INTO injected_items(post_id, item_id, truth, source, seq) VALUES (1, 'x', 'maybe', '', 200)"
        )
    con.close()


async def _posts(p: Platform, authors: str) -> None:
    """One post per letter of ``authors``, at t = 1, 2, ... (post ids 1, 2, ...)."""
    await p.record(WindowStarted(t=0.0, window=1))
    for i, author in enumerate(authors, start=1):
        p.clock.advance_to(float(i))
        await p.create_post(author, text=f"post {i}", topic="t")
    await p.flush()


async def _moderate(p: Platform, post_id: int, action: str) -> None:
    author = (await p.get_post(post_id)).author
    await p.record(
        ModerationDecided(
            t=p.clock.now(), window=1, moderator="x", action=action, post_id=post_id, author=author
        )
    )
    await p.flush()


async def _ids(p: Platform, reader: str, ranker: FeedRanker, **kw: float) -> list[int]:
    return [v.post_id for v in await p.rank_feed(reader, ranker, **kw)]  # type: ignore[arg-type]


async def test_full_feed_without_a_window_keeps_the_newest_items_under_moderation(
    tmp_path: Path,
) -> None:
    p = await Platform.open(tmp_path / "f.db", clock=VirtualClock(0.0))
    for a in ("a", "b", "c"):
        await p.register_agent(a, name=a)
    await _posts(p, "ab" * 20)
    full = FullVisibilityRanker()
    assert await _ids(p, "c", full, limit=5) == [36, 37, 38, 39, 40]
    for old in range(1, 21):  # removing old items must not turn the feed back in time
        await _moderate(p, old, "remove")
    assert await _ids(p, "c", full, limit=5) == [36, 37, 38, 39, 40]
    await _moderate(p, 39, "remove")
    assert await _ids(p, "c", full, limit=5) == [35, 36, 37, 38, 40]
    await _moderate(p, 38, "shadowban")  # b's items: served to b only
    assert await _ids(p, "c", full, limit=3) == [33, 35, 37]
    assert await _ids(p, "b", full, limit=3) == [37, 38, 40]
    await p.close()


async def test_downranked_items_come_after_every_other_item_whatever_else_is_hidden(
    tmp_path: Path,
) -> None:
    for remove_another in (False, True):
        p = await Platform.open(tmp_path / f"d{remove_another}.db", clock=VirtualClock(0.0))
        for a in ("a", "b", "c"):
            await p.register_agent(a, name=a)
        await _posts(p, "ab" * 5)
        await p.follow("c", "a")
        await p.follow("c", "b")
        await p.flush()
        await _moderate(p, 10, "downrank")
        if remove_another:  # an unrelated removal, outside every feed below
            await _moderate(p, 1, "remove")
        # the three newest items but the downranked one; with room, it comes last
        assert await _ids(p, "c", FullVisibilityRanker(), limit=3) == [7, 8, 9]
        assert await _ids(p, "c", ChronologicalRanker(), limit=3) == [9, 8, 7]
        assert await _ids(p, "c", FullVisibilityRanker(), limit=3, since_t=7.0) == [7, 8, 9]
        assert await _ids(p, "c", FullVisibilityRanker(), limit=5, since_t=7.0) == [7, 8, 9, 10]
        await p.close()


async def test_a_feed_is_filled_past_many_hidden_items(tmp_path: Path) -> None:
    p = await Platform.open(tmp_path / "h.db", clock=VirtualClock(0.0))
    for a in ("a", "b", "c"):
        await p.register_agent(a, name=a)
    await _posts(p, "c" * 20 + "a" * 5)
    await p.follow("b", "a")
    await p.follow("b", "c")
    await p.flush()
    await _moderate(p, 1, "shadowban")  # c's 20 items: more than four feed limits
    full, chrono = FullVisibilityRanker(), ChronologicalRanker()
    # the full feed of a window holding more than the limit is a sample: of a's items for b
    got = await _ids(p, "b", full, limit=2, since_t=0.0)
    assert len(got) == 2 and got == sorted(got) and set(got) <= set(range(21, 26))
    assert await _ids(p, "b", chrono, limit=2) == [25, 24]
    own = await _ids(p, "c", full, limit=25, since_t=0.0)
    assert own == list(range(1, 26))  # c sees its own
    assert await _ids(p, "b", full, limit=10, since_t=0.0) == [21, 22, 23, 24, 25]
    await p.close()


async def test_a_window_larger_than_the_limit_is_shared_out_evenly_under_moderation(
    tmp_path: Path,
) -> None:
    """A round that holds more than the limit, some of it removed: each reader gets a sample
    of the visible items, and the oldest are not favoured (taking the first ``limit`` of a
    moderated sample would be)."""
    p = await Platform.open(tmp_path / "w.db", clock=VirtualClock(0.0))
    readers = [f"r{i:02d}" for i in range(60)]
    for a in ("a", *readers):
        await p.register_agent(a, name=a)
    await _posts(p, "a" * 40)
    for removed in (3, 17, 29, 38):
        await _moderate(p, removed, "remove")
    full = FullVisibilityRanker()
    shown: Counter[int] = Counter()
    for r in readers:
        got = await _ids(p, r, full, limit=8, since_t=0.0, until_t=100.0)
        assert len(got) == 8 and got == sorted(got) and not {3, 17, 29, 38} & set(got)
        shown.update(got)
    older = sum(shown[i] for i in range(1, 21))
    newer = sum(shown[i] for i in range(21, 41))
    assert len(shown) >= 30 and 0.75 <= older / newer <= 1.33
    await p.close()
