"""``friendsim report RUN_OR_SWEEP_DIR``: write one self-contained ``report.html``.

Exit codes: 0 written (its path is printed), 2 not a run or sweep directory, a broken one, or a
bad option (the message says which).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``report`` sub-command to the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a run or a sweep",
        description="Write report.html (figures embedded; PNGs also written to figures/).",
    )
    p.add_argument(
        "dir", type=Path, help="run directory (events.db) or sweep directory (sweep.json)"
    )
    p.add_argument("--out", type=Path, default=None, help="HTML file (default: DIR/report.html)")
    p.add_argument("--theta", type=float, default=None, help="tie threshold to draw (default 0.05)")
    p.add_argument(
        "--color-by",
        default=None,
        help="persona attribute colouring the network (default: stance_group, else dominant)",
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Write the report for ``args.dir``; returns the exit code."""
    from friendsim.analysis.analyze import RunDirectoryError
    from friendsim.report.render import ReportError, write_report
    from friendsim.sweep.aggregate import SweepReadError

    try:
        path = write_report(args.dir, out=args.out, theta=args.theta, color_by=args.color_by)
    except (ReportError, RunDirectoryError, SweepReadError, FileNotFoundError) as exc:
        sys.stderr.write(f"friendsim report: {exc}\n")
        return 2
    except ValueError as exc:
        sys.stderr.write(f"friendsim report: {args.dir}: {exc}\n")
        return 2
    sys.stdout.write(f"{path}\n")
    return 0
