"""``friendsim log {verify,export,import}``: check and move a platform event log.

* ``verify DB``: rebuild every materialised table from the log alone and compare with the live
  ones; exit 0 if equal, 1 with the first difference otherwise.
* ``export DB OUT.jsonl``: write the log as JSON Lines.
* ``import IN.jsonl NEW.db``: validate every event (same rules as live commands) and build a new
  database; exit 2 naming the first bad line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``log`` sub-command (with verify/export/import) to the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "log", help="verify, export or import a platform event log", description=__doc__
    )
    sub = p.add_subparsers(dest="log_command", required=True)
    v = sub.add_parser("verify", help="replay the log and compare with the live tables")
    v.add_argument("db", type=Path)
    e = sub.add_parser("export", help="write the log as JSON Lines")
    e.add_argument("db", type=Path)
    e.add_argument("out", type=Path)
    i = sub.add_parser("import", help="validate a JSONL log into a new database")
    i.add_argument("jsonl", type=Path)
    i.add_argument("db", type=Path)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import asyncio

    from .errors import PlatformError
    from .replay import export_jsonl, import_jsonl

    try:
        match args.log_command:
            case "verify":
                from friendsim.rundir.errors import RunInputError
                from friendsim.rundir.verify import verify_db

                try:
                    report = verify_db(args.db)
                except RunInputError as exc:
                    sys.stderr.write(f"error: {exc}\n")
                    return 2
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
    except (PlatformError, FileNotFoundError, FileExistsError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0
