"""Benchmark: platform write throughput with live subscribers, and feed latency on a big DB.

1. Throughput. Register agents and run a seeded mix of commands (posts and comments with
   mentions, votes incl. changes and clears, follows/unfollows, DMs, runtime records) through
   ``Platform``, with two bus subscribers consuming every event. Reported: events committed AND
   delivered to both subscribers per second (clock stops when both have the last seq).
2. Feeds. A database with 10,000 agents and 1,000,000 posts (``--quick``: 100,000), bulk-loaded
   with ``executemany`` in a setup phase (not through commands; that DB has no log rows), plus
   follows and votes. Then ``serve_feed`` (rank + fetch + FeedServed) for random agents with each
   ranker; latency percentiles per ranker, setup excluded.

    .venv/bin/python bench/platform.py [--quick] [--seed N]

The FINAL line is one JSON object with all figures.
"""

from __future__ import annotations

import sys

if __name__ != "__main__":
    # This file's name equals the standard library's ``platform``; scripts run from bench/ have
    # this folder first on sys.path, so their ``import platform`` (or structlog's, via uuid) lands
    # here. Hand them the real standard-library module instead (the import system returns
    # whatever sys.modules holds after this module executes).
    import importlib.util
    import os as _os
    import sysconfig

    _spec = importlib.util.spec_from_file_location(
        "platform", _os.path.join(sysconfig.get_path("stdlib"), "platform.py")
    )
    assert _spec is not None and _spec.loader is not None
    _std = importlib.util.module_from_spec(_spec)
    sys.modules["platform"] = _std
    _spec.loader.exec_module(_std)
else:
    # run as a script: keep this folder off sys.path so `import platform` finds the stdlib
    _here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    sys.path[:] = [p for p in sys.path if p not in ("", _here) and not p.endswith("/bench")]

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

TOPICS = [f"topic {i}" for i in range(50)]
DAY = 86_400.0


async def throughput(
    tmp: Path, *, n_agents: int, n_commands: int, seed: int, batch_size: int = 1000
) -> dict[str, float]:
    from friendsim.platform import Platform, PlatformError
    from friendsim.platform.events import WindowEnded

    rng = random.Random(seed)
    p = await Platform.open(tmp / "throughput.db", batch_size=batch_size)
    got = [0, 0]
    done = asyncio.Event()
    target = {"seq": -1}

    async def consume(i: int) -> None:
        async with p.bus.subscribe(name=f"sub{i}", maxsize=4096) as sub:
            async for e in sub:
                got[i] += 1
                if e.seq == target["seq"] and all(g >= target["seq"] for g in got):
                    done.set()

    tasks = [asyncio.create_task(consume(i)) for i in range(2)]
    agents = [f"u{i}" for i in range(n_agents)]
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for a in agents:
        await p.register_agent(a, name=a, attributes={"g": str(rng.randrange(4))})
    posts = 0
    dms = 0
    rejected = 0
    for i in range(n_commands):
        a = rng.choice(agents)
        r = rng.random()
        try:
            if r < 0.30 or posts == 0:
                parent = rng.randint(1, posts) if posts and r < 0.10 else None
                mentions = [rng.choice(agents)] if r < 0.05 else ()
                e = await p.create_post(
                    a,
                    text="some text about things",
                    topic=rng.choice(TOPICS),
                    mentions=mentions,
                    parent_id=parent,
                )
                posts = e.post_id
            elif r < 0.75:
                await p.vote(a, rng.randint(max(1, posts - 5000), posts), rng.choice((1, 1, -1, 0)))
            elif r < 0.85:
                b = rng.choice(agents)
                if rng.random() < 0.8:
                    await p.follow(a, b)
                else:
                    await p.unfollow(a, b)
            elif r < 0.97:
                b = rng.choice(agents)
                reply = rng.randint(1, dms) if dms and rng.random() < 0.2 else None
                dms = (await p.send_dm(a, b, text="hi there", reply_to=reply)).dm_id
            else:
                await p.record(WindowEnded(t=0.0, window=i))
        except PlatformError:
            rejected += 1
        if i % 1000 == 999:
            p.clock.advance(1.0)
    target["seq"] = await p.flush()
    if not all(g >= target["seq"] for g in got):
        await done.wait()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await p.close()
    await asyncio.gather(*tasks)
    n = target["seq"]
    assert got == [n, n], (got, n)
    return {
        "events": n,
        "commands": n_agents + n_commands,
        "rejected_commands": rejected,
        "seconds": round(elapsed, 3),
        "events_per_s": round(n / elapsed),
        "process_cpu_s": round(cpu, 3),
        "events_per_cpu_s": round(n / cpu),
    }


def bulk_load(path: Path, *, n_agents: int, n_posts: int, seed: int) -> dict[str, float]:
    """Setup only: write agents, posts, follows and votes rows directly (schema via Platform)."""
    rng = random.Random(seed)
    t0 = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    agents = [f"u{i}" for i in range(n_agents)]
    groups = ["a", "b", "c", "d"]
    conn.executemany(
        "INSERT INTO agents(agent_id, name, attributes, t, seq) VALUES (?, ?, ?, 0, ?)",
        [
            (a, a, json.dumps({"g": rng.choice(groups), "h": rng.choice(groups)}), -(i + 1))
            for i, a in enumerate(agents)
        ],
    )
    span = 30 * DAY
    times = sorted(rng.uniform(0, span) for _ in range(n_posts))
    rows = []
    for i, t in enumerate(times, start=1):
        parent = rng.randint(max(1, i - 1000), i - 1) if i > 1 and rng.random() < 0.3 else None
        rows.append(
            (
                i,
                -(n_agents + i),
                t,
                rng.choice(agents),
                "bulk text",
                rng.choice(TOPICS),
                parent,
                parent,
                rng.randrange(20),
                rng.randrange(5),
                rng.randrange(5),
            )
        )
    conn.executemany(
        "INSERT INTO posts(post_id, seq, t, author, text, topic, parent_id, root_id, likes,"
        " dislikes, replies) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    follows = set()
    for a in agents:
        for b in rng.sample(agents, 50):
            if a != b:
                follows.add((a, b))
    conn.executemany(
        "INSERT INTO follows(follower, target, t, seq) VALUES (?, ?, 0, 0)", sorted(follows)
    )
    votes = {}
    for _ in range(n_posts // 2):
        pid = rng.randint(1, n_posts)
        voter = rng.choice(agents)
        if rows[pid - 1][3] != voter:
            votes[(voter, pid)] = (rng.choice((1, -1)), rows[pid - 1][2])
    conn.executemany(
        "INSERT INTO votes(voter, post_id, value, t, seq) VALUES (?, ?, ?, ?, 0)",
        [(v, pid, val, t) for (v, pid), (val, t) in votes.items()],
    )
    conn.commit()
    conn.close()
    return {
        "setup_s": round(time.perf_counter() - t0, 1),
        "votes": len(votes),
        "follows": len(follows),
        "span": span,
    }


async def feeds(tmp: Path, *, n_agents: int, n_posts: int, n_queries: int, seed: int) -> dict:
    from friendsim.platform import Platform, make_ranker

    path = tmp / "feeds.db"
    p = await Platform.open(path)
    await p.close()
    setup = bulk_load(path, n_agents=n_agents, n_posts=n_posts, seed=seed)
    t_open = time.perf_counter()
    p = await Platform.open(path)
    open_s = time.perf_counter() - t_open
    p.clock.advance_to(setup["span"])
    rng = random.Random(seed + 1)
    agents = await p.agent_ids()
    out: dict = {"setup": setup, "open_s": round(open_s, 2)}
    for name in ("full", "chrono", "popularity", "interest"):
        ranker = make_ranker(name)
        lat = []
        sizes = []
        for i in range(n_queries):
            agent = rng.choice(agents)
            t0 = time.perf_counter()
            views = await p.serve_feed(agent, ranker, limit=20)
            lat.append((time.perf_counter() - t0) * 1000)
            sizes.append(len(views))
            if i % 100 == 99:
                await p.flush()
        lat.sort()
        out[name] = {
            "p50_ms": round(statistics.median(lat), 3),
            "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 3),
            "max_ms": round(lat[-1], 3),
            "mean_items": round(sum(sizes) / len(sizes), 1),
        }
    await p.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, under a minute")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=1000, help="Platform batch_size")
    args = ap.parse_args()
    load_before = os.getloadavg()
    n_posts = 100_000 if args.quick else 1_000_000
    n_commands = 60_000 if args.quick else 300_000
    with tempfile.TemporaryDirectory(prefix="friendsim-bench-") as tmp:
        tp = await throughput(
            Path(tmp),
            n_agents=2_000,
            n_commands=n_commands,
            seed=args.seed,
            batch_size=args.batch_size,
        )
        print("throughput", json.dumps(tp))
        fd = await feeds(
            Path(tmp),
            n_agents=10_000,
            n_posts=n_posts,
            n_queries=300 if args.quick else 1000,
            seed=args.seed,
        )
        print("feeds", json.dumps(fd))
    result = {
        "bench": "platform",
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "batch_size": args.batch_size,
        "events_per_s": tp["events_per_s"],
        "throughput": tp,
        "feed_agents": 10_000,
        "feed_posts": n_posts,
        "feed_p99_ms": {
            k: v["p99_ms"] for k, v in fd.items() if isinstance(v, dict) and "p99_ms" in v
        },
        "feeds": fd,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
