"""``friendsim sweep CONFIG [--out DIR] [--jobs N] [--executor local|ray] [--address HOST:PORT]
[--json]``: run a sweep, print its aggregate.

A progress bar on stderr counts finished runs (tasks); each failed run is also named on its own
line. Exit codes: 0 every run completed, 1 some runs failed (the aggregate covers the others), 2
bad sweep file or output directory (the message names the file and key), or ``--executor ray``
without the ``ray`` extra (with the install command), 130 interrupted (re-run to resume).
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
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: a process pool on this machine (default); ray: one Ray task per run "
        "(needs the 'ray' extra)",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="HOST:PORT",
        help="Ray cluster to run on (its head's GCS address); default: a local Ray of --jobs CPUs",
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
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from friendsim.runtime.cli_run import configure_logging
    from friendsim.sweep.aggregate import aggregate_sweep
    from friendsim.sweep.config import SweepConfigError, load_sweep
    from friendsim.sweep.ray_executor import RayUnavailableError
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
    if args.address is not None and args.executor != "ray":
        sys.stderr.write("friendsim sweep: --address needs --executor ray\n")
        return 2
    out = args.out if args.out is not None else Path("runs") / f"sweep-{spec.name}"
    n = len(spec.plans())
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs"),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    bar = progress.add_task("runs", total=n, failed=0)
    failed = 0

    def on_done(outcome: dict[str, Any]) -> None:
        nonlocal failed
        if outcome["status"] != "completed":
            failed += 1
            err = f" ({outcome['error']})" if outcome.get("error") else ""
            progress.console.print(f"{outcome['dir']}: {outcome['status']}{err}", markup=False)
        progress.update(bar, advance=1, failed=failed)

    try:
        with progress:
            result = run_sweep(
                spec,
                out,
                jobs=jobs,
                log_level=args.log_level,
                on_done=on_done,
                executor=args.executor,
                address=args.address,
            )
    except (SweepDirError, RayUnavailableError) as exc:
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
        from friendsim.analysis.cli_analyze import print_sweep

        print_sweep(agg)
        sys.stdout.write(f"\nsweep directory: {out} ({result.wall_seconds:.1f} s wall)\n")
    return 1 if result.failed else 0
