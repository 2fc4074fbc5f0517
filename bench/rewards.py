"""Reward scoring throughput on a large synthetic event log.

Generates a seeded, realistic log (posts, comments, votes, DMs, follows, feeds, window markers;
~1000 agents, ~50 windows; default 1,000,000 events, ``--quick`` 100,000), then:

1. scores it in memory with ``score_log`` (VADER sentiment, the default) — the headline figure;
2. scores it again with the tiny lexicon sentiment model (scoring cost without VADER);
3. writes it to a real platform SQLite database (``Store``: events table + projections), and
   times decoding the ``events`` rows into events and the end-to-end ``rewards_table``.

Usage: ``.venv/bin/python bench/rewards.py [--quick] [--events N] [--no-sqlite]``.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from friendsim.analysis.rewards import score_log
from friendsim.analysis.rewards_cli import iter_events, rewards_table
from friendsim.analysis.rewards_synth import synthetic_log
from friendsim.analysis.sentiment import LexiconSentiment, VaderSentiment


async def write_store(path: Path, events: list) -> None:
    from friendsim.platform.store import Store

    store = await Store.open(path, synchronous="OFF")
    try:
        for i in range(0, len(events), 20_000):
            await store.commit(events[i : i + 20_000])
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k events instead of 1M")
    ap.add_argument("--events", type=int, default=None)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--windows", type=int, default=50)
    ap.add_argument("--no-sqlite", action="store_true", help="skip the SQLite decode timing")
    args = ap.parse_args()
    n = args.events or (100_000 if args.quick else 1_000_000)

    t0 = time.perf_counter()
    events = list(synthetic_log(n, n_agents=args.agents, n_windows=args.windows, seed=7))
    gen_s = time.perf_counter() - t0
    kinds = Counter(e.kind for e in events)
    texts = kinds["dm_sent"] + sum(
        1 for e in events if e.kind == "post_created" and e.parent_id is not None
    )
    print(f"generated {len(events):,} events in {gen_s:.1f}s: {dict(kinds)}")

    vader = VaderSentiment()
    t0, c0 = time.perf_counter(), time.process_time()
    scores = score_log(events, sentiment=vader)
    score_s, score_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"score_log (vader): {score_s:.2f}s, {len(scores):,} agent-window scores")

    t0, c0 = time.perf_counter(), time.process_time()
    score_log(events, sentiment=LexiconSentiment())
    lex_s, lex_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"score_log (lexicon): {lex_s:.2f}s")

    figures: dict[str, object] = {
        "bench": "rewards",
        "events": len(events),
        "agents": args.agents,
        "windows": args.windows,
        "texts_scored": texts,
        "scores": len(scores),
        "generate_s": round(gen_s, 2),
        "score_vader_s": round(score_s, 2),
        "score_vader_cpu_s": round(score_cpu, 2),
        "score_vader_events_per_s": round(len(events) / score_s),
        "score_lexicon_s": round(lex_s, 2),
        "score_lexicon_cpu_s": round(lex_cpu, 2),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "events.db"
            t0 = time.perf_counter()
            asyncio.run(write_store(db, events))
            write_s = time.perf_counter() - t0
            del events
            t0, c0 = time.perf_counter(), time.process_time()
            n_read = sum(1 for _ in iter_events(db))
            decode_s, decode_cpu = time.perf_counter() - t0, time.process_time() - c0
            t0, c0 = time.perf_counter(), time.process_time()
            rows = rewards_table(db)
            table_s, table_cpu = time.perf_counter() - t0, time.process_time() - c0
            assert n_read == figures["events"] and len(rows) == len(scores)
            print(
                f"sqlite write {write_s:.1f}s, decode {decode_s:.2f}s, rewards_table {table_s:.2f}s"
            )
            figures.update(
                {
                    "sqlite_write_s": round(write_s, 2),
                    "sqlite_decode_s": round(decode_s, 2),
                    "sqlite_decode_cpu_s": round(decode_cpu, 2),
                    "sqlite_decode_events_per_s": round(n_read / decode_s),
                    "rewards_table_s": round(table_s, 2),
                    "rewards_table_cpu_s": round(table_cpu, 2),
                }
            )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
