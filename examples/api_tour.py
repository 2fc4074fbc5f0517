"""A tour of friendsim's Python API, used the way a notebook would use it.

Runs the continuous example (timeline mode) with the baseline policy, which needs no model and
takes seconds, opens the run, prints a few figures and exports the log and the rewards to Parquet.

    python examples/api_tour.py            # into a temporary directory, removed at the end
    python examples/api_tour.py OUT_DIR    # keep the run and the Parquet files in OUT_DIR

The Parquet export needs the parquet extra: pip install 'friendsim[parquet]'.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path

from friendsim import api

EXAMPLE = Path(__file__).with_name("continuous.toml")


def tour(out_dir: Path) -> None:
    # 1. A config object: the example file with two settings changed.
    cfg = api.load_config(EXAMPLE, overrides={"agents.policy": "baseline", "agents.count": 30})
    print(f"experiment {cfg.experiment.name!r}: {cfg.agents.count} agents, {cfg.agents.policy}")

    # 2. Run it into a run directory; the result is the opened run.
    run = api.run(cfg, out_dir / "run", config_path=EXAMPLE)
    print(f"run directory {run.path}: status {run.status}")

    # 3. The event log, as typed events.
    counts = run.event_counts()
    print(f"events: {sum(counts.values())}")
    for kind, n in sorted(counts.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  {kind:<16} {n}")
    authors = Counter(e.actor for e in run.events("post_created"))
    top, posts = authors.most_common(1)[0]
    print(f"most active author: {top} with {posts} posts and comments")

    # 4. The rewards table: one row per (window, agent).
    rewards = run.rewards()
    print(f"reward rows: {len(rewards)} ({len(set(rewards.column('agent')))} agents)")
    for row in rewards.window_means()[:3]:
        print(f"  window {row['window']}: mean total reward {row['total']:.3f}")

    # 5. The networks (networkx graphs).
    graphs = run.graphs()
    for theta, g in sorted(graphs.ties.items()):
        print(f"tie network at theta={theta:g}: {g.number_of_edges()} ties")
    print(f"follow graph: {graphs.follow.number_of_edges()} follows")
    heaviest = max(graphs.interactions.edges(data="weight"), key=lambda e: e[2], default=None)
    if heaviest is not None:
        print(f"most interactions: {heaviest[0]} -> {heaviest[1]} ({heaviest[2]})")

    # 6. Parquet files for pandas, Polars or DuckDB.
    paths = run.export_parquet(out_dir / "parquet")
    for table, path in paths.items():
        print(f"wrote {table} to {path}")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: python examples/api_tour.py [OUT_DIR]", file=sys.stderr)
        return 2
    if argv:
        out = Path(argv[0])
        out.mkdir(parents=True, exist_ok=True)
        tour(out)
        return 0
    with tempfile.TemporaryDirectory(prefix="friendsim-tour-") as tmp:
        tour(Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
