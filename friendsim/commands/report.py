"""``friendsim report RUN_OR_SWEEP_DIR``: write one self-contained ``report.html``.

Exit codes: 0 written (its path is printed), 2 not a run or sweep directory, a broken one, a
sweep directory a sweep command is still writing (the message names its process), or a bad
option (the message says which).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from friendsim.commands._help import FORMATTER, Subparsers, path_arg

DESCRIPTION = """\
Write one self-contained HTML page about a run or a sweep: reward curves per
dominant motive, the final tie network, its metrics against eight real friendship
networks, degree distributions, token usage and cost (for a sweep, one line per
grid cell and the aggregate table). The figures are embedded in the page and also
written as PNG files to a figures/ folder beside it. Prints the path of the page.
"""

EPILOG = """\
examples:
  friendsim report runs/paper
  friendsim report runs/sweep --out sweep.html
  friendsim report runs/paper --theta 0.1 --color-by dominant
"""


def register(subparsers: Subparsers) -> None:
    """Add the ``report`` sub-command to the command line's sub-parsers."""
    p = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a run or a sweep",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    p.add_argument(
        "dir",
        type=path_arg,
        metavar="DIR",
        help="a run directory (holding events.db) or a sweep directory (holding sweep.json)",
    )
    p.add_argument(
        "--out",
        type=path_arg,
        default=None,
        metavar="FILE",
        help="HTML file to write (default: DIR/report.html; a run still being written needs --out)",
    )
    p.add_argument(
        "--theta",
        type=float,
        default=None,
        help="tie-strength threshold of the network drawing, one of the run's [ties] thresholds "
        "(default: 0.05 when it is one of them, else the middle one)",
    )
    p.add_argument(
        "--color-by",
        default=None,
        metavar="ATTRIBUTE",
        help="persona attribute that colours the network drawing "
        "(default: stance_group if the personas have it, else the dominant motive)",
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Write the report for ``args.dir``; returns the exit code."""
    from friendsim.analysis.analyze import RunDirectoryError
    from friendsim.llm.errors import LLMError
    from friendsim.report.render import FIGURES_DIR, ReportError, write_report
    from friendsim.rundir.errors import OutputPathError, RunLockedError
    from friendsim.rundir.layout import SWEEP_FILE, SWEEP_LOCK
    from friendsim.rundir.lock import holder, reading_locked, writer_name
    from friendsim.rundir.outputs import check_output_file, os_error_message
    from friendsim.sweep.aggregate import SweepReadError

    pid = holder(args.dir)
    if pid is not None and args.out is None:
        sys.stderr.write(
            f"friendsim report: {args.dir}: run in progress ({writer_name(pid)}); the report is not "
            "written into a run directory while it is written: give --out FILE\n"
        )
        return 2
    try:
        if args.out is not None:
            check_output_file(args.out, what="report", parents=True)
            if Path(args.out).exists() and not Path(args.out).is_file():
                raise OutputPathError(
                    f"{args.out} is not a regular file (the report is an HTML file with its "
                    f"{FIGURES_DIR}/ folder beside it); give a file name"
                )
        sweep = (Path(args.dir) / SWEEP_FILE).is_file()
        with (
            reading_locked(args.dir, name=SWEEP_LOCK, what="sweep", reader="friendsim report")
            if sweep  # not while a sweep writes it
            else contextlib.nullcontext()
        ):
            path = write_report(args.dir, out=args.out, theta=args.theta, color_by=args.color_by)
    except RunLockedError as exc:
        sys.stderr.write(f"friendsim report: {exc}\n")
        return 2
    except OutputPathError as exc:
        sys.stderr.write(f"friendsim report: --out {exc}\n")
        return 2
    except (ReportError, RunDirectoryError, SweepReadError) as exc:
        sys.stderr.write(f"friendsim report: {exc}\n")
        return 2
    except OSError as exc:  # a missing input, or an output the checks could not foresee
        sys.stderr.write(f"friendsim report: {os_error_message(exc)}\n")
        return 2
    except LLMError as exc:
        sys.stderr.write(f"friendsim report: {args.dir}: scoring text-based tie evidence: {exc}\n")
        return 2
    except ValueError as exc:  # e.g. an unreadable events table (the message names the file)
        where = "" if str(exc).startswith(str(args.dir)) else f"{args.dir}: "
        sys.stderr.write(f"friendsim report: {where}{exc}\n")
        return 2
    if pid is not None:
        sys.stderr.write(
            f"friendsim report: {args.dir}: run in progress ({writer_name(pid)}); the report shows "
            "what it had committed when read\n"
        )
    sys.stdout.write(f"{path}\n")
    return 0
