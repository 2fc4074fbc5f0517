"""Units of the live view and the report's new sections: tip adherence from a log, the pause
gate, the read-only log reader next to a live writer, optional report sections."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from serve_support import tip

from friendsim.analysis.coaching import tip_adherence
from friendsim.platform import Platform, VirtualClock
from friendsim.platform.events import (
    DirectMessageSent,
    GuidanceIssued,
    PostCreated,
    VoteCast,
    WindowEnded,
    WindowStarted,
)
from friendsim.report.run_sections import OPTIONAL_SECTIONS, optional_sections
from friendsim.runtime.control import PauseGate
from friendsim.serve.logfile import LogFile


def test_tip_adherence_judges_each_tip_against_the_next_window() -> None:
    events = [
        WindowStarted(seq=1, t=0, window=1),
        PostCreated(seq=2, t=1, actor="b", post_id=1, text="x", topic="t"),
        WindowEnded(seq=3, t=2, window=1),
        GuidanceIssued(
            seq=4,
            t=2,
            actor="coach",
            agent="a",
            window=1,
            tips=(
                tip("COM", "b"),
                tip("DM", "c"),
                tip("POST", None),
                tip("LIKE", "b"),
                tip("NOT", None),
            ),
        ),
        WindowStarted(seq=5, t=3, window=2),
        PostCreated(seq=6, t=4, actor="a", post_id=2, text="y", topic="t", parent_id=1, root_id=1),
        DirectMessageSent(seq=7, t=4, actor="a", dm_id=1, recipient="b", text="hi"),  # not c
        VoteCast(seq=8, t=5, actor="a", post_id=1, author="b", value=1),
        WindowEnded(seq=9, t=6, window=2),
        GuidanceIssued(seq=10, t=6, actor="coach", agent="a", window=2, tips=(tip("POST", None),)),
    ]
    out = tip_adherence(events)
    followed = [(t["action"], t["followed"]) for t in out["tips"]]
    assert followed == [
        ("COM", True),  # commented on b's post
        ("DM", False),  # DMed b, not c
        ("POST", False),  # only a comment, no top-level post
        ("LIKE", True),
        ("NOT", False),  # it did create content
        ("POST", None),  # window 3 never ran: pending
    ]
    assert out["overall"] == {"issued": 6, "judged": 5, "followed": 2, "rate": 0.4}
    assert out["by_action"]["POST"] == {"issued": 2, "judged": 1, "followed": 0, "rate": 0.0}
    assert out["by_window"][1]["followed"] == 2 and out["by_window"][2]["judged"] == 0


async def test_pause_gate_holds_steps_and_yields_to_stop() -> None:
    gate = PauseGate()
    await asyncio.wait_for(gate.wait(1), 1)  # open: passes at once
    gate.pause()
    held = asyncio.create_task(gate.wait(2))
    await asyncio.sleep(0.05)
    assert not held.done() and gate.state()["waiting_before"] == 2
    gate.step()  # one window, then closed again
    await asyncio.wait_for(held, 1)
    nxt = asyncio.create_task(gate.wait(3))
    await asyncio.sleep(0.05)
    assert not nxt.done() and gate.paused
    gate.resume()
    await asyncio.wait_for(nxt, 1)
    await asyncio.wait_for(gate.wait(4), 1)
    gate.pause()
    stop = asyncio.Event()
    stopped = asyncio.create_task(gate.wait(5, stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(stopped, 1)  # a stop request is never blocked by a pause


async def test_log_reader_sees_live_commits_and_creates_no_files(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    platform = await Platform.open(db, clock=VirtualClock())
    try:
        await platform.register_agent("a", name="A")
        await platform.flush()
        log = LogFile(db)
        assert [seq for seq, _ in await asyncio.to_thread(log.read, 1, 100)] == [1]
        await platform.register_agent("b", name="B")
        await platform.flush()
        rows = await asyncio.to_thread(log.read, 1, 100)
        assert [seq for seq, _ in rows] == [1, 2]
        assert '"kind":"agent_registered"' in rows[1][1]
    finally:
        await platform.close()
    assert _names(tmp_path) == ["events.db"]  # the writer cleaned up
    log = LogFile(db)
    assert log.last_seq() == 2 and len(log.read(2, 10)) == 1
    assert _names(tmp_path) == ["events.db"]  # and reading created nothing
    assert LogFile(tmp_path / "absent.db").read(1, 10) == []


def _names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_optional_sections_appear_only_with_their_data() -> None:
    assert optional_sections({"rewards": {}}) == []
    analysis = {"cascades": [{"item": 1, "size": 3, "depth": 2, "note": "<script>x</script>"}]}
    sections = optional_sections(analysis)
    assert [s[0] for s in sections] == ["cascades"]
    html = sections[0][2]
    assert "<th>depth</th>" in html and "&lt;script&gt;" in html and "<script>" not in html
    assert {s.id for s in OPTIONAL_SECTIONS} == {
        "interventions",
        "moderation",
        "surveys",
        "cascades",
    }


@pytest.mark.parametrize("raw", ["-1", "x"])
def test_bad_from_is_rejected(raw: str) -> None:
    from starlette.requests import Request

    from friendsim.serve.app import _from_seq

    req = Request({"type": "http", "query_string": f"from={raw}".encode(), "headers": []})
    with pytest.raises(ValueError, match="from="):
        _from_seq(req)


async def test_rows_of_a_window_the_page_let_go_of(tmp_path: Path) -> None:
    """``api/rows``'s reader: the newest shown rows of a seq range, newest first, with each
    post's current votes (a cleared vote no longer counts) and each reply's parent's author; an
    agent's rows are its actions and the tips it was sent."""
    import re

    from friendsim.serve.rows import TIMELINE_KINDS, timeline

    db = tmp_path / "events.db"
    platform = await Platform.open(db, clock=VirtualClock())
    try:
        for a in ("a0", "a1", "a2"):
            await platform.register_agent(a, name=a.upper())
        await platform.record(WindowStarted(t=0.0, window=1))
        post = await platform.create_post("a0", text="first", topic="t")
        reply = await platform.create_post("a1", text="re", topic="t", parent_id=post.post_id)
        await platform.vote("a1", post.post_id, 1)
        await platform.vote("a2", post.post_id, -1)
        await platform.vote("a2", post.post_id, 0)
        await platform.vote("a0", reply.post_id, -1)
        await platform.record(WindowEnded(t=10.0, window=1))
        await platform.record(
            GuidanceIssued(t=10.0, actor="coach", agent="a1", window=1, tips=(tip("POST", None),))
        )
        await platform.flush()
    finally:
        await platform.close()
    log = LogFile(db)
    out = await asyncio.to_thread(timeline, log, lo=4, hi=log.last_seq() - 1, limit=2)
    assert [r["kind"] for r in out["rows"]] == ["window_ended", "post_created"]
    assert out["rows"][1]["payload"]["post_id"] == reply.post_id
    assert out["votes"] == {str(reply.post_id): [0, 1]}
    assert out["authors"] == {str(post.post_id): "a0"}
    out = await asyncio.to_thread(timeline, log, lo=4)
    assert out["votes"][str(post.post_id)] == [1, 0]  # a2's vote was cleared
    assert [r["kind"] for r in out["rows"]][:1] == ["guidance_issued"]
    mine = await asyncio.to_thread(timeline, log, agent="a1")
    assert [r["kind"] for r in mine["rows"]] == ["guidance_issued", "post_created"]
    # the page's timeline shows exactly these kinds (app.js SHOWN), and only these are kept
    app = (Path(__file__).parent.parent / "friendsim/serve/static/app.js").read_text()
    shown = re.search(r"const SHOWN = new Set\(\[(.*?)\]\)", app, re.S)
    assert shown and sorted(re.findall(r'"(\w+)"', shown.group(1))) == sorted(TIMELINE_KINDS)
