"""``friendsim log {verify,export,import}``: check and move a platform event log.

Exit codes: verify 0 equal, 1 with the first difference; export/import 0 done, 2 bad input
(import names the first bad line). Components are imported inside the handler so that the
command line starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from friendsim.commands._help import FORMATTER, Subparsers

DESCRIPTION = """\
Check and move a run's event log (the events.db file of a run directory).

  verify   rebuild every table of the platform from the event log alone and
           compare with the stored tables
  export   write the event log as JSON Lines, one event per line
  import   check every event of a JSON Lines log (with the same rules as a live
           run) and build a new database from it
"""

EPILOG = """\
examples:
  friendsim log verify runs/paper/events.db
  friendsim log export runs/paper/events.db events.jsonl
  friendsim log import events.jsonl copy.db
"""


def register(subparsers: Subparsers) -> None:
    """Add the ``log`` sub-command (with verify/export/import) to the command line's sub-parsers."""
    p = subparsers.add_parser(
        "log",
        help="verify, export or import a run's event log",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    sub = p.add_subparsers(dest="log_command", required=True, metavar="ACTION")
    v = sub.add_parser(
        "verify",
        help="rebuild the platform from the log and compare with the stored tables",
        description="Rebuild every table of the platform from the event log alone and compare "
        "with the stored tables. Exit status 0 when they are equal, 1 (naming the first "
        "difference) when they are not.",
    )
    v.add_argument("db", type=Path, metavar="DB", help="the run's events.db file")
    e = sub.add_parser(
        "export",
        help="write the log as JSON Lines",
        description="Write the event log as JSON Lines, one event per line in log order.",
    )
    e.add_argument("db", type=Path, metavar="DB", help="the run's events.db file")
    e.add_argument("out", type=Path, metavar="OUT", help="JSON Lines file to write")
    i = sub.add_parser(
        "import",
        help="check a JSON Lines log and build a new database from it",
        description="Check every event of a JSON Lines log with the same rules as a live run "
        "and build a new database from it. A bad event is reported with its line "
        "(exit status 2) and no database is left behind.",
    )
    i.add_argument("jsonl", type=Path, metavar="JSONL", help="JSON Lines log to read")
    i.add_argument("db", type=Path, metavar="DB", help="new database file to create")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the log action named by ``args``; returns the exit code."""
    from friendsim.platform.errors import PlatformError
    from friendsim.platform.replay import export_jsonl, import_jsonl
    from friendsim.rundir.errors import RunInputError
    from friendsim.rundir.verify import verify_db

    try:
        match args.log_command:
            case "verify":
                report = verify_db(args.db)
                if report.divergence is not None:
                    sys.stderr.write(f"{args.db}: replay differs: {report.divergence}\n")
                    return 1
                sys.stdout.write(f"{args.db}: replay matches the live tables\n")
            case "export":
                n = asyncio.run(export_jsonl(args.db, args.out))
                sys.stdout.write(f"wrote {n} events to {args.out}\n")
            case "import":
                n = asyncio.run(import_jsonl(args.jsonl, args.db))
                sys.stdout.write(f"imported {n} events into {args.db}\n")
    except (PlatformError, RunInputError, FileNotFoundError, FileExistsError) as exc:
        sys.stderr.write(f"friendsim log {args.log_command}: {exc}\n")
        return 2
    return 0
