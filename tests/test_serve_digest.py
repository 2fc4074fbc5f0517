"""The live view's per-window digest (``api/run``, ``api/status``, ``api/windows``) reads only the
event kinds its reward scorer and tie tracker read, decoded by orjson and built slot by slot;
its JSON is byte for byte what the old digest gave, which decoded every row of the log with the
stdlib and the dataclasses. The old digest is kept here as the reference (:class:`_OldDigest`),
and both are run on real logs: a rounds run with the coach, moderation, every scheduled
intervention and a survey; a continuous run (follows count as actions there); and a log written
through the platform's commands with what the baseline policy rarely does (changed and cleared
votes, unfollows, comments, mentions, an abandoned window, events outside windows). Each is
also followed as it grows, one row at a time, as a live run is."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_support import background, run_cli, tip

from friendsim.analysis.rewards_params import COMPONENTS
from friendsim.analysis.ties import symmetrise
from friendsim.platform import Platform, VirtualClock
from friendsim.platform.events import (
    EVENT_TYPES,
    Event,
    GuidanceIssued,
    WindowEnded,
    WindowStarted,
    _fields_of,
)
from friendsim.platform.feeds import make_ranker
from friendsim.serve.digest import PAGE, RunDigest, _r
from friendsim.serve.logfile import LogFile, LogReadError

pytest.importorskip("starlette", reason="the serve extra is part of the test install")
pytestmark = pytest.mark.slow

ROUNDS = """
[experiment]
name = "digest-kinds"
seed = 11
theme = "climate change"
mode = "rounds"
rounds = 5
n_actions = 3

[agents]
count = 10
personas = "synthetic"
policy = "baseline"

[coach]
enabled = true
kind = "rule"

[feed]
ranker = "full"
limit = 30

[ties]
thresholds = [0.05, 0.1]

[moderation]
enabled = true
kind = "rule"
params = { false_action = "label", toxic_action = "remove", toxicity = 0.8, keywords = ["idiot"], strikes_to_suspend = 2, suspend_windows = 1 }

[[interventions]]
kind = "reward_mix"
window = 2
agents = ["a01", "a02"]
dominant = "SOC"

[[interventions]]
kind = "suspend"
window = 3
agents = ["a03"]
windows = 1

[[interventions]]
kind = "add_agents"
window = 3
count = 2

[[interventions]]
kind = "inject"
window = 2
by = "newsdesk"
items = [{ id = "i1", text = "Breaking: climate news", topic = "climate policy", source = "wire", truth = "false" }]

[[interventions]]
kind = "broadcast"
window = 4
text = "Be kind"
sender = "ops"

[[interventions]]
kind = "ranker"
window = 4
ranker = "chrono"
limit = 20

[[surveys]]
name = "panel"
windows = [2, 4]
questions = ["stance", "trust"]
"""

CONTINUOUS = """
[experiment]
name = "digest-continuous"
seed = 1
theme = "climate change"
mode = "continuous"
n_actions = 1
window_length = 3600.0
duration = 14400.0
tick = 60.0
wake_rate = 3.0
activity_sigma = 0.5

[agents]
count = 12
personas = "synthetic"
policy = "baseline"

[coach]
enabled = true
kind = "rule"

[feed]
ranker = "chrono"
limit = 20
"""


# --- the reference: the digest as it was, decoding every row --------------------------------


def _old_event_from_row(seq: int, t: float, kind: str, actor: str | None, payload: str) -> Event:
    data = json.loads(payload)
    assert data.pop("v") == 1
    return EVENT_TYPES[kind](seq=seq, t=t, actor=actor, **_fields_of(kind, data))


def _old_read_events(db: Path, from_seq: int, limit: int) -> list[Event]:
    con = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        rows = con.execute(
            "SELECT seq, t, kind, actor, payload FROM events WHERE seq >= ? ORDER BY seq LIMIT ?",
            (from_seq, limit),
        ).fetchall()
    finally:
        con.close()
    return [_old_event_from_row(*r) for r in rows]


class _OldDigest(RunDigest):
    """:class:`RunDigest` with the old :meth:`update`: every row of the log read and decoded."""

    def update(self) -> int:
        with self._lock:
            if self._scorer is None:
                if self.log.last_seq() == 0:
                    return 0
                self._start()
            scorer, ties = self._scorer, self._ties
            assert scorer is not None and ties is not None
            while True:
                events = _old_read_events(self.log.path, self.next_seq, PAGE)
                if not events:
                    break
                for ev in events:
                    scores = scorer.feed(ev)
                    tw = ties.feed(ev)
                    if isinstance(ev, WindowStarted):
                        self._open[ev.window] = ev.seq
                    if isinstance(ev, WindowEnded):
                        self.windows.append(
                            {
                                "window": ev.window,
                                "start_seq": self._open.pop(ev.window, None),
                                "end_seq": ev.seq,
                                "t": ev.t,
                                "rewards": {
                                    s.agent: {
                                        **{c: _r(s.components[c]) for c in COMPONENTS},
                                        "total": _r(s.total),
                                    }
                                    for s in sorted(scores, key=lambda s: s.agent)
                                },
                                "ties": sorted(
                                    [*sorted(k), _r(v)]
                                    for k, v in symmetrise(tw.strengths if tw else {}).items()
                                    if v >= self.theta_min
                                ),
                            }
                        )
                self.next_seq = events[-1].seq + 1
                if len(events) < PAGE:
                    break
            return len(self.windows)


def _body(value: Any) -> bytes:
    """``value`` as the routes send it (starlette's ``JSONResponse``)."""
    from starlette.responses import JSONResponse

    return bytes(JSONResponse(value).body)


def _agent_only(windows: list[dict[str, Any]], agent: str) -> list[dict[str, Any]]:
    """``api/windows?agent=``'s filter (``friendsim/serve/app.py``)."""
    return [
        {**w, "rewards": {a: r for a, r in w["rewards"].items() if a == agent}} for w in windows
    ]


def _every_answer(digest: RunDigest, agents: list[str]) -> list[bytes]:
    """The bodies of ``api/run``, ``api/status`` and ``api/windows`` (from several windows on,
    and for each of ``agents``) as the digest answers them now."""
    out = [_body(digest.info()), _body(digest.info(agents=False))]
    last = len(digest.windows)
    for first in (1, 2, last, last + 1):
        out.append(_body({"windows": digest.windows_from(first)}))
    for agent in agents:
        out.append(_body({"windows": _agent_only(digest.windows_from(1), agent)}))
    return out


# --- the logs ---------------------------------------------------------------------------------


def _run(tmp: Path, config: str) -> Path:
    (tmp / "cfg.toml").write_text(config)
    proc = run_cli("run", str(tmp / "cfg.toml"), "--out", str(tmp / "run"), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


async def _platform_log(run: Path) -> None:
    """A log of what the baseline policy rarely does, written by the platform's commands (no
    manifest: the digest takes the default parameters)."""
    clock = VirtualClock()
    p = await Platform.open(run / "events.db", clock=clock)
    chrono = make_ranker("chrono")
    try:
        for a in ("a0", "a1", "a2", "a3"):
            await p.register_agent(a, name=a.upper())
        early = await p.create_post("a3", text="before any window", topic="Early Bird")
        await p.record(WindowStarted(t=0.0, window=1))
        await p.record(WindowStarted(t=0.0, window=1))  # the first start is abandoned
        for w in (1, 2, 3, 4):
            if w > 1:
                await p.record(WindowStarted(t=clock.now(), window=w))
            await p.serve_feed("a1", chrono, limit=10)
            post = await p.create_post(
                "a0", text="a great day", topic=f"topic {w % 2}", mentions=["a1", "a2"]
            )
            reply = await p.create_post(
                "a1", text="awful, sad and wrong", topic="t", parent_id=post.post_id
            )
            await p.create_post("a2", text="@a0 thanks!", topic="t", parent_id=reply.post_id)
            await p.create_post("a0", text="self reply", topic="t", parent_id=post.post_id)
            await p.vote("a1", post.post_id, 1)
            await p.vote("a2", post.post_id, -1)
            await p.vote("a2", post.post_id, 1)  # changed
            await p.vote("a3", reply.post_id, 1)
            await p.vote("a3", reply.post_id, 0)  # cleared
            await p.vote("a2", early.post_id, 1 if w % 2 else -1)
            await p.send_dm("a2", "a0", text="love it", topic="Topic 9", mentions=["a1"])
            if w > 1:
                await p.send_dm("a0", "a2", text="thank you, friend")
            if w == 2:
                await p.follow("a1", "a0")
                await p.follow("a2", "a0")
            if w == 3:
                await p.unfollow("a1", "a0")
            await p.serve_feed("a2", chrono, limit=10)
            clock.advance_to(clock.now() + 60.0)
            await p.record(WindowEnded(t=clock.now(), window=w))
            await p.record(
                GuidanceIssued(
                    t=clock.now(), actor="coach", agent="a1", window=w, tips=(tip("DM", "a0"),)
                )
            )
            await p.send_dm("a3", "a1", text="between windows")
        await p.record(WindowStarted(t=clock.now(), window=5))  # open at the end of the log
        await p.create_post("a3", text="late", topic="t")
        await p.flush()
    finally:
        await p.close()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import asyncio

    out = {
        "rounds": _run(tmp_path_factory.mktemp("rounds"), ROUNDS),
        "continuous": _run(tmp_path_factory.mktemp("continuous"), CONTINUOUS),
    }
    out["platform"] = tmp_path_factory.mktemp("platform") / "run"
    out["platform"].mkdir()
    asyncio.run(_platform_log(out["platform"]))
    return out


EXPECTED_KINDS = {
    "rounds": {
        "agent_registered",
        "agent_suspended",
        "broadcast_sent",
        "dm_sent",
        "feed_changed",
        "feed_served",
        "guidance_issued",
        "intervention_applied",
        "item_injected",
        "persona_changed",
        "post_created",
        "survey_answered",
        "vote_cast",
        "window_ended",
        "window_started",
    },
    "continuous": {"dm_sent", "followed", "guidance_issued", "post_created", "feed_served"},
    "platform": {
        "vote_changed",
        "vote_cleared",
        "unfollowed",
        "followed",
        "dm_sent",
        "guidance_issued",
        "feed_served",
    },
}
"""Kinds each log must hold (the runs are seeded; a change of the policy that loses one fails
here rather than leaving a kind untested)."""


def _rows(run: Path) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"{(run / 'events.db').as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return con.execute(
            "SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"
        ).fetchall()
    finally:
        con.close()


def _agents(run: Path) -> list[str]:
    rows = _rows(run)
    registered = sorted({r[3] for r in rows if r[2] == "agent_registered"})
    return [*registered, "coach", "nobody"]


@pytest.mark.parametrize("name", ["rounds", "continuous", "platform"])
def test_the_digest_answers_what_the_old_one_did(logs: dict[str, Path], name: str) -> None:
    run = logs[name]
    kinds = {r[2] for r in _rows(run)}
    assert EXPECTED_KINDS[name] <= kinds
    new, old = RunDigest(run), _OldDigest(run)
    got, want = _every_answer(new, _agents(run)), _every_answer(old, _agents(run))
    assert got == want
    windows = json.loads(got[2])["windows"]
    assert len(windows) == sum(1 for r in _rows(run) if r[2] == "window_ended") >= 4
    assert any(w["ties"] for w in windows) and all(w["rewards"] for w in windows)
    assert json.loads(got[0])["last_seq"] == len(_rows(run))


@pytest.mark.parametrize("name", ["rounds", "continuous", "platform"])
def test_the_tie_tracker_reads_only_the_kinds_it_declares(logs: dict[str, Path], name: str) -> None:
    """``TIE_EVENTS`` is every kind that changes tie strengths: the tracker fed only those
    events of a log ends every window where it does fed all of them (the digest skips the rest;
    today the scorer reads all of them too, so the digest's own comparison could not tell)."""
    from friendsim.analysis.rewards_params import RewardParams
    from friendsim.analysis.sentiment import get_sentiment
    from friendsim.analysis.ties import TIE_EVENTS, TieParams, tie_windows

    events = [_old_event_from_row(*r) for r in _rows(logs[name])]
    sentiment = get_sentiment(RewardParams().sentiment)
    every = tie_windows(events, params=TieParams(), sentiment=sentiment)
    only = tie_windows(
        [e for e in events if type(e) in TIE_EVENTS], params=TieParams(), sentiment=sentiment
    )
    assert [(w.window, w.strengths, w.active, w.evidence) for w in only] == [
        (w.window, w.strengths, w.active, w.evidence) for w in every
    ]
    assert any(w.strengths for w in every)


def _grow(src: Path, dst: Path) -> Iterator[int]:
    """``dst``: a run directory whose log receives ``src``'s rows one at a time (each in its
    own commit, as a live run's land); yields the seq just committed."""
    dst.mkdir()
    for name in ("manifest.json", "personas.jsonl"):
        if (src / name).exists():
            shutil.copy(src / name, dst / name)
    con = sqlite3.connect(dst / "events.db")
    try:
        con.execute(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, t REAL NOT NULL, kind TEXT NOT NULL,"
            " actor TEXT, payload TEXT NOT NULL)"
        )
        con.commit()
        for row in _rows(src):
            con.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)", row)
            con.commit()
            yield row[0]
    finally:
        con.close()


@pytest.mark.parametrize("page", [PAGE, 3])
@pytest.mark.parametrize("name", ["rounds", "platform"])
def test_a_growing_log_is_followed_as_the_old_digest_did(
    logs: dict[str, Path], name: str, page: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After every row (a window's first and last, a guidance the digest does not read, a
    vote...), the digest updated from where it was answers what the old one does; also when
    it reads the log in pages of three rows (pages that end on a row of a kind it reads, on
    one it skips, and on the log's last row)."""
    monkeypatch.setattr("friendsim.serve.digest.PAGE", page)
    run = tmp_path / "run"
    new, old = RunDigest(run), _OldDigest(run)
    agents = _agents(logs[name])[:3]
    for seq in _grow(logs[name], run):
        got = [_body(new.info(agents=False)), _body({"windows": new.windows_from(1)})]
        want = [_body(old.info(agents=False)), _body({"windows": old.windows_from(1)})]
        assert got == want, f"after seq {seq}"
        assert new.next_seq == seq + 1
    assert _every_answer(new, agents) == _every_answer(RunDigest(run), agents)
    assert _every_answer(new, agents) == _every_answer(old, agents)


def _edit(run: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    """One change to the log, closed at once (the log is in WAL mode: closing the only
    connection folds the change into the file, which the readers here read immutable)."""
    con = sqlite3.connect(run / "events.db")
    try:
        con.execute(sql, params)
        con.commit()
    finally:
        con.close()
    assert not (run / "events.db-wal").exists()


def test_the_digest_never_decodes_a_kind_it_does_not_read(
    logs: dict[str, Path], tmp_path: Path
) -> None:
    """A broken guidance row (a kind neither the scorer nor the tie tracker reads) does not
    reach the digest, which the old one failed on; a broken row of a kind it reads fails as it
    always did, with the same message."""
    from friendsim.platform.events import event_from_row

    run = tmp_path / "run"
    shutil.copytree(logs["platform"], run)
    intact = _every_answer(RunDigest(run), ["a1"])
    _edit(run, "UPDATE events SET payload = '{broken' WHERE kind = 'guidance_issued'")
    assert _every_answer(RunDigest(run), ["a1"]) == intact
    with pytest.raises(json.JSONDecodeError):
        _OldDigest(run).update()
    first_post = "(SELECT MIN(seq) FROM events WHERE kind = 'post_created')"
    for bad in ("{broken", '{"v": 2}', '{"v": 1, "post_id": 1, "extra": 0}', "[1]", "NaN"):
        _edit(run, f"UPDATE events SET payload = ? WHERE seq = {first_post}", (bad,))
        row = next(r for r in _rows(run) if r[4] == bad)
        with pytest.raises(ValueError) as old_err:
            event_from_row(*row)
        with pytest.raises(LogReadError) as new_err:
            RunDigest(run).update()
        assert str(new_err.value) == f"{LogFile(run / 'events.db').path}: {old_err.value}"


def test_the_routes_answer_the_old_digests_bytes(logs: dict[str, Path]) -> None:
    """Over HTTP: ``api/run``, ``api/status`` and ``api/windows`` (all, from a window on, one
    agent's) are byte for byte the old digest's answer, as the routes render it."""
    run = logs["rounds"]
    old = _OldDigest(run)
    with background("serve", str(run), "--port", "0") as (_, url):
        got = {
            "run": httpx.get(f"{url}api/run", timeout=60).content,
            "status": httpx.get(f"{url}api/status", timeout=60).content,
            "windows": httpx.get(f"{url}api/windows", timeout=60).content,
            "from": httpx.get(f"{url}api/windows", params={"from": 3}, timeout=60).content,
            "a01": httpx.get(f"{url}api/windows", params={"agent": "a01"}, timeout=60).content,
        }
    want = {
        "run": _body({**old.info(), "control": False}),
        "status": _body({**old.info(agents=False), "control": False}),
        "windows": _body({"windows": old.windows_from(1)}),
        "from": _body({"windows": old.windows_from(3)}),
        "a01": _body({"windows": _agent_only(old.windows_from(1), "a01")}),
    }
    assert got == want


def test_an_integer_beyond_64_bits_is_decoded_as_the_stdlib_decodes_it(
    logs: dict[str, Path],
) -> None:
    """orjson reads an integer beyond 64 bits as a float (2**64 + 1 as 2**64), the stdlib as
    the integer: a hand-edited payload spelling one is decoded by the stdlib, so the event is
    the one the old digest read."""
    from friendsim.platform.events import event_from_row
    from friendsim.serve.logfile import _event

    post = next(r for r in _rows(logs["platform"]) if r[2] == "post_created")
    data = json.loads(post[4])
    data["post_id"] = 2**64 + 1
    row = (*post[:4], json.dumps(data, separators=(",", ":"), sort_keys=True))
    event = _event(*row)
    assert event == event_from_row(*row)
    assert type(event.post_id) is int and event.post_id == 2**64 + 1  # type: ignore[attr-defined]
