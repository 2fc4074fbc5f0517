"""``events/stream?batch=1``, the batched form of the live view's log stream, over real HTTP on
127.0.0.1: each SSE event carries the rows read together, one ``data:`` line per row in seq
order, ``id`` the last row's seq. Its rows are exactly ``friendsim log export``'s lines, a
``Last-Event-ID`` resumes after it, a row UTF-8 cannot encode is sent ``\\u``-escaped in its
batch, and it follows a run live after catching up. The default stream stays one event per row
(``tests/test_serve_http.py``, ``tests/test_log_lines.py``)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serve_support import (
    background,
    export_lines,
    finished_run,
    stop,
    wait_for,
    write_config,
)

from friendsim.serve.follow import PAGE
from friendsim.serve.logfile import LogFile

pytest.importorskip("starlette", reason="the serve extra is part of the test install")
pytestmark = pytest.mark.slow

Event = tuple[int, list[str]]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = finished_run(tmp_path_factory.mktemp("batched"), rounds=10, agents=30)
    assert _last(run) > 3 * PAGE  # several batches while catching up
    return run


def _last(run: Path) -> int:
    con = sqlite3.connect(f"{(run / 'events.db').as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return int(con.execute("SELECT MAX(seq) FROM events").fetchone()[0])
    finally:
        con.close()


def _raw(url: str, last: int, *, query: str, headers: dict[str, str] | None = None) -> bytes:
    """The stream's bytes up to the end of the event whose id is ``last``."""
    mark = b"id: %d\n" % last
    body = b""
    with httpx.stream("GET", f"{url}events/stream?{query}", headers=headers or {}, timeout=60) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for chunk in r.iter_raw():
            body += chunk
            if mark in body and body.endswith(b"\n\n"):
                break
    return body


def _events(body: bytes) -> list[Event]:
    """``(id, data lines)`` of each event, checking the framing: the retry hint, then events of
    one ``id:`` line and one or more ``data:`` lines, nothing else."""
    head, *blocks = body.split(b"\n\n")
    assert head == b"retry: 1000" and blocks[-1] == b""
    out: list[Event] = []
    for block in blocks[:-1]:
        first, *data = block.decode("utf-8").split("\n")
        assert first.startswith("id: ") and data, block[:200]
        assert all(d.startswith("data: ") for d in data), block[:200]
        out.append((int(first[4:]), [d[6:] for d in data]))
    return out


def _rows(events: list[Event]) -> list[str]:
    return [line for _, lines in events for line in lines]


def test_batched_stream_carries_the_export_lines_in_order(run_dir: Path, tmp_path: Path) -> None:
    last = _last(run_dir)
    with background("serve", str(run_dir), "--port", "0") as (_, url):
        batched = _events(_raw(url, last, query="from=0&batch=1"))
        plain = _raw(url, last, query="from=0")
        plain_zero = _raw(url, last, query="from=0&batch=0")
        with httpx.stream("GET", f"{url}events/stream?batch=yes", timeout=30) as r:
            bad = (r.status_code, r.read() if r.status_code == 400 else b"")
    exported = export_lines(run_dir, tmp_path / "export.jsonl")
    assert _rows(batched) == exported
    assert all(ident == json.loads(lines[-1])["seq"] for ident, lines in batched)
    assert 1 < len(batched) <= -(-len(exported) // PAGE) + 1  # a page of rows per event
    assert [ident for ident, _ in batched] == sorted({ident for ident, _ in batched})
    # the default stream is untouched: one event per row, id its seq
    assert [(e[0], e[1]) for e in _events(plain)] == [
        (i, [line]) for i, line in enumerate(exported, 1)
    ]
    assert plain_zero == plain
    assert bad[0] == 400 and "batch='yes'" in json.loads(bad[1])["error"]


def test_batched_stream_resumes_after_last_event_id(run_dir: Path) -> None:
    last = _last(run_dir)
    with background("serve", str(run_dir), "--port", "0") as (_, url):
        whole = _events(_raw(url, last, query="from=0&batch=1"))
        rows = _rows(whole)
        boundary = whole[1][0]  # what a reconnecting browser sends: an event's id
        after_event = _events(
            _raw(url, last, query="batch=1", headers={"Last-Event-ID": str(boundary)})
        )
        mid = boundary + 123  # any seq: the stream resumes after it, whatever the batches
        after_mid = _events(
            _raw(url, last, query="from=1&batch=1", headers={"Last-Event-ID": str(mid)})
        )
    assert _rows(after_event) == rows[boundary:]
    assert len(after_event) < len(rows) // 10 and len(after_mid) < len(rows) // 10  # batched
    assert _rows(after_mid) == rows[mid:]
    assert json.loads(_rows(after_mid)[0])["seq"] == mid + 1
    assert after_mid[-1][0] == last


def test_a_row_utf8_cannot_encode_is_escaped_within_its_batch(tmp_path: Path) -> None:
    """A hand-edited payload holding the JSON escape ``\\ud800`` (a lone surrogate) decodes to
    text UTF-8 cannot encode: that row goes ``\\u``-escaped (still JSON, one line), the rest of
    its batch as stored; escaped newlines, carriage returns and U+2028 in agent text never break
    a ``data:`` line."""
    run = finished_run(tmp_path, rounds=3, agents=6)  # this test's own copy: edited below
    con = sqlite3.connect(run / "events.db")
    try:
        posts = con.execute(
            "SELECT seq, payload FROM events WHERE kind = 'post_created' ORDER BY seq LIMIT 2"
        ).fetchall()
        (lone, p1), (odd, p2) = posts
        con.execute(
            "UPDATE events SET payload = ? WHERE seq = ?",
            (p1.replace('"text":"', '"text":"\\ud800é', 1), lone),
        )
        con.execute(
            "UPDATE events SET payload = ? WHERE seq = ?",
            (p2.replace('"text":"', '"text":"a\\nb\\r\\nc\u2028d\u2029e ', 1), odd),
        )
        con.commit()
    finally:
        con.close()
    last = _last(run)
    with background("serve", str(run), "--port", "0") as (_, url):
        body = _raw(url, last, query="from=0&batch=1")
    exported = [line for _, line in LogFile(run / "events.db").read(1, last)]  # export refuses
    events = _events(body)
    rows = _rows(events)
    assert len(rows) == len(exported) == last
    for i, (got, want) in enumerate(zip(rows, exported, strict=True), 1):
        if i == lone:
            assert got.isascii() and "\\ud800\\u00e9" in got
            assert json.loads(got) == json.loads(want)
        else:
            assert got == want
    assert "a\\nb\\r\\nc\u2028d\u2029e " in rows[odd - 1]
    assert b"\r" not in body
    [(ident, batch)] = [e for e in events if any(json.loads(r)["seq"] == lone for r in e[1])]
    assert len(batch) > 1 and ident == json.loads(batch[-1])["seq"]  # the batch still went


def test_batched_stream_follows_the_run_after_catching_up(tmp_path: Path) -> None:
    """Opened once a run written by another process has logged rows: the stream sends those,
    then the rows logged after, while the run is still being written, and its rows are the
    export's lines."""
    cfg = write_config(tmp_path / "live.toml", rounds=120, agents=10, name="live3")
    run = tmp_path / "run"
    run.mkdir()
    with background("serve", str(run), "--port", "0") as (_, url):
        writer = subprocess.Popen(
            [sys.executable, "-m", "friendsim", "run", str(cfg), "--out", str(run), "--quiet"]
        )

        async def watch() -> tuple[int, int, int, list[Event]]:
            events: list[Event] = []
            during = 0
            try:
                await asyncio.to_thread(
                    wait_for,
                    lambda: httpx.get(f"{url}api/status", timeout=30).json()["last_seq"] > 50,
                    what="the run to log rows",
                )
                async with httpx.AsyncClient(timeout=httpx.Timeout(300)) as client:
                    logged = (await client.get(f"{url}api/status")).json()["last_seq"]
                    async with client.stream("GET", f"{url}events/stream?from=0&batch=1") as r:
                        ident, lines = 0, []
                        async for line in r.aiter_lines():
                            if line.startswith("id: "):
                                ident = int(line[4:])
                            elif line.startswith("data: "):
                                lines.append(line[6:])
                            elif line == "" and lines:
                                events.append((ident, lines))
                                if writer.poll() is None and ident > logged:
                                    during += 1
                                if any('"window":120' in x and "window_ended" in x for x in lines):
                                    break
                                ident, lines = 0, []
                return await asyncio.to_thread(writer.wait, 300), during, logged, events
            finally:
                await asyncio.to_thread(stop, writer)  # type: ignore[arg-type]

        rc, during, logged, events = asyncio.run(watch())
    assert rc == 0
    assert during > 0  # events of rows logged after the stream caught up, while the run went on
    assert events[0][0] >= min(logged, PAGE)  # caught up in batches, not row by row
    assert all(ident == json.loads(lines[-1])["seq"] for ident, lines in events)
    exported = export_lines(run, tmp_path / "export.jsonl")
    assert _rows(events) == exported[: len(_rows(events))]
