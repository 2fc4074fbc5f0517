"""``friendsim log {verify,export,import}``: check and move a platform event log.

Exit codes: verify 0 equal, 1 with the first difference; export/import 0 done, 2 bad input
(import names the first bad line as ``FILE:LINE: key: problem``; export without pyarrow names
the extra to install). Components are imported inside the handler so that the command line
starts fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from friendsim.commands._help import FORMATTER, Subparsers, path_arg

DESCRIPTION = """\
Check and move a run's event log (the events.db file of a run directory).

  verify   rebuild every table of the platform from the event log alone and
           compare with the stored tables
  export   write the event log, or the rewards scored from it, as JSON Lines
           or Parquet
  import   check every event of a JSON Lines log (with the same rules as a live
           run) and build a new database from it
"""

EPILOG = """\
examples:
  friendsim log verify runs/paper/events.db
  friendsim log export runs/paper/events.db events.jsonl
  friendsim log export runs/paper --format parquet --out events.parquet
  friendsim log export runs/paper --table rewards --out rewards.parquet
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
        "with the stored tables; given a run directory, first check that its manifest "
        "describes its log (where it ends, its hash). Exit status 0 when they are equal, 1 "
        "(naming the first difference) when they are not, 2 when the manifest does not "
        "describe the log.",
    )
    v.add_argument(
        "db", type=path_arg, metavar="RUN_OR_DB", help="a run directory or its events.db file"
    )
    e = sub.add_parser(
        "export",
        help="write the log (or the rewards table) as JSON Lines or Parquet",
        description="Write the event log, or the rewards table scored from it, to a file for "
        "other tools: JSON Lines (one event per line, in log order) or Parquet (for pandas, "
        "Polars or DuckDB; needs the parquet extra: pip install 'friendsim[parquet]'). "
        "The Parquet events file has the columns seq, t, kind, actor, window and payload "
        "(the event's JSON fields); the rewards file one row per window and agent.",
    )
    e.add_argument(
        "db",
        type=path_arg,
        metavar="RUN_OR_DB",
        help="a run directory or its events.db file",
    )
    e.add_argument(
        "out",
        type=path_arg,
        nargs="?",
        default=None,
        metavar="OUT",
        help="file to write (or give it with --out)",
    )
    e.add_argument(
        "--out",
        dest="out_option",
        type=path_arg,
        default=None,
        metavar="FILE",
        help="file to write",
    )
    e.add_argument(
        "--format",
        choices=("jsonl", "parquet"),
        default=None,
        help="file format (default: parquet when the file name ends in .parquet, else jsonl)",
    )
    e.add_argument(
        "--table",
        choices=("events", "rewards"),
        default="events",
        help="what to export: the event log or the rewards per window and agent "
        "(default: %(default)s)",
    )
    i = sub.add_parser(
        "import",
        help="check a JSON Lines log and build a new database from it",
        description="Check every event of a JSON Lines log with the same rules as a live run "
        "and build a new database from it. Each line must be one event as 'log export' writes "
        "it: UTF-8 JSON (no key twice in an object, no NaN or Infinity), exactly the keys seq, "
        "t, kind, actor and payload, every value of its type (t a finite number, actor a "
        "string or null, the payload the kind's fields); the "
        "events must follow one another as in a run (seq and time order, known agents and "
        "posts, a window_ended closing the open window). The first bad line is reported as "
        "FILE:LINE with the key and the problem (exit status 2) and no database is left "
        "behind.",
    )
    i.add_argument("jsonl", type=path_arg, metavar="JSONL", help="JSON Lines log to read")
    i.add_argument("db", type=path_arg, metavar="DB", help="new database file to create")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the log action named by ``args``; returns the exit code."""
    import asyncio

    from friendsim.analysis.parquet import ParquetUnavailable
    from friendsim.analysis.rewards_params import RewardConfigError
    from friendsim.platform.errors import PlatformError
    from friendsim.platform.replay import import_jsonl
    from friendsim.rundir.errors import RunInputError
    from friendsim.rundir.outputs import check_output_file, os_error_message
    from friendsim.rundir.verify import live_note, verify_db, verify_live, verify_run

    try:
        match args.log_command:
            case "verify":
                run_dir = args.db if args.db.is_dir() else None
                if run_dir is not None:
                    args.db = run_dir / "events.db"
                if run_dir is not None and (run_dir / "manifest.json").exists():
                    report, pid = verify_live(lambda: verify_run(run_dir), run_dir)
                else:
                    report, pid = verify_live(lambda: verify_db(args.db), Path(args.db).parent)
                if report.divergence is not None:
                    sys.stderr.write(f"{args.db}: replay differs: {report.divergence}\n")
                    return 1
                note = live_note(report, pid)
                if note:
                    sys.stdout.write(f"{args.db}: {note}\n")
                sys.stdout.write(f"{args.db}: replay matches the live tables\n")
            case "export":
                return _export(args)
            case "import":
                check_output_file(args.db, what="imported database")
                n = asyncio.run(import_jsonl(args.jsonl, args.db))
                sys.stdout.write(f"imported {n} events into {args.db}\n")
    except (
        PlatformError,
        RunInputError,
        ParquetUnavailable,
        RewardConfigError,
        ValueError,
    ) as exc:
        sys.stderr.write(f"friendsim log {args.log_command}: {exc}\n")
        return 2
    except OSError as exc:  # a path the checks could not foresee (a directory, /proc)
        sys.stderr.write(f"friendsim log {args.log_command}: {os_error_message(exc)}\n")
        return 2
    return 0


def _export(args: argparse.Namespace) -> int:
    from friendsim.rundir.outputs import check_output_file

    if args.out is not None and args.out_option is not None:
        raise ValueError("give the output file once: as OUT or as --out")
    out: Path | None = args.out if args.out is not None else args.out_option
    if out is None:
        raise ValueError("the output file is missing: give OUT or --out FILE")
    fmt = args.format or ("parquet" if out.suffix.lower() == ".parquet" else "jsonl")
    src: Path = args.db
    db = src / "events.db" if src.is_dir() else src
    if not db.is_file():
        raise FileNotFoundError(
            f"no events database at {db} (give a run directory or its events.db)"
        )
    if out.resolve() == db.resolve():
        raise ValueError(f"{out}: refusing to overwrite the event log")
    check_output_file(out, what="export")
    if args.table == "rewards":
        n = _export_rewards(src, out, fmt)
        sys.stdout.write(f"wrote {n} reward rows to {out}\n")
        return 0
    n = _export_events(db, out, fmt)
    sys.stdout.write(f"wrote {n} events to {out}\n")
    return 0


def _export_events(db: Path, out: Path, fmt: str) -> int:
    """Write the events of ``db`` to ``out``; returns the count.

    Reads a snapshot copy (:func:`friendsim.rundir.log.snapshot`) checked like every reader's
    (:func:`~friendsim.rundir.log.connect`, :func:`~friendsim.rundir.log.summarise`): opening the
    log in place, even read-only, leaves ``-wal`` and ``-shm`` files in the run directory, and a
    damaged database is a :class:`~friendsim.rundir.errors.RunInputError` naming it."""
    import sqlite3
    import tempfile

    from friendsim.rundir.errors import CorruptLogError
    from friendsim.rundir.log import connect, snapshot, summarise

    with tempfile.TemporaryDirectory(prefix="friendsim-export-") as tmp:
        copy = snapshot(db, Path(tmp))
        conn = connect(copy, label=db)
        try:
            summarise(conn, label=db)
        finally:
            conn.close()
        try:
            if fmt == "parquet":
                from friendsim.analysis.parquet import write_events_parquet

                return write_events_parquet(copy, out, snapshot=False)
            import asyncio

            from friendsim.platform.replay import export_jsonl

            return asyncio.run(export_jsonl(copy, out))
        except sqlite3.DatabaseError as exc:
            raise CorruptLogError(f"{db}: events table unreadable ({exc})") from None


def _export_rewards(src: Path, out: Path, fmt: str) -> int:
    from friendsim.analysis.rewards_cli import rewards_table

    rows = rewards_table(src)
    if fmt == "parquet":
        from friendsim.analysis.parquet import write_rewards_parquet

        return write_rewards_parquet(rows, out)
    import json

    with out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True, allow_nan=False) + "\n")
    return len(rows)
