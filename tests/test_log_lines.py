"""A log's JSON Lines — ``friendsim log export`` and the live view's SSE ``data`` — are put
together around the stored payload text (:func:`~friendsim.platform.events.row_to_json`) instead
of decoding every row into an event and encoding it again. The bytes must stay exactly the
decode-and-encode path's (``event_to_json(event_from_row(row))``): on a real log holding what
agents write (quotes, ``</script>``, newlines, non-ASCII, line separators), every row takes the
fast path and gives those bytes, through export and over HTTP; a hand-edited row gives them (or
the same error) through the slow path."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_support import background, run_cli

from friendsim.platform import FullVisibilityRanker, Platform, VirtualClock
from friendsim.platform import events as events_module
from friendsim.platform.events import (
    ActionFailed,
    GuidanceIssued,
    InterventionApplied,
    ModerationDecided,
    SurveyAnswered,
    WindowEnded,
    WindowStarted,
    event_from_row,
    event_to_json,
    row_to_json,
)
from friendsim.vocabulary import Tip

TRICKY = (
    'She said "no" \\ and left </script><script>window.__pwned = 1</script>',
    "line one\nline two\r\nthree\tfour \b\f \x00\x01\x1f\x7f end",
    "café naïve Ελληνικά 中文 🌍🔥 \u202eRTL\u202c \u2028line\u2029para \u00a0nbsp \ufeffbom",
    "looks escaped: \\u00e9 \\n \\ud800 and a slash / and 'single' <img src=x onerror=alert(1)>",
    "numbers in text: 1.5e-07, 3.0 and -0.0",
)

ODD = 'ü"<b>\n'
"""An agent id a foreign writer could choose (the platform checks only that it is known)."""

Row = tuple[Any, ...]


async def _tricky_log(db: Path) -> None:
    """A log of every kind of row that carries agent or coach text, each holding TRICKY text."""
    clock = VirtualClock()
    platform = await Platform.open(db, clock=clock)
    try:
        attributes = {"Zeta": 1, "ähnlich": "x", "alpha": [1, "b", None], "🌍": {"é": True}}
        for i, text in enumerate(TRICKY):
            await platform.register_agent(f"a{i}", name=text, attributes=attributes)
        await platform.register_agent('ü"<b>\n', name="odd id")
        await platform.record(WindowStarted(t=0.0, window=1, t_end=3600.000001))
        posts = []
        for i, text in enumerate(TRICKY):
            clock.advance(0.1)
            post = await platform.create_post(
                f"a{i}", text=text, topic="Climate_Change", mentions=["a0"], tone="critical"
            )
            posts.append(post.post_id)
            await platform.create_post('ü"<b>\n', text=text, topic="x", parent_id=post.post_id)
            await platform.send_dm(f"a{i}", ODD, text=text, topic="dm")
        await platform.vote("a1", posts[0], 1)
        await platform.vote("a1", posts[0], -1)
        await platform.vote("a1", posts[0], 0)
        await platform.follow("a2", "a3")
        await platform.unfollow("a2", "a3")
        await platform.serve_feed("a4", FullVisibilityRanker(), limit=20)
        tips = tuple(
            Tip(action="COM", target="a1", topic="x", invite_mention=True, tone="neutral", text=t)
            for t in TRICKY
        )
        await platform.record(GuidanceIssued(t=0.0, actor="coach", agent="a0", window=1, tips=tips))
        await platform.record(
            ActionFailed(
                t=0.0,
                actor="a3",
                window=1,
                stage="generate",
                reason="bad_json",
                detail=TRICKY[1],
                action={"type": "POST", "text": TRICKY[0], "score": 1e-07},
            )
        )
        params = {"rate": 1e-05, "big": 1e16, "tiny": 5e-324, "x": 0.1, "note": TRICKY[2]}
        await platform.record(
            InterventionApplied(t=0.0, window=1, intervention="broadcast", params=params)
        )
        await platform.record(
            ModerationDecided(
                t=0.0,
                window=1,
                moderator="m",
                action="label",
                post_id=posts[1],
                author="a1",
                label=TRICKY[3],
                reason=TRICKY[4],
                score=0.123456789012345678,
            )
        )
        await platform.record(
            SurveyAnswered(t=0.0, actor="a2", survey="s", window=1, answers={"q1": 3, "ö": -2})
        )
        await platform.record(WindowEnded(t=0.0, window=1))
        await platform.flush()
    finally:
        await platform.close()


@pytest.fixture(scope="module")
def tricky_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("lines") / "run"
    run.mkdir()
    asyncio.run(_tricky_log(run / "events.db"))
    return run


def _rows(run: Path) -> list[Row]:
    con = sqlite3.connect(run / "events.db")
    try:
        return con.execute(
            "SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"
        ).fetchall()
    finally:
        con.close()


def _old(row: Row) -> str:
    """The line as it was written before the fast path: the event decoded and encoded again."""
    return event_to_json(event_from_row(*row))


def _outcome(build: Callable[[], str]) -> tuple[str, str]:
    try:
        return ("line", build())
    except Exception as exc:  # the same error, of the same type, is what is compared
        return (type(exc).__name__, str(exc))


def test_every_row_of_a_real_log_takes_the_fast_path_with_the_old_bytes(
    tricky_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _rows(tricky_run)
    old = [_old(r) for r in rows]
    kinds = {r[2] for r in rows}
    assert kinds >= {
        "agent_registered",
        "post_created",
        "dm_sent",
        "vote_cast",
        "vote_changed",
        "vote_cleared",
        "followed",
        "unfollowed",
        "feed_served",
        "guidance_issued",
        "action_failed",
        "intervention_applied",
        "moderation_decided",
        "survey_answered",
        "window_started",
        "window_ended",
    }
    written = "".join(old)
    assert all(json.dumps(text, ensure_ascii=False)[1:-1] in written for text in TRICKY)
    slow: list[int] = []
    decode = events_module.event_from_row

    def counted(*row: Any) -> Any:
        slow.append(row[0])
        return decode(*row)

    monkeypatch.setattr(events_module, "event_from_row", counted)
    assert [row_to_json(*r) for r in rows] == old
    assert slow == []  # every row a run wrote is built around its stored payload


def _edit(payload: str, **change: Any) -> str:
    data = json.loads(payload)
    data.update(change)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


EDITS: dict[str, Callable[[Row], Row]] = {
    "spaces": lambda r: (*r[:4], json.dumps(json.loads(r[4]), sort_keys=True)),
    "keys unsorted": lambda r: (*r[:4], json.dumps(dict(reversed(json.loads(r[4]).items())))),
    "ascii escapes": lambda r: (
        *r[:4],
        json.dumps(json.loads(r[4]), separators=(",", ":"), sort_keys=True, ensure_ascii=True),
    ),
    "newline between keys": lambda r: (*r[:4], r[4].replace(",", ",\n", 1)),
    "v true": lambda r: (*r[:4], _edit(r[4], v=True)),
    "v 1.0": lambda r: (*r[:4], _edit(r[4], v=1.0)),
    "v 2": lambda r: (*r[:4], _edit(r[4], v=2)),
    "field missing": lambda r: (*r[:4], r[4].replace('"tone":"critical",', "")),
    "unknown field": lambda r: (*r[:4], _edit(r[4], zz=1)),
    "key twice": lambda r: (*r[:4], r[4][:-1] + ',"text":"other"}'),
    "lone surrogate": lambda r: (*r[:4], r[4].replace('"text":"', '"text":"\\ud800', 1)),
    "post_id beyond 64 bits": lambda r: (*r[:4], _edit(r[4], post_id=2**70)),
    "post_id a float": lambda r: (*r[:4], _edit(r[4], post_id=1e-07)),
    "post_id spelled 1e-7": lambda r: (
        *r[:4],
        r[4].replace('"post_id":', '"post_id":1e-7,"p":', 1),
    ),
    "NaN": lambda r: (*r[:4], r[4].replace('"post_id":', '"post_id":NaN,"p":', 1)),
    "not JSON": lambda r: (*r[:4], r[4][:-1]),
    "not an object": lambda r: (*r[:4], "[1]"),
    "unknown kind": lambda r: (r[0], r[1], "post_deleted", r[3], r[4]),
    "t text": lambda r: (r[0], "soon", *r[2:]),
    "t infinite": lambda r: (r[0], math.inf, *r[2:]),
    "t an integer": lambda r: (r[0], 5, *r[2:]),
    "actor a number": lambda r: (r[0], r[1], r[2], 7, r[4]),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_a_hand_edited_post_gives_the_old_line_or_the_old_error(
    tricky_run: Path, name: str
) -> None:
    post = next(
        r
        for r in _rows(tricky_run)
        if r[2] == "post_created" and "🌍" in r[4] and "critical" in r[4]
    )
    edited = EDITS[name](post)
    assert edited != post
    assert _outcome(lambda: row_to_json(*edited)) == _outcome(lambda: _old(edited))


@pytest.mark.parametrize(
    "tip",
    [
        {"tone": "angry"},
        {"invite_mention": 1},
        {"extra": 1},
        {"text": None},
    ],
)
def test_a_guidance_with_a_bad_tip_is_the_old_error(tricky_run: Path, tip: dict[str, Any]) -> None:
    row = next(r for r in _rows(tricky_run) if r[2] == "guidance_issued")
    data = json.loads(row[4])
    data["tips"][1].update(tip)
    edited = (*row[:4], json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True))
    got = _outcome(lambda: row_to_json(*edited))
    assert got[0] == "EventDecodeError" and got == _outcome(lambda: _old(edited))


@pytest.mark.slow
def test_export_and_sse_bytes_are_the_old_lines(tricky_run: Path, tmp_path: Path) -> None:
    rows = _rows(tricky_run)
    old = [_old(r) for r in rows]
    exported = tmp_path / "export.jsonl"
    proc = run_cli("log", "export", str(tricky_run), str(exported))
    assert proc.returncode == 0, proc.stderr
    assert exported.read_bytes() == "".join(line + "\n" for line in old).encode("utf-8")
    expected = b"retry: 1000\n\n" + b"".join(
        b"id: %d\ndata: %s\n\n" % (r[0], line.encode("utf-8"))
        for r, line in zip(rows, old, strict=True)
    )
    last = b"id: %d\n" % rows[-1][0]
    with background("serve", str(tricky_run), "--port", "0") as (_, url):
        body = b""
        with httpx.stream("GET", f"{url}events/stream?from=0", timeout=60) as r:
            for chunk in r.iter_raw():
                body += chunk
                if last in body and body.endswith(b"\n\n"):
                    break
    assert body == expected


def _with_lone_surrogate(tricky_run: Path, tmp_path: Path) -> tuple[Path, int]:
    """A copy of the tricky run whose post (the one holding every tricky text) has the JSON
    escape ``\\ud800`` (a lone surrogate) put before its text, as a hand edit or a foreign tool
    could; returns the copy and the post's seq."""
    run = tmp_path / "edited"
    run.mkdir()
    shutil.copyfile(tricky_run / "events.db", run / "events.db")
    con = sqlite3.connect(run / "events.db")
    try:
        seq, payload = next(
            (r[0], r[4])
            for r in _rows(run)
            if r[2] == "post_created" and "🌍" in r[4] and "critical" in r[4]
        )
        edited = payload.replace('"text":"', '"text":"\\ud800', 1)
        assert edited != payload and edited.count("\\ud800") == 1 + payload.count("\\ud800")
        con.execute("UPDATE events SET payload = ? WHERE seq = ?", (edited, seq))
        con.commit()
    finally:
        con.close()
    return run, seq


def _stream(url: str, last: int) -> bytes:
    """The raw bytes of the live view's per-row stream from the first row to ``last``."""
    end = b"id: %d\n" % last
    body = b""
    with httpx.stream("GET", f"{url}events/stream?from=0", timeout=60) as r:
        for chunk in r.iter_raw():
            body += chunk
            if end in body and body.endswith(b"\n\n"):
                break
    return body


@pytest.mark.slow
def test_export_writes_a_lone_surrogate_row_as_the_stream_sends_it(
    tricky_run: Path, tmp_path: Path
) -> None:
    """``log export`` failed on a row whose payload spells a lone surrogate (exit 2, "surrogates
    not allowed"): its line decodes to text UTF-8 cannot encode. It writes that row's line as
    the live view's stream sends it, ``\\u``-escaped (JSON that decodes to the surrogate), and
    every other line as before."""
    run, seq = _with_lone_surrogate(tricky_run, tmp_path)
    before = tmp_path / "before.jsonl"
    assert run_cli("log", "export", str(tricky_run), str(before)).returncode == 0
    after = tmp_path / "after.jsonl"
    proc = run_cli("log", "export", str(run), str(after))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    old_lines = before.read_bytes().split(b"\n")
    new_lines = after.read_bytes().split(b"\n")
    assert len(new_lines) == len(old_lines) > seq and new_lines[-1] == b""
    assert [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b] == [
        seq - 1
    ]
    line = new_lines[seq - 1]
    assert line.isascii() and b"\\ud800" in line
    value = json.loads(line)
    assert value["payload"]["text"].startswith("\ud800")
    assert value == json.loads(_old(next(r for r in _rows(run) if r[0] == seq)))
    rows = _rows(run)
    with background("serve", str(run), "--port", "0") as (_, url):
        body = _stream(url, rows[-1][0])
    assert b"id: %d\ndata: %s\n\n" % (seq, line) in body
    assert body == b"retry: 1000\n\n" + b"".join(
        b"id: %d\ndata: %s\n\n" % (r[0], exported)
        for r, exported in zip(rows, new_lines[:-1], strict=True)
    )


def test_parquet_export_keeps_a_lone_surrogate_as_stored(tricky_run: Path, tmp_path: Path) -> None:
    """The Parquet events file holds each payload as stored: a lone surrogate stays the escape
    the row spells it with (valid UTF-8), decoding to what the JSON Lines export's line for the
    row decodes to; every row is written and the export exits 0."""
    import pyarrow.parquet as pq

    from friendsim.cli import main

    run, seq = _with_lone_surrogate(tricky_run, tmp_path)
    out, jsonl = tmp_path / "events.parquet", tmp_path / "events.jsonl"
    assert main(["log", "export", str(run), "--out", str(out)]) == 0
    assert main(["log", "export", str(run), "--out", str(jsonl)]) == 0
    rows = _rows(run)
    table = pq.read_table(out).to_pylist()
    assert [(r["seq"], r["payload"]) for r in table] == [(r[0], r[4]) for r in rows]
    payload = next(r["payload"] for r in table if r["seq"] == seq)
    assert "\\ud800" in payload and json.loads(payload)["text"].startswith("\ud800")
    lines = jsonl.read_bytes().splitlines()
    assert json.loads(payload) == json.loads(lines[seq - 1])["payload"]


@pytest.mark.slow
def test_a_failed_export_leaves_the_file_it_would_replace_as_it_was(
    tricky_run: Path, tmp_path: Path
) -> None:
    """An export that stops on a broken row (a post with a field no post has) exits 2 naming the
    log, and the file named by ``--out`` is as it was, with no partial file beside it: the lines
    go to a temporary name, renamed only once all are written. The old export wrote straight
    into ``--out``: the rows before the broken one replaced the file."""
    run = tmp_path / "broken"
    run.mkdir()
    shutil.copyfile(tricky_run / "events.db", run / "events.db")
    post = [r for r in _rows(run) if r[2] == "post_created"][-1]
    con = sqlite3.connect(run / "events.db")
    try:
        con.execute("UPDATE events SET payload = ? WHERE seq = ?", (_edit(post[4], zz=1), post[0]))
        con.commit()
    finally:
        con.close()
    out = tmp_path / "events.jsonl"
    out.write_text("an earlier export\n", encoding="utf-8")
    proc = run_cli("log", "export", str(run), str(out))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and str(run / "events.db") in proc.stderr
    assert out.read_text(encoding="utf-8") == "an earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "events.jsonl"]


@pytest.mark.slow
def test_an_export_to_a_pipe_writes_every_line_into_it(tricky_run: Path, tmp_path: Path) -> None:
    """``--out /dev/stdout`` (a pipe here) cannot be renamed over: the lines are written into
    it directly, the same bytes as the file export."""
    exported = tmp_path / "export.jsonl"
    assert run_cli("log", "export", str(tricky_run), str(exported)).returncode == 0
    proc = subprocess.run(
        [sys.executable, "-m", "friendsim", "log", "export", str(tricky_run), "/dev/stdout"],
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = exported.read_bytes()
    assert proc.stdout.startswith(lines) and len(lines) > 1000
