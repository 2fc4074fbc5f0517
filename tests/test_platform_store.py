"""Store: schema constraints hold even against raw SQL; migrations; JSONL round trip; events table."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from friendsim.platform import Platform, SchemaVersionError, VirtualClock, replay
from friendsim.platform.events import (
    EVENT_TYPES,
    WindowEnded,
    WindowStarted,
    event_from_json,
    event_to_json,
    payload_json,
)
from friendsim.platform.migrations import latest_version
from friendsim.platform.projection import PROJECTIONS
from friendsim.platform.projection import payload_json as fast_payload_json
from friendsim.vocabulary import Tip


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "c.db"
    p = await Platform.open(path, clock=VirtualClock(1.0))
    await p.register_agent("a", name="A")
    await p.register_agent("b", name="B")
    await p.create_post("a", text="hello", topic="t")
    await p.vote("b", 1, 1)
    await p.follow("a", "b")
    await p.send_dm("a", "b", text="hi")
    await p.close()
    return path


def _leftovers(folder: Path, pattern: str) -> list[Path]:
    return list(folder.glob(pattern))


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


BAD_ROWS = [
    ("INSERT INTO follows VALUES ('a', 'a', 0, 99)", "CHECK"),
    ("INSERT INTO follows VALUES ('a', 'b', 0, 99)", "UNIQUE"),
    ("INSERT INTO follows VALUES ('a', 'zed', 0, 99)", "FOREIGN KEY"),
    ("INSERT INTO votes VALUES ('a', 1, 1, 0, 99)", "own post"),
    ("INSERT INTO votes VALUES ('b', 1, -1, 0, 99)", "UNIQUE"),
    ("INSERT INTO votes VALUES ('zed', 1, 1, 0, 99)", "FOREIGN KEY"),
    ("INSERT INTO votes VALUES ('b', 99, 1, 0, 99)", "FOREIGN KEY"),
    ("UPDATE votes SET value = 0", "CHECK"),
    ("UPDATE votes SET value = 2", "CHECK"),
    (
        "INSERT INTO dms(dm_id, seq, t, sender, recipient, text) VALUES (9, 99, 0, 'a', 'a', 'x')",
        "CHECK",
    ),
    (
        "INSERT INTO dms(dm_id, seq, t, sender, recipient, text) VALUES (9, 99, 0, 'a', 'b', ' ')",
        "CHECK",
    ),
    (
        "INSERT INTO dms(dm_id, seq, t, sender, recipient, text, reply_to) VALUES (9, 99, 0, 'a', 'b', 'x', 8)",
        "FOREIGN KEY",
    ),
    (
        "INSERT INTO posts(post_id, seq, t, author, text, topic) VALUES (9, 99, 0, 'a', '', 't')",
        "CHECK",
    ),
    (
        "INSERT INTO posts(post_id, seq, t, author, text, topic) VALUES (9, 99, 0, 'zed', 'x', 't')",
        "FOREIGN KEY",
    ),
    (
        "INSERT INTO posts(post_id, seq, t, author, text, topic, parent_id, root_id) VALUES (9, 99, 0, 'a', 'x', 't', 8, 8)",
        "FOREIGN KEY",
    ),
    ("UPDATE posts SET likes = -1", "CHECK"),
    ("INSERT INTO mentions VALUES (1, 0, 'zed')", "FOREIGN KEY"),
    ("INSERT INTO exposures VALUES (1, 0, 'a', 42, 't', 'full', 0)", "FOREIGN KEY"),
    ("INSERT INTO events VALUES (1, 0, 'x', NULL, '{}')", "UNIQUE"),
    ("INSERT INTO events(seq, t, kind, actor) VALUES (50, 0, 'x', NULL)", "NOT NULL"),
]


@pytest.mark.parametrize(("sql", "reason"), BAD_ROWS)
async def test_constraints_reject_raw_sql(db: Path, sql: str, reason: str) -> None:
    conn = _raw(db)
    try:
        with pytest.raises(sqlite3.IntegrityError, match=reason):
            conn.execute(sql)
    finally:
        conn.close()


async def test_valid_raw_row_is_accepted(db: Path) -> None:
    """Control for the constraint tests: a legal row of the same shape goes in."""
    conn = _raw(db)
    try:
        conn.execute("INSERT INTO follows VALUES ('b', 'a', 0, 99)")
        assert conn.execute("SELECT count(*) FROM follows").fetchone()[0] == 2
    finally:
        conn.close()


async def test_schema_and_pragmas(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version() == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cols = [(r[1], r[2], r[3], r[5]) for r in conn.execute("PRAGMA table_info(events)")]
        assert cols == [
            ("seq", "INTEGER", 0, 1),
            ("t", "REAL", 1, 0),
            ("kind", "TEXT", 1, 0),
            ("actor", "TEXT", 0, 0),
            ("payload", "TEXT", 1, 0),
        ]
    finally:
        conn.close()


async def test_foreign_keys_on_in_platform_connections(tmp_path: Path) -> None:
    p = await Platform.open(tmp_path / "fk.db")
    try:
        rows = await p.db.execute_fetchall("PRAGMA foreign_keys")
        assert rows[0][0] == 1
    finally:
        await p.close()


async def test_newer_schema_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match="newer friendsim"):
        await Platform.open(db)


async def test_events_rows_hold_payload_json(db: Path) -> None:
    p = await Platform.open(db)
    try:
        events = [e async for e in p.events()]
        rows = await p.db.execute_fetchall(
            "SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"
        )
        assert [r[0] for r in rows] == list(range(1, 7))
        for e, row in zip(events, rows, strict=True):
            assert row == (e.seq, e.t, e.kind, e.actor, payload_json(e))
    finally:
        await p.close()


def test_every_kind_has_a_projection() -> None:
    assert set(PROJECTIONS) == set(EVENT_TYPES)


async def test_fast_payload_matches_contract(db: Path) -> None:
    p = await Platform.open(db)
    try:
        async for e in p.events():
            assert fast_payload_json(e) == payload_json(e)
    finally:
        await p.close()


async def test_jsonl_round_trip(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl"
    assert await replay.export_jsonl(db, out) == 6
    lines = out.read_text().splitlines()
    assert [event_to_json(event_from_json(line)) for line in lines] == lines
    dest = tmp_path / "imported.db"
    assert await replay.import_jsonl(out, dest) == 6
    assert await replay.compare(db, dest) is None


async def test_an_export_saved_with_a_byte_order_mark_imports(db: Path, tmp_path: Path) -> None:
    """An editor or a Windows tool that saves the JSON Lines as "UTF-8 with BOM" puts U+FEFF
    before the first line; the import refused it ("line 1: ... Expecting value"). The mark is
    an encoding's signature, not text: the log imports as it was exported."""
    out = tmp_path / "log.jsonl"
    assert await replay.export_jsonl(db, out) == 6
    marked = tmp_path / "marked.jsonl"
    marked.write_bytes(b"\xef\xbb\xbf" + out.read_bytes())
    dest = tmp_path / "imported.db"
    assert await replay.import_jsonl(marked, dest) == 6
    assert await replay.compare(db, dest) is None


async def test_a_non_finite_float_is_stored_as_null_and_the_log_round_trips(
    tmp_path: Path,
) -> None:
    """A model's answer parsed by Python's ``json`` (``{"score": NaN}``) or a plug-in's value
    can hold NaN or an infinity. The log stored them as ``NaN``/``Infinity``, which is not
    JSON: ``log export`` wrote lines that other readers and ``log import`` refuse. They are
    stored as ``null`` by both payload encoders, so the export imports back identically."""
    path = tmp_path / "n.db"
    from friendsim.platform import events as ev

    odd = ev.ActionFailed(
        t=1.0,
        actor="a",
        window=1,
        stage="agent",
        reason="invalid_output",
        detail="d",
        attempts=1,
        action={"raw": [float("nan"), 1.5, {"x": float("-inf")}], "y": float("inf")},
    )
    assert fast_payload_json(odd) == payload_json(odd)
    assert '"raw":[null,1.5,{"x":null}]' in payload_json(odd) and '"y":null' in payload_json(odd)
    p = await Platform.open(path, clock=VirtualClock(1.0))
    try:
        await p.register_agent("a", name="A")
        await p.record(odd)
    finally:
        await p.close()
    conn = _raw(path)
    (stored,) = conn.execute("SELECT payload FROM events WHERE kind = 'action_failed'").fetchone()
    conn.close()
    assert json.loads(stored)["action"] == {"raw": [None, 1.5, {"x": None}], "y": None}
    out = tmp_path / "log.jsonl"
    assert await replay.export_jsonl(path, out) == 2
    assert "NaN" not in out.read_text() and "Infinity" not in out.read_text()
    assert await replay.import_jsonl(out, tmp_path / "back.db") == 2
    assert await replay.compare(path, tmp_path / "back.db") is None


async def test_import_validates_and_leaves_nothing(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl"
    await replay.export_jsonl(db, out)
    lines = out.read_text().splitlines()
    # line 5 (the follow) made into a self-follow
    lines[4] = lines[4].replace('"target":"b"', '"target":"a"')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    dest = tmp_path / "x.db"
    with pytest.raises(replay.LogImportError, match=r"bad.jsonl:5: .*cannot follow itself"):
        await replay.import_jsonl(bad, dest)
    assert not _leftovers(tmp_path, "x.db*")
    # a gap in seq is rejected too
    gap = tmp_path / "gap.jsonl"
    gap.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    with pytest.raises(replay.LogImportError, match=r"gap.jsonl:3: .*does not follow"):
        await replay.import_jsonl(gap, tmp_path / "y.db")


async def test_compare_reports_first_difference(db: Path, tmp_path: Path) -> None:
    rebuilt = tmp_path / "rebuilt.db"
    assert await replay.rebuild(db, rebuilt) == 6
    assert await replay.compare(db, rebuilt) is None
    conn = _raw(rebuilt)
    conn.execute("UPDATE posts SET likes = 7 WHERE post_id = 1")
    conn.close()
    diff = await replay.compare(db, rebuilt)
    assert diff is not None and diff.table == "posts" and diff.key == (1,)
    assert diff.row_a is not None and diff.row_b is not None
    assert 7 in diff.row_b and 7 not in diff.row_a


def test_cli_log_verify_export_import(db: Path, tmp_path: Path, capsys) -> None:
    import argparse

    from friendsim.commands import log as log_command

    parser = argparse.ArgumentParser()
    log_command.register(parser.add_subparsers(dest="command"))

    def run(*argv: str) -> int:
        args = parser.parse_args(["log", *argv])
        return args.handler(args)

    assert run("verify", str(db)) == 0
    assert run("export", str(db), str(tmp_path / "l.jsonl")) == 0
    assert run("import", str(tmp_path / "l.jsonl"), str(tmp_path / "n.db")) == 0
    assert run("import", str(tmp_path / "l.jsonl"), str(tmp_path / "n.db")) == 2  # exists
    conn = sqlite3.connect(tmp_path / "n.db")
    conn.execute("UPDATE posts SET dislikes = 3")
    conn.commit()
    conn.close()
    assert run("verify", str(tmp_path / "n.db")) == 1
    assert "table posts, key (1), column dislikes: stored 3 != rebuilt 0" in capsys.readouterr().err


_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(),
    names=st.lists(st.text(max_size=8), max_size=4),
    attrs=st.dictionaries(st.text(max_size=6), _json_value, max_size=4),
    n=st.integers(0, 2**40),
)
def test_fast_payload_json_is_byte_identical(
    text: str, names: list[str], attrs: dict, n: int
) -> None:
    from friendsim.platform.events import (
        ActionFailed,
        AgentRegistered,
        DirectMessageSent,
        FeedServed,
        GuidanceIssued,
        PostCreated,
    )

    events = [
        AgentRegistered(t=0.0, actor=text, name=text, attributes=attrs),
        PostCreated(t=0.0, actor="a", post_id=n, text=text, topic=text, mentions=tuple(names)),
        DirectMessageSent(t=1.0, actor="a", dm_id=n, recipient=text, text=text, reply_to=None),
        FeedServed(t=0.0, actor="a", ranker=text, post_ids=(n, 1), topics=tuple(names[:2])),
        GuidanceIssued(
            t=0.0,
            actor="coach",
            agent=text,
            window=n,
            tips=(
                Tip(
                    action="DM",
                    target=text,
                    topic=text,
                    invite_mention=True,
                    tone="critical",
                    text=text,
                ),
                Tip(
                    action="NOT",
                    target=None,
                    topic="",
                    invite_mention=False,
                    tone="neutral",
                    text="".join(names),
                ),
            ),
        ),
        ActionFailed(t=0.0, actor=None, stage=text, reason="r", action=attrs or None),
    ]
    for e in events:
        assert fast_payload_json(e) == payload_json(e)


_TIPS = st.builds(
    Tip,
    action=st.sampled_from(["POST", "COM", "DM", "NOT"]),
    target=st.none() | st.text(max_size=12),
    topic=st.text(max_size=20),
    invite_mention=st.booleans(),
    tone=st.sampled_from(["supportive", "neutral", "critical"]),
    text=st.text(max_size=60),
)


@settings(max_examples=200, deadline=None)
@given(
    agent=st.text(max_size=12),
    coach=st.sampled_from(["rule", "llm", "rule:fallback"]) | st.text(max_size=8),
    window=st.integers(0, 2**40),
    tips=st.lists(_TIPS, max_size=6),
    odd=st.sampled_from([None, "window", "target", "invite"]),
)
def test_the_guidance_payload_is_byte_identical(
    agent: str, coach: str, window: int, tips: list[Tip], odd: str | None
) -> None:
    """The direct writer of a guidance's payload gives the general encoder's bytes, and hands
    values of other types (a bool window, an int target, an int for a bool) to it."""
    from friendsim.platform.events import GuidanceIssued
    from friendsim.platform.projection import guidance_payload

    if odd == "window":
        window = True  # type: ignore[assignment]  # an int subclass: JSON true, not 1
    if odd in ("target", "invite") and tips:
        field = "target" if odd == "target" else "invite_mention"
        tips[0] = dataclasses.replace(tips[0], **{field: 1})
    e = GuidanceIssued(
        t=0.0, actor="coach", agent=agent, window=window, tips=tuple(tips), coach=coach
    )
    assert guidance_payload(e) == payload_json(e) == fast_payload_json(e)


@given(author=st.text(), post_id=st.integers(-(2**62), 2**62), value=st.sampled_from((-1, 1)))
def test_the_vote_cast_payload_is_byte_identical(author: str, post_id: int, value: int) -> None:
    from friendsim.platform.events import VoteCast
    from friendsim.platform.projection import vote_cast_payload

    e = VoteCast(t=0.0, actor="x", post_id=post_id, author=author, value=value)
    assert vote_cast_payload(e) == payload_json(e) == fast_payload_json(e)


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(min_value=1, max_value=2**40),
    t=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    actor=st.text(min_size=1, max_size=8),
    post_id=st.integers(min_value=1, max_value=2**40),
    author=st.text(min_size=1, max_size=8),
    value=st.sampled_from([-1, 1]),
)
def test_fast_vote_cast_is_the_dataclass(
    seq: int, t: float, actor: str, post_id: int, author: str, value: int
) -> None:
    """The slot-setting constructor the platform uses for votes builds the very object the
    dataclass does, and sets every field (a field added to VoteCast fails here)."""
    import dataclasses

    from friendsim.platform.events import _VOTE_CAST_FIELDS, VoteCast, vote_cast

    assert set(_VOTE_CAST_FIELDS) == {f.name for f in dataclasses.fields(VoteCast)}
    fast = vote_cast(seq, t, actor, post_id, author, value)
    slow = VoteCast(seq=seq, t=t, actor=actor, post_id=post_id, author=author, value=value)
    assert type(fast) is VoteCast
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert payload_json(fast) == payload_json(slow) == fast_payload_json(fast)
    assert event_to_json(fast) == event_to_json(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.value = 0  # type: ignore[misc]


async def test_running_digest_is_the_read_back_hash(tmp_path: Path) -> None:
    """A platform that wrote its whole log knows the log's digest without reading it back: the
    same value ``log_hash`` computes from the file, after every commit, across many batches
    (votes, posts, times shared and not); a platform reopened on that log does not claim one."""
    from friendsim.rundir.log import log_hash

    path = tmp_path / "d.db"
    clock = VirtualClock(0.0)
    p = await Platform.open(path, clock=clock, batch_size=7)
    try:
        digests = await _write_and_check(p, clock, path)
        await p.send_dm("a0", "a1", text="hi")
    finally:
        await p.close()
    with sqlite3.connect(path) as conn:
        final = log_hash(conn)
    assert p.log_sha256 == final != digests[-1]
    again = await Platform.open(path, clock=VirtualClock(0.0))
    try:
        assert again.log_sha256 is None
    finally:
        await again.close()


async def _write_and_check(p: Platform, clock: VirtualClock, path: Path) -> list[str]:
    from friendsim.rundir.log import log_hash

    names = [f"a{i}" for i in range(6)]
    for n in names:
        await p.register_agent(n, name=n.upper(), attributes={"x": "ü"})
    post_ids = []
    for i, n in enumerate(names):
        clock.advance_to(1.0 + i / 3)
        made = await p.create_post(n, text=f'post {i} \t "q" \n ü', topic="t")
        post_ids.append(made.post_id)
    digests = []
    for i, n in enumerate(names):
        clock.advance_to(10.0 + i * 0.1)
        await p.cast_votes(n, [(pid, 1 if (pid + i) % 2 else -1) for pid in post_ids[:i]])
        await p.flush()
        assert p.log_sha256 is not None
        with sqlite3.connect(path) as conn:
            assert p.log_sha256 == log_hash(conn)
        digests.append(p.log_sha256)
    assert len(set(digests)) == len(digests)  # every commit changed it
    return digests


# --- log import: strict checks, clear errors ------------------------------------------------

IMPORT_CONFIG = (
    '[experiment]\nname="imp"\nseed=3\nrounds=3\nn_actions=2\n'
    '[agents]\ncount=5\npolicy="baseline"\n[coach]\nenabled=true\nkind="rule"\n'
)


def _cli(*argv: str | Path) -> tuple[int, str, str]:
    import contextlib
    import io

    from friendsim.cli import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A real (baseline, coached) run and its exported JSON Lines."""
    tmp = tmp_path_factory.mktemp("import")
    (tmp / "c.toml").write_text(IMPORT_CONFIG)
    assert _cli("run", tmp / "c.toml", "--out", tmp / "run", "--quiet")[0] == 0
    assert _cli("log", "export", tmp / "run", "--out", tmp / "ev.jsonl")[0] == 0
    return tmp / "run", (tmp / "ev.jsonl").read_text(encoding="utf-8").splitlines()


def _events_rows(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"
        ).fetchall()


def test_a_real_runs_log_round_trips_through_the_strict_import(
    run_log: tuple[Path, list[str]], tmp_path: Path
) -> None:
    run, lines = run_log
    kinds = {json.loads(line)["kind"] for line in lines}
    assert {"window_started", "window_ended", "guidance_issued", "post_created"} <= kinds
    src = tmp_path / "ev.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = _cli("log", "import", src, tmp_path / "copy.db")
    assert (code, err) == (0, ""), err
    assert f"imported {len(lines)} events" in out
    assert _events_rows(tmp_path / "copy.db") == _events_rows(run / "events.db")
    assert _cli("log", "verify", tmp_path / "copy.db")[0] == 0


def _sample_events() -> list[Any]:
    """One event of every kind, each field set (so the strict decoder checks every type)."""
    from friendsim.platform import events as ev

    tip = Tip(action="DM", target="b", topic="t", invite_mention=True, tone="neutral", text="x")
    return [
        ev.AgentRegistered(seq=1, t=0.0, actor="a", name="A", attributes={"g": [1, {"h": 2}]}),
        ev.PostCreated(
            seq=2,
            t=1,
            actor="a",
            post_id=1,
            text="hi",
            topic="t",
            mentions=("b",),
            parent_id=None,
            root_id=None,
            quote_of=None,
            tone="neutral",
        ),
        ev.VoteCast(seq=3, t=1.5, actor="b", post_id=1, author="a", value=1),
        ev.VoteChanged(seq=4, t=1.5, actor="b", post_id=1, author="a", old=1, value=-1),
        ev.VoteCleared(seq=5, t=1.5, actor="b", post_id=1, author="a", old=-1),
        ev.Followed(seq=6, t=2.0, actor="a", target="b"),
        ev.Unfollowed(seq=7, t=2.0, actor="a", target="b"),
        ev.DirectMessageSent(
            seq=8,
            t=2.0,
            actor="a",
            dm_id=1,
            recipient="b",
            text="yo",
            topic="t",
            mentions=(),
            reply_to=None,
            tone=None,
        ),
        ev.FeedServed(seq=9, t=2.0, actor="a", ranker="full", post_ids=(1,), topics=("t",)),
        ev.WindowStarted(seq=10, t=2.0, window=1, mode="rounds", t_end=3600.0),
        ev.WindowEnded(seq=11, t=3600.0, window=1),
        ev.GuidanceIssued(
            seq=12, t=3600.0, actor="coach", agent="a", window=1, tips=(tip,), coach="rule"
        ),
        ev.ActionFailed(
            seq=13,
            t=3600.0,
            actor="a",
            window=1,
            stage="plan",
            reason="bad_json",
            detail="d",
            attempts=2,
            action={"type": "POST", "raw": [None, 1.5, True]},
        ),
        ev.InterventionApplied(
            seq=14, t=3600.0, window=2, intervention="x", name="n", params={"p": 1}
        ),
        ev.ItemInjected(seq=15, t=3600.0, post_id=1, item_id="i1", truth="false", source="s"),
        ev.BroadcastSent(seq=16, t=3600.0, window=2, sender="ops", text="hello"),
        ev.FeedChanged(seq=17, t=3600.0, window=2, ranker="chrono", params={}, limit=5),
        ev.PersonaChanged(seq=18, t=3600.0, agent="a", window=2, fields={"lambdas": {"SOC": 1}}),
        ev.AgentSuspended(
            seq=19, t=3600.0, agent="b", from_window=2, until_window=None, by="x", reason="r"
        ),
        ev.ModerationDecided(
            seq=20,
            t=3600.0,
            window=2,
            moderator="m",
            action="suspend",
            post_id=1,
            author="a",
            label="",
            from_window=2,
            until_window=3,
            reason="r",
            score=float("nan"),
        ),
        ev.SurveyAnswered(seq=21, t=3600.0, actor="a", survey="s", window=2, answers={"q": 3}),
    ]


def test_every_event_kind_passes_the_strict_decoder_unchanged() -> None:
    samples = _sample_events()
    assert {e.kind for e in samples} == set(EVENT_TYPES)
    for e in samples:
        line = event_to_json(e)
        back = event_from_json(line)
        assert event_to_json(back) == line  # the NaN score is written null, as it is stored
        assert type(back) is type(e)


def test_a_decoded_event_is_the_dataclass_built_from_its_fields() -> None:
    """``event_from_row`` builds an event whose payload holds every field by setting its slots:
    the very event the dataclass builds from the same fields (containers frozen, every slot
    set, frozen itself), for every kind, from the stored text and from a decoded object; a
    payload without a defaulted field still decodes to the field's default."""
    from friendsim.platform.events import PostCreated, _fields_of, event_from_row, event_to_row

    for e in _sample_events():
        seq, t, kind, actor, payload = event_to_row(e)
        data = json.loads(payload)
        del data["v"]
        slow = type(e)(seq=seq, t=t, actor=actor, **_fields_of(kind, dict(data)))
        for got in (
            event_from_row(seq, t, kind, actor, payload),
            event_from_row(seq, t, kind, actor, json.loads(payload)),
        ):
            assert type(got) is type(e)
            assert got == slow and repr(got) == repr(slow), kind
            assert event_to_json(got) == event_to_json(slow)
            with pytest.raises(dataclasses.FrozenInstanceError):
                got.t = 5.0  # type: ignore[misc]
    short = event_from_row(
        2, 1.0, "post_created", "a", '{"post_id":1,"text":"x","topic":"t","v":1}'
    )
    assert short == PostCreated(seq=2, t=1.0, actor="a", post_id=1, text="x", topic="t")


def _edit(lines: list[str], kind: str, change: Any) -> tuple[list[str], int]:
    """``lines`` with the first event of ``kind`` changed by ``change(obj)`` (or replaced by
    the text it returns); the line number of that event."""
    at = next(i for i, line in enumerate(lines) if json.loads(line)["kind"] == kind)
    obj = json.loads(lines[at])
    text = change(obj)
    out = list(lines)
    out[at] = text if isinstance(text, str) else json.dumps(obj)
    return out, at + 1


def _set(key: str, value: Any) -> Any:
    return lambda obj: obj.__setitem__(key, value)


def _set_payload(key: str, value: Any) -> Any:
    return lambda obj: obj["payload"].__setitem__(key, value)


def _drop(key: str) -> Any:
    return lambda obj: obj.__delitem__(key)


def _drop_payload(key: str) -> Any:
    return lambda obj: obj["payload"].__delitem__(key)


def _replace_line(text: str) -> Any:
    return lambda obj: text


def _huge_t(obj: dict[str, Any]) -> str:
    return json.dumps(obj).replace('"t": 0.0', '"t": 1' + "0" * 400)


def _lone_surrogate_text(obj: dict[str, Any]) -> str:
    obj["payload"]["text"] = "X"
    return json.dumps(obj).replace('"text": "X"', '"text": "a\\ud800b"')


BAD_LINES: list[tuple[str, str, Any, str]] = [
    # (id, kind of the line to break, change, the message after "FILE:LINE: ")
    (
        "window-not-open",
        "window_ended",
        _set_payload("window", 5),
        "window_ended for window 5 but window 1 is open",
    ),
    (
        "actor-int",
        "window_started",
        _set("actor", 123),
        "actor: expected a string or null, got the integer 123",
    ),
    (
        "tone-int",
        "post_created",
        _set_payload("tone", 5),
        "payload.tone: expected a string or null, got the integer 5",
    ),
    ("unknown-key", "dm_sent", _set("foo", 1), "unknown key 'foo'"),
    ("missing-kind", "agent_registered", _drop("kind"), "missing key 'kind'"),
    (
        "null",
        "agent_registered",
        _replace_line("null"),
        "expected a JSON object with the keys seq, t, kind, actor, payload, got null",
    ),
    (
        "array",
        "agent_registered",
        _replace_line("[1, 2]"),
        "expected a JSON object with the keys seq, t, kind, actor, payload, got an array",
    ),
    (
        "t-nan",
        "agent_registered",
        _set("t", float("nan")),
        "not valid JSON: NaN is not a JSON number",
    ),
    (
        "payload-infinity",
        "window_started",
        _set_payload("t_end", float("-inf")),
        "not valid JSON: -Infinity is not a JSON number",
    ),
    (
        "number-out-of-range",
        "agent_registered",
        lambda obj: json.dumps(obj).replace('"t": 0.0', '"t": 1e999'),
        "not valid JSON for a log: the number 1e999 is out of range",
    ),
    (
        "duplicate-key",
        "dm_sent",
        lambda obj: json.dumps(obj)[:-1] + ', "kind": "post_created"}',
        "not valid JSON for a log: the key 'kind' appears twice",
    ),
    (
        "float-field-huge-int",
        "window_started",
        _set_payload("t_end", 10**30),
        "payload.t_end: expected a number or null, got an integer of 31 digits",
    ),
    (
        "t-string",
        "agent_registered",
        _set("t", "now"),
        "t: expected a finite number, got the string 'now'",
    ),
    (
        "t-huge",
        "agent_registered",
        _huge_t,
        "t: expected a finite number, got an integer of 401 digits",
    ),
    (
        "seq-bool",
        "agent_registered",
        _set("seq", True),
        "seq: expected an integer, got the boolean true",
    ),
    ("kind-unknown", "dm_sent", _set("kind", "poked"), "kind: unknown event kind 'poked'"),
    (
        "payload-array",
        "dm_sent",
        _set("payload", [1]),
        "payload: expected an object, got an array",
    ),
    (
        "payload-field",
        "dm_sent",
        _set_payload("extra", 1),
        "payload.extra: unknown field of a dm_sent event",
    ),
    (
        "payload-missing",
        "dm_sent",
        _drop_payload("recipient"),
        "payload: missing field 'recipient' of a dm_sent event",
    ),
    (
        "payload-version",
        "dm_sent",
        _set_payload("v", True),
        "payload.v: schema version True, this friendsim reads version 1",
    ),
    (
        "window-bool",
        "window_started",
        _set_payload("window", True),
        "payload.window: expected an integer, got the boolean true",
    ),
    (
        "mentions-int",
        "post_created",
        _set_payload("mentions", ["a00", 7]),
        "payload.mentions[1]: expected a string, got the integer 7",
    ),
    (
        "post-id-64bit",
        "post_created",
        _set_payload("post_id", 2**64),
        "payload.post_id: expected a 64-bit integer, got the integer 18446744073709551616",
    ),
    (
        "surrogate",
        "post_created",
        _lone_surrogate_text,
        "payload.text: not valid Unicode (lone surrogate \\ud800 at character 2)",
    ),
    (
        "nested",
        "agent_registered",
        _replace_line("[" * 100_000 + "]" * 100_000),
        "not valid JSON: nested too deeply",
    ),
    (
        "not-json",
        "agent_registered",
        _replace_line("{'seq': 1}"),
        "not valid JSON: Expecting property name enclosed in double quotes (column 2)",
    ),
]


@pytest.mark.parametrize(
    ("kind", "change", "message"), [b[1:] for b in BAD_LINES], ids=[b[0] for b in BAD_LINES]
)
def test_import_refuses_a_bad_line_naming_it(
    run_log: tuple[Path, list[str]], tmp_path: Path, kind: str, change: Any, message: str
) -> None:
    """Each line is checked by the rules a run writes by (exact keys, JSON types, valid
    Unicode, windows that nest): exit 2, one line naming the file, the line and the key, and no
    database left behind. (Before: several were imported, the rest gave a traceback or a
    message without the line.)"""
    lines, lineno = _edit(run_log[1], kind, change)
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = _cli("log", "import", src, tmp_path / "x.db")
    assert (code, out) == (2, "")
    assert err == f"friendsim log import: {src}:{lineno}: {message}\n"
    assert not list(tmp_path.glob("x.db*"))


def test_import_refuses_bytes_that_are_not_utf8_naming_the_line(
    run_log: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """A binary file, or a stray byte in a log: the line and the byte, not a bare codec error
    without the file name (before: "'utf-8' codec can't decode byte 0x99 in position 0")."""
    src = tmp_path / "bin.jsonl"
    src.write_bytes(b"\x99\x00\x01garbage\n")
    code, _, err = _cli("log", "import", src, tmp_path / "x.db")
    assert (code, err) == (
        2,
        f"friendsim log import: {src}:1: not UTF-8 text: byte 0x99 at character 1\n",
    )
    lines = [line.encode() for line in run_log[1]]
    lines[6] = lines[6][:30] + b"\xff" + lines[6][30:]
    src.write_bytes(b"\n".join(lines) + b"\n")
    code, _, err = _cli("log", "import", src, tmp_path / "x.db")
    assert (code, err) == (
        2,
        f"friendsim log import: {src}:7: not UTF-8 text: byte 0xff at character 31\n",
    )
    assert not list(tmp_path.glob("x.db*"))


async def test_import_refuses_a_window_ended_when_none_is_open(db: Path, tmp_path: Path) -> None:
    """The window rule analysis reads a log by: a window_ended closes the open window only."""
    p = await Platform.open(db)
    try:
        await p.record(WindowStarted(t=5.0, window=1))
        await p.record(WindowEnded(t=6.0, window=1))
        await p.record(WindowEnded(t=6.0, window=1))  # the live platform records it
    finally:
        await p.close()
    out = tmp_path / "w.jsonl"
    assert await replay.export_jsonl(db, out) == 9
    with pytest.raises(
        replay.LogImportError, match=r"w.jsonl:9: window_ended for window 1 but no window is open"
    ):
        await replay.import_jsonl(out, tmp_path / "w.db")
    assert not _leftovers(tmp_path, "w.db*")
    # a window started while one is open abandons it (a resumed run): accepted
    lines = out.read_text().splitlines()
    obj = json.loads(lines[7])
    obj["kind"], obj["payload"] = "window_started", {"v": 1, "window": 2, "mode": "rounds"}
    lines[7] = json.dumps(obj)
    lines[8] = lines[8].replace('"window":1', '"window":2')
    out.write_text("\n".join(lines) + "\n")
    assert await replay.import_jsonl(out, tmp_path / "w.db") == 9


async def test_an_import_that_cannot_be_written_says_so_once(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that fails (a full disk) is no line's fault: the message names the file and the
    cause, not the platform's "reopen it to resume", and nothing is left behind."""
    from friendsim.platform.store import Store

    out = tmp_path / "log.jsonl"
    await replay.export_jsonl(db, out)

    async def full_disk(self: Store, events: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "commit", full_disk)
    with pytest.raises(replay.LogImportError) as caught:
        await replay.import_jsonl(out, tmp_path / "f.db", batch_size=2)
    assert (
        str(caught.value) == f"{out}: could not write {tmp_path / 'f.db'}: database or disk is full"
    )
    assert not _leftovers(tmp_path, "f.db*")


def _renumber(lines: list[str], numbers: dict[int, int]) -> tuple[list[str], list[int]]:
    """``lines`` with window w's window_started and window_ended numbered ``numbers[w]``; the
    line numbers of the window_started lines."""
    out, starts = [], []
    for i, line in enumerate(lines):
        obj = json.loads(line)
        if obj["kind"] in ("window_started", "window_ended"):
            w = obj["payload"]["window"]
            obj["payload"]["window"] = numbers.get(w, w)
            if obj["kind"] == "window_started":
                starts.append(i + 1)
            line = json.dumps(obj)
        out.append(line)
    return out, starts


@pytest.mark.parametrize(
    ("numbers", "at", "message"),
    [
        (
            {2: 1},
            1,
            "window_started for window 1, but window 1 already ended (seq {end}): "
            "a run starts each window once",
        ),
        (
            {2: 5},
            2,
            "window_started for window 3 after window 5 started: window numbers never go back",
        ),
    ],
    ids=["window-again-after-it-ended", "window-numbers-go-back"],
)
def test_import_refuses_windows_a_run_never_writes(
    run_log: tuple[Path, list[str]],
    tmp_path: Path,
    numbers: dict[int, int],
    at: int,
    message: str,
) -> None:
    """A window number that already ended (the rewards then gave two rows per agent for it,
    the ties two results with one number, the graphs merged them) or one lower than the last
    started is refused at its window_started, naming its line and the earlier window_ended's
    seq; nothing is written.
    (Before: both were imported.)"""
    lines, starts = _renumber(run_log[1], numbers)
    lineno = starts[at]
    end = max(
        json.loads(line)["seq"]
        for line in lines[: lineno - 1]
        if json.loads(line)["kind"] == "window_ended"
    )
    src = tmp_path / "w.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = _cli("log", "import", src, tmp_path / "x.db")
    assert (code, out) == (2, "")
    assert err == f"friendsim log import: {src}:{lineno}: {message.format(end=end)}\n"
    assert not list(tmp_path.glob("x.db*"))


def test_import_accepts_window_numbers_that_skip(
    run_log: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """Windows 1, 2, 7: increasing, each once; the analyses score the windows that are there."""
    lines, _ = _renumber(run_log[1], {3: 7})
    src = tmp_path / "w.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, err = _cli("log", "import", src, tmp_path / "x.db")
    assert (code, err) == (0, "")
