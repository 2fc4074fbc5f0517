"""Platform commands: typed errors, derived fields, no trace of rejected commands."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from friendsim.platform import (
    DuplicateAgentError,
    DuplicateFollowError,
    InvalidTextError,
    InvalidTopicError,
    InvalidVoteError,
    NotFollowingError,
    Platform,
    PlatformError,
    SelfFollowError,
    SelfMessageError,
    SelfVoteError,
    UnknownAgentError,
    UnknownMentionError,
    UnknownMessageError,
    UnknownPostError,
    VirtualClock,
)
from friendsim.platform.events import (
    ActionFailed,
    BroadcastSent,
    Followed,
    GuidanceIssued,
    PostCreated,
    VoteCast,
    VoteChanged,
    VoteCleared,
    WindowEnded,
    WindowStarted,
    unicode_problem,
)
from friendsim.vocabulary import Tip


@pytest.fixture
async def plat(tmp_path: Path):
    p = await Platform.open(tmp_path / "p.db", clock=VirtualClock(10.0), max_text=50)
    for a in ("ann", "bob", "cy"):
        await p.register_agent(a, name=a.title(), attributes={"group": a[0]})
    yield p
    await p.close()


async def _table_counts(p: Platform) -> dict[str, int]:
    await p.flush()
    out = {}
    for table in ("events", "agents", "posts", "mentions", "votes", "follows", "dms", "exposures"):
        rows = await p.db.execute_fetchall(f"SELECT count(*) FROM {table}")
        out[table] = rows[0][0]
    return out


async def test_post_comment_root_and_counters(plat: Platform) -> None:
    top = await plat.create_post(
        "ann", text="Hot take", topic="  #Climate_Change ", mentions=["bob", "bob", "cy"]
    )
    assert top.topic == "climate change"
    assert top.mentions == ("bob", "cy")
    assert top.post_id == 1 and top.seq == 4 and top.t == 10.0
    c1 = await plat.create_post("bob", text="agree", topic="climate change", parent_id=top.post_id)
    c2 = await plat.create_post("cy", text="nope", topic="climate change", parent_id=c1.post_id)
    assert (c1.root_id, c2.root_id, c2.parent_id) == (1, 1, 2)
    await plat.vote("bob", 1, 1)
    await plat.vote("cy", 1, -1)
    await plat.flush()
    view = await plat.get_post(1)
    assert (view.likes, view.dislikes, view.replies, view.mentions) == (1, 1, 1, ("bob", "cy"))
    assert (await plat.get_post(2)).replies == 1


async def test_vote_transitions(plat: Platform) -> None:
    await plat.create_post("ann", text="x", topic="t")
    assert isinstance(await plat.vote("bob", 1, 1), VoteCast)
    assert await plat.vote("bob", 1, 1) is None
    changed = await plat.vote("bob", 1, -1)
    assert isinstance(changed, VoteChanged) and (changed.old, changed.value) == (1, -1)
    cleared = await plat.vote("bob", 1, 0)
    assert isinstance(cleared, VoteCleared) and cleared.old == -1
    assert await plat.vote("bob", 1, 0) is None
    await plat.flush()
    view = await plat.get_post(1)
    assert (view.likes, view.dislikes) == (0, 0)
    assert (await plat.db.execute_fetchall("SELECT count(*) FROM votes"))[0][0] == 0


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (lambda p: p.register_agent("ann", name="again"), DuplicateAgentError),
        (lambda p: p.create_post("zed", text="x", topic="t"), UnknownAgentError),
        (lambda p: p.create_post("ann", text="x", topic="t", parent_id=99), UnknownPostError),
        (lambda p: p.create_post("ann", text="x", topic="t", quote_of=99), UnknownPostError),
        (lambda p: p.create_post("ann", text="   ", topic="t"), InvalidTextError),
        (lambda p: p.create_post("ann", text="y" * 51, topic="t"), InvalidTextError),
        (lambda p: p.create_post("ann", text="x", topic=" # "), InvalidTopicError),
        (
            lambda p: p.create_post("ann", text="x", topic="t", mentions=["zed"]),
            UnknownMentionError,
        ),
        (lambda p: p.vote("ann", 1, 1), SelfVoteError),
        (lambda p: p.vote("bob", 1, 2), InvalidVoteError),
        (lambda p: p.vote("bob", 77, 1), UnknownPostError),
        (lambda p: p.vote("zed", 1, 1), UnknownAgentError),
        (lambda p: p.follow("ann", "ann"), SelfFollowError),
        (lambda p: p.follow("ann", "bob"), DuplicateFollowError),
        (lambda p: p.follow("ann", "zed"), UnknownAgentError),
        (lambda p: p.unfollow("bob", "ann"), NotFollowingError),
        (lambda p: p.send_dm("ann", "ann", text="hi"), SelfMessageError),
        (lambda p: p.send_dm("ann", "zed", text="hi"), UnknownAgentError),
        (lambda p: p.send_dm("ann", "bob", text=""), InvalidTextError),
        (lambda p: p.send_dm("ann", "bob", text="hi", reply_to=42), UnknownMessageError),
        (lambda p: p.send_dm("cy", "bob", text="hi", reply_to=1), UnknownMessageError),
        (lambda p: p.send_dm("ann", "bob", text="hi", mentions=["zed"]), UnknownMentionError),
        (lambda p: p.create_post("ann", text="x\ud800", topic="t"), InvalidTextError),
        (lambda p: p.create_post("ann", text="x", topic="t\udfff"), InvalidTextError),
        (lambda p: p.create_post("ann", text="x", topic="t", tone="\ud800"), InvalidTextError),
        (lambda p: p.send_dm("ann", "bob", text="x\ud83d\ude00"), InvalidTextError),
        (lambda p: p.register_agent("dee", name="D\ud800"), InvalidTextError),
        (
            lambda p: p.register_agent("dee", name="D", attributes={"g\ud800": "x"}),
            InvalidTextError,
        ),
        (
            lambda p: p.record(
                GuidanceIssued(t=0, actor="coach", agent="bob", window=1, tips=(_tip("\ud800"),))
            ),
            InvalidTextError,
        ),
        (
            lambda p: p.record(BroadcastSent(t=0, window=1, sender="platform", text="\ud800")),
            InvalidTextError,
        ),
    ],
)
async def test_typed_errors_change_nothing(plat: Platform, command, error) -> None:
    await plat.create_post("ann", text="base", topic="t")
    await plat.follow("ann", "bob")
    await plat.send_dm("ann", "bob", text="hello")
    before_seq = plat.last_seq
    before = await _table_counts(plat)
    with pytest.raises(error) as info:
        await command(plat)
    assert isinstance(info.value, PlatformError) and info.value.code
    assert str(info.value)
    assert plat.last_seq == before_seq
    assert await _table_counts(plat) == before
    # the next valid command takes exactly the next seq: nothing was consumed
    ok = await plat.follow("bob", "cy")
    assert ok.seq == before_seq + 1


def _tip(text: str) -> Tip:
    return Tip(
        action="POST", target=None, topic="t", invite_mention=False, tone="neutral", text=text
    )


async def test_text_utf8_cannot_encode_is_named_and_the_platform_stays_open(
    plat: Platform,
) -> None:
    """A lone surrogate used to reach the store, whose commit then failed and closed the
    platform ("commit failed"); now the command is refused naming the field, and the platform
    goes on committing."""
    with pytest.raises(InvalidTextError) as err:
        await plat.create_post("ann", text="ok \ud800", topic="t")
    assert err.value.code == "invalid_text"
    assert str(err.value) == (
        "post_created by 'ann': text: not valid Unicode (lone surrogate \\ud800 at character 4); "
        "the log (UTF-8) cannot store it"
    )
    with pytest.raises(InvalidTextError, match=r"tips\[0\]\.text: not valid Unicode"):
        await plat.record(
            GuidanceIssued(t=0, actor="coach", agent="bob", window=1, tips=(_tip("\udc00"),))
        )
    post = await plat.create_post("ann", text="ok", topic="t")
    assert await plat.flush() == post.seq


async def test_a_failure_s_text_is_recorded_with_u_fffd(plat: Platform) -> None:
    """An ``ActionFailed`` quotes what went wrong (a refused text, a plug-in's error message):
    its text is stored with U+FFFD for each lone surrogate (a pair: its character) rather than
    refused, so a failure's record never fails."""
    e = await plat.record(
        ActionFailed(
            t=0,
            actor="ann",
            stage="s\ud800",
            reason="r\udfff",
            detail="d \ud83d\ude00 \ud800",
            action={"text\ud800": ("x\udc00", 1, None), "n": 2},
        )
    )
    assert (e.stage, e.reason, e.detail) == ("s\ufffd", "r\ufffd", "d \U0001f600 \ufffd")
    assert e.action == {"text\ufffd": ("x\ufffd", 1, None), "n": 2}
    await plat.flush()
    stored = [x async for x in plat.events(e.seq)]
    assert stored == [e]
    same = await plat.record(ActionFailed(t=0, actor="ann", stage="plan", reason="bad_json"))
    assert (same.stage, same.reason, same.detail, same.action) == ("plan", "bad_json", "", None)


async def test_text_limit_is_named(plat: Platform) -> None:
    with pytest.raises(InvalidTextError, match="limit is 50"):
        await plat.create_post("ann", text="z" * 51, topic="t")


async def test_quote_with_empty_text(plat: Platform) -> None:
    await plat.create_post("ann", text="orig", topic="t")
    q = await plat.create_post("bob", text="", topic="t", quote_of=1)
    assert isinstance(q, PostCreated) and q.quote_of == 1


async def test_unfollow_then_refollow_and_followees(plat: Platform) -> None:
    assert isinstance(await plat.follow("ann", "bob"), Followed)
    await plat.unfollow("ann", "bob")
    await plat.follow("ann", "bob")
    await plat.follow("ann", "cy")
    await plat.follow("bob", "cy")
    await plat.flush()
    assert await plat.followees("ann") == {"bob", "cy"}
    assert await plat.followers("cy") == {"ann", "bob"}


async def test_record_runtime_events_and_rejects_others(plat: Platform) -> None:
    plat.clock.advance_to(20.0)
    w = await plat.record(WindowStarted(t=0.0, window=1, t_end=30.0))
    assert (w.seq, w.t) == (plat.last_seq, 20.0)
    tip = Tip(action="POST", target=None, topic="t", invite_mention=False, tone="neutral", text="x")
    g = await plat.record(GuidanceIssued(t=0, actor="coach", agent="bob", window=1, tips=(tip,)))
    assert g.actor == "coach"
    with pytest.raises(UnknownAgentError):
        await plat.record(GuidanceIssued(t=0, actor="coach", agent="zed", window=1, tips=()))
    await plat.record(ActionFailed(t=0, actor="ann", stage="plan", reason="bad_json"))
    await plat.record(WindowEnded(t=0, window=1))
    with pytest.raises(ValueError, match="record"):
        await plat.record(Followed(t=0, actor="ann", target="bob"))
    await plat.flush()
    kinds = [e.kind async for e in plat.events(4)]
    assert kinds == ["window_started", "guidance_issued", "action_failed", "window_ended"]


async def test_reads_dms_and_posts_between(plat: Platform) -> None:
    plat.clock.advance_to(100.0)
    await plat.create_post("ann", text="a", topic="t")
    d1 = await plat.send_dm("ann", "bob", text="hi", topic="Food", mentions=["cy"])
    plat.clock.advance_to(200.0)
    await plat.create_post("bob", text="b", topic="t")
    await plat.send_dm("bob", "ann", text="re", reply_to=d1.dm_id)
    await plat.flush()
    assert [p.post_id for p in await plat.posts_between(100.0, 200.0)] == [1]
    assert [p.post_id for p in await plat.posts_between(0.0, 201.0)] == [1, 2]
    got = await plat.dms_to("bob", 0.0, 1000.0)
    assert got == [d1]
    assert (await plat.dms_to("ann", 0, 1000))[0].reply_to == d1.dm_id


async def test_dms_between_is_every_readers_dms_to(plat: Platform) -> None:
    """One read of a window gives each recipient what its own :meth:`dms_to` gives (seq order,
    the window's edges), and only committed DMs."""
    plat.clock.advance_to(10.0)
    await plat.send_dm("ann", "bob", text="one", topic="t")
    await plat.send_dm("cy", "bob", text="two", topic="t")
    await plat.send_dm("bob", "ann", text="three", topic="t")
    plat.clock.advance_to(50.0)
    await plat.send_dm("ann", "cy", text="at the edge", topic="t")
    await plat.flush()
    plat.clock.advance_to(60.0)
    await plat.send_dm("cy", "ann", text="not committed", topic="t")
    for since, until in ((0.0, 50.0), (0.0, 51.0), (10.0, 10.5), (11.0, 50.0)):
        by = await plat.dms_between(since, until)
        for agent in ("ann", "bob", "cy"):
            assert by.get(agent, []) == await plat.dms_to(agent, since, until)
    by = await plat.dms_between(0.0, 100.0)
    assert {k: [d.text for d in v] for k, v in by.items()} == {
        "bob": ["one", "two"],
        "ann": ["three"],
        "cy": ["at the edge"],
    }


async def test_dms_since_is_each_readers_dms_to(plat: Platform) -> None:
    """One read for agents that wake together, each with its own last wake, gives each what
    its own :meth:`dms_to` gives (seq order, both edges of its interval, committed DMs only);
    agents with none are left out, and an unknown reader is named."""
    sends = [
        (10.0, "ann", "bob", "one"),
        (10.0, "cy", "bob", "two"),
        (20.0, "bob", "ann", "three"),
        (30.0, "ann", "cy", "four"),
        (40.0, "cy", "bob", "five"),
        (50.0, "bob", "cy", "six"),
    ]
    for t, sender, recipient, text in sends:
        plat.clock.advance_to(t)
        await plat.send_dm(sender, recipient, text=text, topic="t")
    await plat.flush()
    plat.clock.advance_to(60.0)
    await plat.send_dm("cy", "ann", text="not committed", topic="t")
    edges = (0.0, 10.0, 10.5, 20.0, 30.0, 40.0, 50.0, 51.0)
    for until in (30.0, 50.0, 100.0):
        for a_since in edges:
            for b_since in edges:
                since = {"ann": a_since, "bob": b_since, "cy": 0.0}
                got = await plat.dms_since(since, until)
                for agent, t in since.items():
                    assert got.get(agent, []) == await plat.dms_to(agent, t, until)
                assert all(got[a] for a in got)
    got = await plat.dms_since({"bob": 15.0}, 100.0)
    assert {k: [d.text for d in v] for k, v in got.items()} == {"bob": ["five"]}
    assert await plat.dms_since({}, 100.0) == {}
    with pytest.raises(UnknownAgentError, match="'zed'"):
        await plat.dms_since({"bob": 0.0, "zed": 0.0}, 100.0)


async def test_reopen_resumes_seq_ids_and_clock(tmp_path: Path) -> None:
    p = await Platform.open(tmp_path / "r.db", clock=VirtualClock(5.0))
    await p.register_agent("a", name="A")
    await p.register_agent("b", name="B")
    await p.create_post("a", text="x", topic="t")
    await p.follow("a", "b")
    await p.close()
    q = await Platform.open(tmp_path / "r.db")
    try:
        assert q.last_seq == q.committed_seq == 4 and q.clock.now() == 5.0
        e = await q.create_post("b", text="y", topic="t", parent_id=1)
        assert (e.seq, e.post_id, e.root_id) == (5, 2, 1)
        with pytest.raises(DuplicateFollowError):
            await q.follow("a", "b")
        with pytest.raises(SelfVoteError):
            await q.vote("a", 1, 1)
    finally:
        await q.close()


async def test_closed_platform_refuses(tmp_path: Path) -> None:
    p = await Platform.open(tmp_path / "c.db")
    await p.register_agent("a", name="A")
    await p.close()
    with pytest.raises(PlatformError, match="closed"):
        await p.register_agent("b", name="B")


async def test_failed_commit_breaks_platform_and_keeps_disk_consistent(tmp_path: Path) -> None:
    p = await Platform.open(tmp_path / "broken.db")
    await p.register_agent("a", name="A")
    await p.flush()
    # a row the in-memory validation cannot know about: the commit of the next batch must fail
    await p.register_agent("b", name="B")
    await p._store.writer.execute(  # simulate an outside writer racing the platform
        "INSERT INTO agents(agent_id, name, attributes, t, seq) VALUES ('c', 'C', '{}', 0, 2)"
    )
    with pytest.raises(PlatformError, match=r"commit of events 2\.\.2 failed"):
        await p.flush()
    with pytest.raises(PlatformError, match="broken"):
        await p.register_agent("d", name="D")
    await p.close()
    q = await Platform.open(tmp_path / "broken.db")
    try:
        assert q.committed_seq == 1  # the failed batch left nothing in the log
        kinds = [e.actor async for e in q.events()]
        assert kinds == ["a"]
    finally:
        await q.close()


async def test_odd_arguments_are_typed_errors(plat: Platform) -> None:
    await plat.create_post("ann", text="x", topic="t")
    with pytest.raises(UnknownPostError):
        await plat.vote("bob", True, 1)  # type: ignore[arg-type]
    with pytest.raises(UnknownMentionError, match="list of agent ids"):
        await plat.create_post("ann", text="x", topic="t", mentions="bob")
    with pytest.raises(PlatformError, match="reserved"):
        await plat.register_agent("coach", name="Coach")
    assert plat.last_seq == 4


async def test_cast_votes_equals_one_vote_at_a_time_and_stops_at_a_rejection(
    tmp_path: Path,
) -> None:
    logs = []
    for batched in (False, True):
        p = await Platform.open(tmp_path / f"v{batched}.db", clock=VirtualClock(10.0))
        for a in ("ann", "bob"):
            await p.register_agent(a, name=a)
        ids = [(await p.create_post("bob", text=f"p{k}", topic="t")).post_id for k in range(4)]
        own = (await p.create_post("ann", text="mine", topic="t")).post_id
        await p.vote("ann", ids[1], 1)
        wanted = [(ids[0], 1), (ids[1], -1), (ids[2], 1), (own, 1), (ids[3], -1)]
        if batched:
            done, error = await p.cast_votes("ann", wanted)
            assert isinstance(error, SelfVoteError) and len(done) == 3
            assert all(e is not None for e in done)
            done, error = await p.cast_votes("ann", [(ids[2], 1), (ids[3], -1), (999, 1)])
            assert done[0] is None and isinstance(done[1], VoteCast)  # already +1: no event
            assert isinstance(error, UnknownPostError)
            assert (await p.cast_votes("ann", [])) == ([], None)
        else:
            for post_id, value in wanted[:3]:
                assert await p.vote("ann", post_id, value) is not None
            with pytest.raises(SelfVoteError):
                await p.vote("ann", own, 1)
            assert await p.vote("ann", ids[2], 1) is None
            await p.vote("ann", ids[3], -1)
            with pytest.raises(UnknownPostError):
                await p.vote("ann", 999, 1)
        await p.flush()
        logs.append(await p.db.execute_fetchall("SELECT * FROM events ORDER BY seq"))
        logs.append(await p.db.execute_fetchall("SELECT * FROM votes ORDER BY voter, post_id"))
        logs.append(await p.db.execute_fetchall("SELECT * FROM posts ORDER BY post_id"))
        await p.close()
    assert logs[:3] == logs[3:]
    kinds = [row[2] for row in logs[0]]
    assert kinds.count("vote_cast") == 4 and kinds.count("vote_changed") == 1


async def test_flush_soon_commits_in_the_background(tmp_path: Path) -> None:
    import asyncio

    p = await Platform.open(tmp_path / "soon.db", clock=VirtualClock(0.0))
    try:
        await p.register_agent("a", name="A")
        await p.register_agent("b", name="B")
        await p.flush()
        before = p.committed_seq
        post = await p.create_post("a", text="hello", topic="climate")
        assert p.pending == 1 and p.committed_seq == before
        p.flush_soon()
        assert p.committed_seq == before  # nothing waited for yet
        for _ in range(200):
            if p.committed_seq == post.seq:
                break
            await asyncio.sleep(0.01)
        assert p.committed_seq == post.seq and p.pending == 0
        rows = await p.db.execute_fetchall("SELECT post_id FROM posts")
        assert [r[0] for r in rows] == [post.post_id]
        p.flush_soon()  # nothing queued: no flush started
        assert p.pending == 0
    finally:
        await p.close()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("plain", None),
        (("a", ["b", {"c": "d"}], 3, 2.5, None, True), None),
        (types.MappingProxyType({"k": ("v", "w")}), None),
        ({1: "one", 2: ("two",)}, None),
        (
            {"k": ["ok", ("deep", "x\ud800")]},
            "at.k[1][1]: not valid Unicode (lone surrogate \\ud800 at character 2)",
        ),
        (
            types.MappingProxyType({"k\udfff": 1}),
            "at.<key>: not valid Unicode (lone surrogate \\udfff at character 2)",
        ),
        (
            {1: "ok", 2: ("x", "\udc80")},
            "at.2[1]: not valid Unicode (lone surrogate \\udc80 at character 1)",
        ),
        (
            (object(), "fine", "y\ud800"),
            "at[2]: not valid Unicode (lone surrogate \\ud800 at character 2)",
        ),
        (
            (
                Tip(
                    action="post",
                    target=None,
                    topic="t",
                    invite_mention=False,
                    tone="warm",
                    text="a\ud800",
                ),
            ),
            "at[0].text: not valid Unicode (lone surrogate \\ud800 at character 2)",
        ),
    ],
)
def test_unicode_problem_names_the_first_bad_string_in_any_container(
    value: object, problem: str | None
) -> None:
    """Containers are encoded whole first (orjson refuses a surrogate anywhere); a refusal,
    whatever its cause (a surrogate, an int key, an object orjson cannot encode), walks the
    value to name the bad string's place, so no container hides one and none is refused
    without one."""
    assert unicode_problem(value, "at") == problem
