"""Benchmark: verify (rebuild from the log + compare) a large event log.

Builds a valid log of ``--events`` events (default 1,000,000; ``--quick``: 100,000) shaped like a
rounds run (per window: feeds served, posts, comments, votes, follows, DMs, guidance) by bulk
insertion through the platform's own projection (setup, not timed), then times
``friendsim.rundir.verify.verify_db`` (the one log verifier) on it.

    .venv/bin/python bench/replay.py [--quick] [--events N] [--profile]

The FINAL line is one JSON object: events, db_mb, build_s, verify_s, events_per_s, ok, and the
CPU seconds of the verifying process (``main_cpu_s``: reading, inserting, comparing) and of its
decoding workers (``workers_cpu_s``), plus the 1-minute load average: on a shared machine the
wall time depends on the other load, the CPU figures do not.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from friendsim.platform.events import (
    AgentRegistered,
    DirectMessageSent,
    Event,
    FeedServed,
    Followed,
    GuidanceIssued,
    PostCreated,
    VoteCast,
    WindowEnded,
    WindowStarted,
)
from friendsim.platform.projection import plan
from friendsim.rundir.verify import create_schema, default_workers, verify_db
from friendsim.vocabulary import Tip

TOPICS = ("renewables", "carbon tax", "heat waves", "flooding", "electric cars", "diet")
TONES = ("supportive", "neutral", "critical")


def generate(n_events: int, *, n_agents: int = 200, seed: int = 0):
    """Yield valid events (seq from 1) until ``n_events`` were produced."""
    rng = random.Random(seed)
    agents = [f"a{i:04d}" for i in range(n_agents)]
    seq = 0
    t = 0.0
    post_author: list[str] = [""]
    post_topic: list[str] = [""]
    votes: set[tuple[str, int]] = set()
    follows: set[tuple[str, str]] = set()
    dm_id = 0

    def nxt() -> int:
        nonlocal seq
        seq += 1
        return seq

    for a in agents:
        yield AgentRegistered(
            seq=nxt(), t=t, actor=a, name=a.upper(), attributes={"group": str(rng.randrange(3))}
        )
    w = 0
    while True:
        w += 1
        t = (w - 1) * 3600.0
        yield WindowStarted(seq=nxt(), t=t, window=w, mode="rounds", t_end=t + 3600.0)
        recent = list(range(max(1, len(post_author) - 300), len(post_author)))
        for a in agents:
            shown = tuple(rng.sample(recent, min(10, len(recent)))) if recent else ()
            yield FeedServed(
                seq=nxt(),
                t=t,
                actor=a,
                ranker="full",
                post_ids=shown,
                topics=tuple(post_topic[p] for p in shown),
            )
        t += 1200.0
        for a in agents:
            topic = rng.choice(TOPICS)
            pid = len(post_author)
            mentions = (rng.choice(agents),) if rng.random() < 0.2 else ()
            yield PostCreated(
                seq=nxt(),
                t=t,
                actor=a,
                post_id=pid,
                topic=topic,
                mentions=mentions,
                text=f"Post {pid} by {a} about {topic}: " + "blah " * rng.randrange(5, 30),
                tone=rng.choice(TONES),
            )
            post_author.append(a)
            post_topic.append(topic)
            if recent and rng.random() < 0.5:
                parent = rng.choice(recent)
                pid = len(post_author)
                yield PostCreated(
                    seq=nxt(),
                    t=t,
                    actor=a,
                    post_id=pid,
                    topic=post_topic[parent],
                    text=f"Reply to {parent}: interesting.",
                    parent_id=parent,
                    root_id=parent,
                    tone=rng.choice(TONES),
                )
                post_author.append(a)
                post_topic.append(post_topic[parent])
            if rng.random() < 0.2:
                b = rng.choice(agents)
                if b != a and (a, b) not in follows:
                    follows.add((a, b))
                    yield Followed(seq=nxt(), t=t, actor=a, target=b)
            if rng.random() < 0.3:
                b = rng.choice(agents)
                if b != a:
                    dm_id += 1
                    yield DirectMessageSent(
                        seq=nxt(),
                        t=t,
                        actor=a,
                        dm_id=dm_id,
                        recipient=b,
                        text=f"Hi {b}, about {topic}...",
                        topic=topic,
                        tone="supportive",
                    )
        t += 1200.0
        fresh = list(range(max(1, len(post_author) - 300), len(post_author)))
        for a in agents:
            for p in rng.sample(fresh, min(3, len(fresh))):
                if post_author[p] != a and (a, p) not in votes:
                    votes.add((a, p))
                    yield VoteCast(
                        seq=nxt(),
                        t=t,
                        actor=a,
                        post_id=p,
                        author=post_author[p],
                        value=rng.choice((1, 1, -1)),
                    )
        t = w * 3600.0
        yield WindowEnded(seq=nxt(), t=t, window=w)
        for a in agents:
            tip = Tip(
                action="DM",
                target=rng.choice(agents),
                topic=rng.choice(TOPICS),
                invite_mention=True,
                tone="supportive",
                text="Reach out to a peer.",
            )
            yield GuidanceIssued(seq=nxt(), t=t, actor="coach", agent=a, window=w, tips=(tip,))
        if seq >= n_events:
            return


def build(path: Path, n_events: int) -> int:
    """Bulk-load a valid log (and its projections) into a new database; returns the count."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA foreign_keys = ON")
    create_schema(conn)
    batch: list[Event] = []
    n = 0

    def commit() -> None:
        conn.execute("BEGIN")
        for sql, rows in plan(batch):
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
        batch.clear()

    for e in generate(n_events):
        batch.append(e)
        n += 1
        if len(batch) >= 20000:
            commit()
    commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="100,000 events")
    ap.add_argument("--events", type=int, default=None)
    ap.add_argument("--profile", action="store_true", help="pyinstrument profile of verify")
    ap.add_argument("--workers", type=int, default=default_workers(), help="decoding processes")
    args = ap.parse_args()
    n = args.events or (100_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        db = Path(tmp) / "events.db"
        t0 = time.perf_counter()
        count = build(db, n)
        build_s = time.perf_counter() - t0
        size_mb = db.stat().st_size / 1e6
        print(f"built {count} events ({size_mb:.0f} MB) in {build_s:.1f}s", file=sys.stderr)
        if args.profile:
            from pyinstrument import Profiler

            prof = Profiler()
            prof.start()
        r0s = resource.getrusage(resource.RUSAGE_SELF)
        r0c = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        report = verify_db(db, scratch=tmp, workers=args.workers)
        verify_s = time.perf_counter() - t0
        r1s = resource.getrusage(resource.RUSAGE_SELF)
        r1c = resource.getrusage(resource.RUSAGE_CHILDREN)
        main_cpu = (r1s.ru_utime + r1s.ru_stime) - (r0s.ru_utime + r0s.ru_stime)
        workers_cpu = (r1c.ru_utime + r1c.ru_stime) - (r0c.ru_utime + r0c.ru_stime)
        if args.profile:
            prof.stop()
            print(prof.output_text(unicode=False, color=False), file=sys.stderr)
        out = {
            "bench": "replay_verify",
            "events": report.events,
            "db_mb": round(size_mb, 1),
            "build_s": round(build_s, 2),
            "verify_s": round(verify_s, 2),
            "events_per_s": round(report.events / verify_s),
            "ok": report.ok,
            "main_cpu_s": round(main_cpu, 2),
            "workers_cpu_s": round(workers_cpu, 2),
            "workers": args.workers,
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
