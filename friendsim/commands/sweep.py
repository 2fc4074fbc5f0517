"""``friendsim sweep CONFIG [--out DIR] [--jobs N] [--json]``: run a sweep, print its aggregate.

Exit codes: 0 every run completed, 1 some runs failed (the aggregate covers the others), 2 bad
sweep file or output directory (the message names the file and key).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``sweep`` sub-command to the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "sweep",
        help="run replications x a grid of settings and aggregate them with 95%% CIs",
        description="Run an experiment TOML with a [sweep] table (replications, grid) and "
        "aggregate every metric per grid cell (mean, 95%% Student-t CI).",
    )
    p.add_argument("config", type=Path, help="experiment TOML file with a [sweep] table")
    p.add_argument(
        "--out", type=Path, default=None, help="sweep directory (default: runs/sweep-<name>)"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="parallel runs (worker processes; default: min(4, CPU count))",
    )
    p.add_argument("--json", action="store_true", help="print the aggregate as JSON")
    p.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="log level of the structured logs on stderr (default: warning)",
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the sweep named by ``args``; returns the exit code."""
    from friendsim.runtime.log_setup import configure_logging
    from friendsim.sweep.aggregate import aggregate_sweep
    from friendsim.sweep.config import SweepConfigError, load_sweep
    from friendsim.sweep.runner import SweepDirError, run_sweep

    configure_logging(args.log_level)
    try:
        spec = load_sweep(args.config)
    except SweepConfigError as exc:
        sys.stderr.write(f"friendsim sweep: config error: {exc}\n")
        return 2
    jobs = args.jobs if args.jobs is not None else min(4, os.cpu_count() or 1)
    if jobs < 1:
        sys.stderr.write(f"friendsim sweep: --jobs must be >= 1, got {jobs}\n")
        return 2
    out = args.out if args.out is not None else Path("runs") / f"sweep-{spec.name}"
    n = len(spec.plans())
    done = 0

    def on_done(outcome: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        err = f" ({outcome['error']})" if outcome.get("error") else ""
        sys.stderr.write(f"[{done}/{n}] {outcome['dir']}: {outcome['status']}{err}\n")

    try:
        result = run_sweep(spec, out, jobs=jobs, log_level=args.log_level, on_done=on_done)
    except SweepDirError as exc:
        sys.stderr.write(f"friendsim sweep: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(
            f"friendsim sweep: interrupted; finished runs kept in {out} (re-run to resume)\n"
        )
        return 130
    agg = aggregate_sweep(out)
    if args.json:
        sys.stdout.write(json.dumps(agg, sort_keys=True) + "\n")
    else:
        from friendsim.commands.analyze import print_sweep

        print_sweep(agg)
        sys.stdout.write(f"\nsweep directory: {out} ({result.wall_seconds:.1f} s wall)\n")
    return 1 if result.failed else 0
