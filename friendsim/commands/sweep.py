"""``friendsim sweep CONFIG [--out DIR] [--jobs N] [--json]``: run a sweep, print its aggregate.

Exit codes: 0 every run completed, 1 some runs failed (the aggregate covers the others), 2 bad
sweep file or output directory (the message names the file and key) or runs too large for this
machine's memory, alone or ``--jobs`` at a time, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from friendsim.commands._help import FORMATTER, Subparsers, add_log_level, path_arg

if TYPE_CHECKING:
    from friendsim.sweep.config import SweepSpec

DESCRIPTION = """\
Run an experiment many times: every combination of the settings listed in its
[sweep] grid, each repeated with the same set of seeds, in parallel. Then
aggregate every metric per grid cell (mean with a 95% Student-t confidence
interval) and the paired differences against the first cell.

A sweep file is an experiment file with a [sweep] table, for example:

  [sweep]
  replications = 3
  grid = { "coach.enabled" = [true, false] }
  labels = { "coach.enabled" = ["coach on", "coach off"] }   # optional

Each cell runs in a folder named after its settings; tables name it by its
label (labels joined per grid key; without labels, made from the values).

Running the same command again resumes an interrupted sweep: completed runs are
kept and the others (failed, degraded or unfinished) run again (their run
directories are renamed, never deleted).
"""

EPILOG = """\
examples:
  friendsim sweep examples/paper_sweep.toml --out runs/sweep --jobs 2
  friendsim sweep examples/paper_sweep.toml --out runs/sweep --json > aggregate.json

exit status: 0 every run completed, 1 some runs did not complete (failed, or
degraded: every window ran but something was lost; only the completed runs are
aggregated), 2 bad sweep file or output directory, 130 interrupted (Ctrl-C or
SIGTERM: running runs stop, resumable by running the same command again).
"""


def register(subparsers: Subparsers) -> None:
    """Add the ``sweep`` sub-command to the command line's sub-parsers."""
    p = subparsers.add_parser(
        "sweep",
        help="run an experiment over a grid of settings with replications, "
        "and aggregate with 95%% confidence intervals",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    p.add_argument(
        "config",
        type=path_arg,
        metavar="CONFIG",
        help="experiment TOML file with a [sweep] table",
    )
    p.add_argument(
        "--out",
        type=path_arg,
        default=None,
        metavar="DIR",
        help="sweep directory (default: runs/sweep-<experiment name>)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="number of runs in parallel, each in its own process "
        "(default: the number of CPUs, at most 4); on this machine the N largest runs must fit "
        "in its memory together",
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where the runs execute: local, a process pool on this machine (default); ray, one "
        "Ray task per run on a Ray cluster (needs the ray extra: pip install 'friendsim[ray]')",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="HOST:PORT",
        help="with --executor ray: the Ray cluster's head address (default: start a local Ray "
        "with --jobs CPUs)",
    )
    p.add_argument("--json", action="store_true", help="print the aggregate as one JSON object")
    add_log_level(p)
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

    from friendsim.rundir.outputs import plain_name
    from friendsim.runtime.config import machine_memory
    from friendsim.runtime.logs import configure_logging
    from friendsim.sweep.config import SweepConfigError, load_sweep
    from friendsim.sweep.interrupt import terminate_as_interrupt
    from friendsim.sweep.ray_executor import RayUnavailableError
    from friendsim.sweep.runner import SweepDirError, check_out_dir, run_sweep

    configure_logging(args.log_level)
    # The runs use this machine's memory unless they go to a Ray cluster elsewhere (--address).
    memory = machine_memory() if args.address is None else None
    try:
        spec = load_sweep(args.config, memory=memory)
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
    if args.out is None and not plain_name(spec.name):
        sys.stderr.write(
            f"friendsim sweep: config error: {args.config}: [experiment].name = {spec.name!r} "
            "names the sweep directory runs/sweep-NAME without --out, so it must be a plain "
            "name (no '/', no '..'); rename it or give --out DIR\n"
        )
        return 2
    out = args.out if args.out is not None else Path("runs") / f"sweep-{spec.name}"
    try:
        check_out_dir(out, spec)
    except SweepDirError as exc:
        sys.stderr.write(f"friendsim sweep: {exc}\n")
        return 2
    if (refusal := _jobs_refusal(spec, out, jobs, memory)) is not None:
        sys.stderr.write(f"friendsim sweep: {refusal}\n")
        return 2
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
        with terminate_as_interrupt(), progress:
            result = run_sweep(
                spec,
                out,
                jobs=jobs,
                log_level=args.log_level,
                on_done=on_done,
                executor=args.executor,
                address=args.address,
                aggregate=True,
            )
    except (SweepDirError, RayUnavailableError) as exc:
        sys.stderr.write(f"friendsim sweep: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(
            f"friendsim sweep: interrupted; finished runs kept in {out} (re-run to resume)\n"
        )
        return 130
    agg = result.aggregate
    assert agg is not None
    if args.json:
        sys.stdout.write(json.dumps(agg, sort_keys=True) + "\n")
    else:
        from friendsim.commands.analyze import print_sweep

        print_sweep(agg)
        sys.stdout.write(f"\nsweep directory: {out} ({result.wall_seconds:.1f} s wall)\n")
    return 1 if result.failed else 0


def _jobs_refusal(spec: SweepSpec, out: Path, jobs: int, memory: int | None) -> str | None:
    """Why the runs ``spec`` still has to run in ``out`` cannot run ``jobs`` at a time in
    ``memory`` (the largest of them together exceed it; :func:`~friendsim.sweep.config.check_jobs`),
    or ``None``. Refused up front, with the ``--jobs`` that fits, instead of workers killed for
    want of memory half-way through the sweep."""
    from friendsim.runtime.config import TooManyAtOnceError
    from friendsim.sweep.config import check_jobs
    from friendsim.sweep.runner import pending_plans

    plans = pending_plans(spec, out)
    try:
        check_jobs(spec, plans, jobs=jobs, memory=memory)
    except TooManyAtOnceError as exc:
        at_once = min(jobs, len(plans))
        return (
            f"--jobs {jobs}: sweep {spec.name!r} ({spec.source}) runs {at_once} runs at once, and "
            f"{exc}; use --jobs {exc.fit} (or fewer)"
        )
    return None
