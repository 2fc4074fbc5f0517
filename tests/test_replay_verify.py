"""``replay --verify`` and the handling of corrupt or foreign input (files never modified)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_replay_support import checksums, make_run

from friendsim.platform.service import Platform
from friendsim.rundir.errors import (
    CorruptLogError,
    ForeignLogError,
    ManifestMismatchError,
    MissingFileError,
)
from friendsim.rundir.verify import verify_db, verify_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import asyncio

    out = tmp_path_factory.mktemp("verify") / "run"
    asyncio.run(make_run(out))
    return out


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(run_dir, dest)
    return dest


def sql(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for s in statements:
            conn.execute(s)
    finally:
        conn.close()


def test_verify_real_run_matches(run_dir: Path) -> None:
    before = checksums(run_dir)
    report = verify_run(run_dir)
    assert report.ok and report.divergence is None
    assert report.events == json.loads((run_dir / "manifest.json").read_text())["end_seq"]
    assert report.windows == 3
    assert checksums(run_dir) == before


def test_tampered_state_reports_table_key_column_values(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    sql(run / "events.db", "UPDATE posts SET likes = likes + 7 WHERE post_id = 3")
    conn = sqlite3.connect(run / "events.db")
    stored_likes = conn.execute("SELECT likes FROM posts WHERE post_id = 3").fetchone()[0]
    conn.close()  # not left to the garbage collector, with its -wal and -shm files
    before = checksums(run)
    report = verify_run(run)
    d = report.divergence
    assert d is not None and not report.ok
    assert (d.table, d.key, d.column) == ("posts", (3,), "likes")
    assert (d.stored, d.rebuilt) == (stored_likes, stored_likes - 7)
    assert "table posts, key (3), column likes" in str(d)
    assert checksums(run) == before


def test_missing_and_extra_rows_are_reported(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    follower, target = (
        sqlite3.connect(run / "events.db")
        .execute(
            "SELECT a.agent_id, b.agent_id FROM agents a, agents b WHERE a.agent_id <> b.agent_id"
            " AND NOT EXISTS (SELECT 1 FROM follows f WHERE f.follower = a.agent_id AND"
            " f.target = b.agent_id) ORDER BY 1, 2 LIMIT 1"
        )
        .fetchone()
    )
    sql(
        run / "events.db",
        f"INSERT INTO follows VALUES ('{follower}', '{target}', 0.0, 1)",
    )
    d = verify_run(run).divergence
    assert d is not None and d.table == "follows" and d.key == (follower, target)
    assert d.column is None and d.rebuilt is None and d.stored is not None


def test_non_canonical_payload_is_an_events_divergence(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    payload = (
        sqlite3.connect(run / "events.db")
        .execute("SELECT payload FROM events WHERE seq = 10")
        .fetchone()[0]
    )
    spaced = json.dumps(json.loads(payload), sort_keys=True)  # same content, other bytes
    assert spaced != payload
    conn = sqlite3.connect(run / "events.db", isolation_level=None)
    conn.execute("UPDATE events SET payload = ? WHERE seq = 10", (spaced,))
    conn.close()
    d = verify_run(run).divergence
    assert d is not None and (d.table, d.key, d.column) == ("events", (10,), "payload")
    assert d.stored == spaced and d.rebuilt == payload


def test_parallel_and_serial_rebuild_agree(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    sql(
        run / "events.db",
        "UPDATE dms SET text = 'edited' WHERE dm_id = (SELECT min(dm_id) FROM dms)",
    )
    serial = verify_db(run / "events.db", workers=0).divergence
    import friendsim.rundir.verify as V

    conn_src = sqlite3.connect(run / "events.db")
    n = conn_src.execute("SELECT count(*) FROM events").fetchone()[0]
    conn_src.close()
    # small batches force the process-pool path even on this small log
    dest = tmp_path / "rebuilt.db"
    src_copy = tmp_path / "src.db"
    shutil.copyfile(run / "events.db", src_copy)
    src = sqlite3.connect(src_copy)
    out = sqlite3.connect(dest, isolation_level=None)
    V.create_schema(out)
    count, div = V.rebuild_into(
        src, out, label="x", batch=max(1, n // 7), workers=2, src_path=src_copy
    )
    out.execute("ATTACH DATABASE ? AS stored", (str(src_copy),))
    parallel = V.compare_tables(out)
    out.close()
    src.close()
    assert count == n and div is None
    assert serial is not None and parallel == serial and serial.table == "dms"


def test_gap_in_log_is_corrupt_and_files_untouched(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    sql(run / "events.db", "DELETE FROM events WHERE seq = 20")
    before = checksums(run)
    with pytest.raises(CorruptLogError, match="seq 20 missing"):
        verify_run(run)
    assert checksums(run) == before


def test_truncated_database_file(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    db = run / "events.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    before = checksums(run)
    with pytest.raises((CorruptLogError, ManifestMismatchError)) as info:
        verify_run(run)
    assert "events.db" in str(info.value)
    assert checksums(run) == before


def test_not_a_database(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    (run / "events.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CorruptLogError, match="not a readable SQLite database"):
        verify_run(run)


def test_schema_text_that_is_not_utf8_is_a_corrupt_log(run_dir: Path, tmp_path: Path) -> None:
    """A damaged byte in the schema's own text (found by the damage test: a flipped byte in
    ``sqlite_master``) is a corrupt log, not a UnicodeDecodeError."""
    run = copy_run(run_dir, tmp_path)
    con = sqlite3.connect(run / "events.db")
    try:
        con.execute("CREATE TABLE scratch (x)")
        con.execute("PRAGMA writable_schema = ON")
        con.execute(
            "UPDATE sqlite_master SET name = CAST(X'73637261746385' AS TEXT) WHERE name = 'scratch'"
        )
        con.commit()
    finally:
        con.close()
    before = checksums(run)
    with pytest.raises(CorruptLogError, match="not a readable SQLite database"):
        verify_run(run)
    assert checksums(run) == before


def test_newer_schema_version_is_foreign(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    sql(run / "events.db", "PRAGMA user_version = 99")
    before = checksums(run)
    with pytest.raises(ForeignLogError, match=r"schema version 99.*newer friendsim"):
        verify_run(run)
    assert checksums(run) == before


def test_newer_payload_version_is_foreign(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    sql(run / "events.db", "UPDATE events SET payload = json_set(payload, '$.v', 2) WHERE seq = 5")
    with pytest.raises(ForeignLogError, match=r"seq=5.*version 2"):
        verify_run(run)


def test_manifest_that_does_not_match_the_log(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["end_seq"] += 5
    (run / "manifest.json").write_text(json.dumps(manifest))
    before = checksums(run)
    with pytest.raises(ManifestMismatchError, match="end_seq"):
        verify_run(run)
    assert checksums(run) == before


def test_missing_files(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="run directory not found"):
        verify_run(tmp_path / "nope")
    run = copy_run(run_dir, tmp_path)
    (run / "events.db").unlink()
    with pytest.raises(MissingFileError, match="event log not found"):
        verify_run(run)
    (run / "manifest.json").unlink()
    with pytest.raises(MissingFileError, match="run manifest not found"):
        verify_run(run)


async def test_verify_a_log_that_a_killed_writer_left_in_its_wal(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    p = await Platform.open(db)
    await p.register_agent("a", name="A")
    await p.register_agent("b", name="B")
    post = await p.create_post("a", text="hello", topic="x")
    await p.vote("b", post.post_id, 1)
    await p.flush()
    # copy while open: the committed events are only in the -wal file, as after a SIGKILL
    crash = tmp_path / "crash"
    crash.mkdir()
    for suffix in ("", "-wal"):
        shutil.copyfile(str(db) + suffix, str(crash / "events.db") + suffix)
    await p.close()
    before = checksums(crash)
    report = verify_db(crash / "events.db")
    assert report.ok and report.events == 4
    assert checksums(crash) == before


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "friendsim", "replay", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_cli_exit_codes(run_dir: Path, tmp_path: Path) -> None:
    ok = run_cli(str(run_dir), "--verify")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.splitlines()[-1])["ok"] is True
    run = copy_run(run_dir, tmp_path)
    sql(run / "events.db", "UPDATE agents SET name = 'X' WHERE agent_id = 'a01'")
    bad = run_cli(str(run), "--verify")
    assert bad.returncode == 1
    assert "table agents, key ('a01'), column name" in bad.stderr
    out = json.loads(bad.stdout.splitlines()[-1])
    assert out["divergence"] == {
        "table": "agents",
        "key": ["a01"],
        "column": "name",
        "stored": "X",
        "rebuilt": out["divergence"]["rebuilt"],
    }
    missing = run_cli(str(tmp_path / "absent"), "--verify")
    assert missing.returncode == 2 and "run directory not found" in missing.stderr


def test_a_row_missing_from_the_stored_state(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    voter, post = (
        sqlite3.connect(run / "events.db")
        .execute("SELECT voter, post_id FROM votes ORDER BY voter, post_id LIMIT 1 OFFSET 2")
        .fetchone()
    )
    sql(
        run / "events.db",
        "PRAGMA foreign_keys = OFF",
        f"DELETE FROM votes WHERE voter = '{voter}' AND post_id = {post}",
    )
    d = verify_run(run).divergence
    assert d is not None and (d.table, d.key, d.column) == ("votes", (voter, post), None)
    assert d.stored is None and d.rebuilt is not None and d.rebuilt[:2] == (voter, post)
    assert "row only in the rebuilt state" in str(d)


def test_a_divergence_in_a_huge_row_is_told_in_one_short_line() -> None:
    """A tampered 1 MB payload was printed whole, twice, by ``log verify``: the message shows
    each side cut around where they first differ, with their lengths; ``to_json`` keeps all."""
    from friendsim.rundir.verify import Divergence

    stored = '{"text": "' + "x" * 500_000 + "A" + "y" * 500_000 + '"}'
    rebuilt = stored.replace("A", "B")
    d = Divergence(table="events", key=(58,), column="payload", stored=stored, rebuilt=rebuilt)
    text = str(d)
    assert len(text) < 700 and text.count("(1000015 characters)") == 2
    assert "xA" in text and "xB" in text  # both sides shown where they differ
    assert d.to_json()["stored"] == stored
    row = Divergence(table="posts", key=(1,), column=None, stored=None, rebuilt=("z" * 10**6,))
    assert len(str(row)) < 400 and "row only in the rebuilt state" in str(row)


def run_log_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "friendsim", "log", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("kind", "field", "value", "problem"),
    [
        ("vote_cast", "value", "1", "payload.value: expected an integer, got the string '1'"),
        (
            "window_started",
            "window",
            "x",
            "payload.window: expected an integer, got the string 'x'",
        ),
        ("post_created", "text", 5, "payload.text: expected a string, got the integer 5"),
        (
            "feed_served",
            "post_ids",
            [1, "2"],
            "payload.post_ids[1]: expected an integer, got the string '2'",
        ),
        (
            "window_ended",
            "window",
            "x",
            "has the window 'x'; a window_ended's payload.window is an integer",
        ),
    ],
)
def test_log_verify_refuses_a_payload_field_of_the_wrong_type(
    run_dir: Path, tmp_path: Path, kind: str, field: str, value: object, problem: str
) -> None:
    """A log written elsewhere (or edited) with a field of the wrong JSON type: ``log verify``
    names the seq and the field, exit 2, files untouched, as ``log import`` refuses the line.
    (Before: it matched, as the payload re-encodes to itself, or reported a stored table
    differing (SQLite had stored ``"1"`` as 1), or stopped on ``invalid literal for int()``
    naming nothing; the analyses then failed deep inside with a traceback.)"""
    run = copy_run(run_dir, tmp_path)
    db = run / "events.db"
    conn = sqlite3.connect(db, isolation_level=None)
    seq, payload = conn.execute(
        "SELECT seq, payload FROM events WHERE kind = ? ORDER BY seq LIMIT 1", (kind,)
    ).fetchone()
    data = json.loads(payload)
    data[field] = value
    conn.execute(
        "UPDATE events SET payload = ? WHERE seq = ?",
        (json.dumps(data, sort_keys=True, separators=(",", ":")), seq),
    )
    conn.close()
    before = checksums(run)
    got = run_log_cli("verify", str(db))
    sep = ": " if kind != "window_ended" else " "
    assert (got.returncode, got.stdout) == (2, "")
    assert got.stderr == f"friendsim log verify: {db}: event seq={seq} ({kind}){sep}{problem}\n"
    assert checksums(run) == before


def test_log_verify_refuses_a_window_that_a_run_never_writes(run_dir: Path, tmp_path: Path) -> None:
    """Window 2 numbered 1 again, after window 1 ended: the rewards would score window 1 twice.
    ``log verify`` refuses it as ``log import`` does, naming the seq, exit 2, files untouched.
    (Before: the replay matched.)"""
    run = copy_run(run_dir, tmp_path)
    db = run / "events.db"
    conn = sqlite3.connect(db, isolation_level=None)
    rows = conn.execute(
        "SELECT seq, kind FROM events WHERE kind IN ('window_started', 'window_ended')"
        " AND json_extract(payload, '$.window') = 2 ORDER BY seq"
    ).fetchall()
    conn.execute(
        "UPDATE events SET payload = json_set(payload, '$.window', 1)"
        " WHERE kind IN ('window_started', 'window_ended') AND json_extract(payload, '$.window') = 2"
    )
    end_1 = conn.execute(
        "SELECT seq FROM events WHERE kind = 'window_ended' ORDER BY seq LIMIT 1"
    ).fetchone()[0]
    conn.close()
    assert [kind for _, kind in rows] == ["window_started", "window_ended"]
    before = checksums(run)
    got = run_log_cli("verify", str(db))
    assert (got.returncode, got.stdout) == (2, "")
    assert got.stderr == (
        f"friendsim log verify: {db}: event seq={rows[0][0]}: window_started for window 1, but "
        f"window 1 already ended (seq {end_1}): a run starts each window once\n"
    )
    assert checksums(run) == before


@pytest.mark.parametrize("window", [0, -1])
def test_log_verify_refuses_a_window_numbered_below_1(
    run_dir: Path, tmp_path: Path, window: int
) -> None:
    """Windows count from 1 (every scheduler numbers them so); window 1 renumbered ``window``
    (0 or -1) is refused, naming the seq, exit 2, files untouched, with the words of ``log
    import``. (Before: the replay matched; import refused it in other words.)"""
    run = copy_run(run_dir, tmp_path)
    db = run / "events.db"
    conn = sqlite3.connect(db, isolation_level=None)
    start = conn.execute(
        "SELECT seq FROM events WHERE kind = 'window_started' ORDER BY seq LIMIT 1"
    ).fetchone()[0]
    conn.execute(
        "UPDATE events SET payload = json_set(payload, '$.window', ?)"
        " WHERE kind IN ('window_started', 'window_ended') AND json_extract(payload, '$.window') = 1",
        (window,),
    )
    conn.close()
    before = checksums(run)
    got = run_log_cli("verify", str(db))
    assert (got.returncode, got.stdout) == (2, "")
    problem = f"window_started for window {window}: window numbers count from 1"
    assert got.stderr == f"friendsim log verify: {db}: event seq={start}: {problem}\n"
    assert checksums(run) == before

    lines = tmp_path / "log.jsonl"
    assert run_log_cli("export", str(run_dir), "--out", str(lines)).returncode == 0
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    for row in rows:
        if row["kind"] in ("window_started", "window_ended") and row["payload"]["window"] == 1:
            row["payload"]["window"] = window
    lines.write_text("".join(json.dumps(row) + "\n" for row in rows))
    lineno = next(i for i, row in enumerate(rows, 1) if row["seq"] == start)
    got = run_log_cli("import", str(lines), str(tmp_path / "imported.db"))
    assert (got.returncode, got.stderr) == (
        2,
        f"friendsim log import: {lines}:{lineno}: {problem}\n",
    )
    assert not list(tmp_path.glob("imported.db*"))


@pytest.mark.parametrize(
    ("kind", "field", "command"),
    [
        ("vote_cast", "value", ("analyze", "{run}")),
        ("vote_cast", "value", ("log", "export", "{run}", "--table", "rewards", "--out", "{tmp}/r.jsonl")),
        ("vote_cast", "value", ("log", "export", "{run}", "--table", "ties", "--out", "{tmp}/t.jsonl")),
        ("window_ended", "window", ("analyze", "{run}")),
    ],
    ids=["analyze", "export-rewards", "export-ties", "analyze-window"],
)  # fmt: skip
def test_an_analysis_of_a_mistyped_log_names_the_event(
    run_dir: Path, tmp_path: Path, kind: str, field: str, command: tuple[str, ...]
) -> None:
    """The analyses decode without type checks (they trust a log a run wrote, or that import or
    verify passed); one that fails on a log with a mistyped field names the event and the field,
    exit 2, as ``log verify`` does. (Before: a TypeError traceback from inside the rewards; for
    a window_ended's window "1", which closes no window, "WindowEnded(window=1) but the open
    window is 1", naming neither the field nor its type.)"""
    run = copy_run(run_dir, tmp_path)
    db = run / "events.db"
    conn = sqlite3.connect(db, isolation_level=None)
    seq = conn.execute("SELECT min(seq) FROM events WHERE kind = ?", (kind,)).fetchone()[0]
    conn.execute(
        f"UPDATE events SET payload = json_set(payload, '$.{field}', '1') WHERE seq = ?", (seq,)
    )
    conn.close()
    before = checksums(run)
    argv = [a.format(run=run, tmp=tmp_path) for a in command]
    got = subprocess.run(
        [sys.executable, "-m", "friendsim", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert (got.returncode, got.stdout) == (2, ""), got.stderr
    assert got.stderr.endswith(
        f"{db}: event seq={seq} ({kind}): payload.{field}: expected an integer, got the string "
        "'1' (`friendsim log verify` checks a log friendsim did not write)\n"
    )
    assert "Traceback" not in got.stderr
    assert checksums(run) == before
    assert not list(tmp_path.glob("*.jsonl"))
