"""``friendsim log {verify,export,import}``: check and move a platform event log.

Exit codes: verify 0 equal, 1 with the first difference; export/import 0 done, 2 bad input
(import names the first bad line as ``FILE:LINE: key: problem``; export without pyarrow names
the extra to install). Components are imported inside the handler so that the command line
starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from friendsim.commands._help import FORMATTER, Subparsers, path_arg

if TYPE_CHECKING:
    from friendsim.analysis.network_tables import WindowNetwork

DESCRIPTION = """\
Check and move a run's event log (the events.db file of a run directory).

  verify   check every event's fields, rebuild every table of the platform from
           the event log alone and compare with the stored tables
  export   write the event log, the rewards scored from it, or the networks
           (ties, follows, interactions per window) as JSON Lines or Parquet;
           one window's network as GraphML (with --theta: the tie network
           'friendsim analyze' measures at that threshold)
  import   check every event of a JSON Lines log (with the same rules as a live
           run) and build a new database from it
"""

EPILOG = """\
examples:
  friendsim log verify runs/paper/events.db
  friendsim log export runs/paper/events.db events.jsonl
  friendsim log export runs/paper --format parquet --out events.parquet
  friendsim log export runs/paper --table rewards --out rewards.parquet
  friendsim log export runs/paper --table ties --out ties.parquet
  friendsim log export runs/paper --table follows --format graphml --window 3 --out follows.graphml
  friendsim log export runs/paper --table ties --window 3 --theta 0.05 --out ties.graphml
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
        "describes its log (where it ends, its hash). Every event's fields are checked as "
        "'log import' checks a line (each of its JSON type): the analyses trust a log a run "
        "wrote, or that import or verify passed. Exit status 0 when they are equal, 1 "
        "(naming the first difference) when they are not, 2 when the manifest does not "
        "describe the log or an event is malformed (naming its seq and field).",
    )
    v.add_argument(
        "db", type=path_arg, metavar="RUN_OR_DB", help="a run directory or its events.db file"
    )
    e = sub.add_parser(
        "export",
        help="write the log, the rewards or the networks as JSON Lines, Parquet or GraphML",
        description="Write the event log, the rewards table or a network table scored from it "
        "to a file for other tools: JSON Lines (one row per line) or Parquet (for pandas, "
        "Polars, DuckDB or R's arrow; needs the parquet extra: pip install "
        "'friendsim[parquet]'). An event's JSON line is the one the live view streams for it: "
        "a row of a hand-edited or foreign log whose payload spells a lone surrogate "
        "(\\ud800), which UTF-8 cannot encode, is written with every non-ASCII character "
        "\\u-escaped, JSON that decodes to the same text ('log import' refuses such a line: "
        "no run writes one). The Parquet events file has the columns seq, t, kind, actor, "
        "window and payload (the event's JSON fields as stored, such an escape included); the "
        "rewards file one row per window and "
        "agent. The network tables have one row per ended window and directed pair, computed "
        "as 'friendsim analyze' computes them (the networks of the Python API): ties (window, "
        "source, target, strength: every nonzero directed tie strength after the window, with "
        "the run's tie settings), follows (window, source, target: the whole follow graph at "
        "the window's end) and interactions (window, source, target, kind, count: comments, "
        "DMs, mentions and votes inside the window; as for the rewards and ties, an interaction "
        "outside any window, or in a window started again before it ended, is in no window's "
        "rows, and the command says how many there were). --format graphml writes one window's "
        "network (--window, default the last ended) as a directed graph with every agent as a "
        "node, for Gephi or igraph; with --table ties, --theta T writes instead the undirected "
        "network that 'friendsim analyze' measures at the threshold T (an edge where the "
        "symmetrised strength (A[u->v] + A[v->u]) / 2 is at least T, carrying it as strength; "
        "the graph attributes window, table and theta). Nothing is written when the input is "
        "bad (not a run, a window that never ended, text-based tie evidence not scored yet, "
        "--theta outside (0, 1] or without --table ties --format graphml).",
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
        choices=("jsonl", "parquet", "graphml"),
        default=None,
        help="file format (default: by the file name's ending, .parquet or .graphml, else "
        "jsonl); graphml for the network tables only",
    )
    e.add_argument(
        "--table",
        choices=("events", "rewards", "ties", "follows", "interactions"),
        default="events",
        help="what to export: the event log, the rewards per window and agent, or a network "
        "per window: ties (directed strengths), follows, interactions (default: %(default)s)",
    )
    e.add_argument(
        "--window",
        type=int,
        default=None,
        metavar="W",
        help="the network tables: only window W (with --format graphml: the window to write, "
        "default the last that ended)",
    )
    e.add_argument(
        "--theta",
        type=float,
        default=None,
        metavar="T",
        help="with --table ties --format graphml: write the undirected tie network binarised at "
        "the threshold T in (0, 1], the one 'friendsim analyze' measures at T (the run's "
        "[ties] thresholds are the ones it reports); default: the directed strengths",
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
    suffix = out.suffix.lower()
    fmt = args.format or {".parquet": "parquet", ".graphml": "graphml"}.get(suffix, "jsonl")
    network = args.table in ("ties", "follows", "interactions")
    if args.theta is not None:
        _check_theta_option(args.theta, args.table, fmt)
    if fmt == "graphml" and not network:
        raise ValueError(
            f"--format graphml writes a network: give --table ties, follows or interactions "
            f"(not {args.table})"
        )
    if args.window is not None and not network:
        raise ValueError(
            f"--window selects a network's window: give --table ties, follows or interactions "
            f"(not {args.table})"
        )
    src: Path = args.db
    db = src / "events.db" if src.is_dir() else src
    if not db.is_file():
        raise FileNotFoundError(
            f"no events database at {db} (give a run directory or its events.db)"
        )
    if out.resolve() == db.resolve():
        raise ValueError(f"{out}: refusing to overwrite the event log")
    check_output_file(out, what="export")
    if network:
        done = _export_network(db, out, fmt, args.table, args.window, theta=args.theta)
        sys.stdout.write(done + "\n")
        return 0
    if args.table == "rewards":
        n = _export_rewards(src, out, fmt)
        sys.stdout.write(f"wrote {n} reward rows to {out}\n")
        return 0
    n = _export_events(db, out, fmt)
    sys.stdout.write(f"wrote {n} events to {out}\n")
    return 0


def _check_theta_option(theta: float, table: str, fmt: str) -> None:
    """``--theta`` binarises one window's tie network: only with ``--table ties --format
    graphml``, and only in (0, 1] (:func:`~friendsim.analysis.ties.check_theta`)."""
    from friendsim.analysis.ties import TieParamsError, check_theta

    if table != "ties":
        raise ValueError(
            f"--theta binarises the tie network: give --table ties --format graphml (not "
            f"--table {table})"
        )
    if fmt != "graphml":
        raise ValueError(
            f"--theta writes one window's tie network as a graph: give --format graphml (not "
            f"{fmt}; the {fmt} rows hold the strengths to threshold yourself)"
        )
    try:
        check_theta(theta)
    except TieParamsError:
        raise ValueError(f"--theta {theta!r} must be in (0, 1]") from None


def _export_events(db: Path, out: Path, fmt: str) -> int:
    """Write the events of ``db`` to ``out``; returns the count.

    Reads a snapshot copy (:func:`friendsim.rundir.log.snapshot`) checked like every reader's
    (:func:`~friendsim.rundir.log.connect`, :func:`~friendsim.rundir.log.summarise`): opening the
    log in place, even read-only, leaves ``-wal`` and ``-shm`` files in the run directory, and a
    damaged database is a :class:`~friendsim.rundir.errors.RunInputError` naming it."""
    import sqlite3

    from friendsim.platform.events import EventDecodeError
    from friendsim.rundir.errors import CorruptLogError

    with _checked_snapshot(db) as copy:
        try:
            if fmt == "parquet":
                from friendsim.analysis.parquet import write_events_parquet

                return write_events_parquet(copy, out, snapshot=False, label=db)
            import asyncio

            from friendsim.analysis.parquet import write_atomically
            from friendsim.platform.replay import export_jsonl

            count = 0

            def write(tmp: Path) -> None:
                nonlocal count
                count = asyncio.run(export_jsonl(copy, tmp))

            write_atomically(out, write)
            return count
        except sqlite3.DatabaseError as exc:
            raise CorruptLogError(f"{db}: events table unreadable ({exc})") from None
        except EventDecodeError as exc:
            raise CorruptLogError(f"{db}: {exc}") from None


def _export_rewards(src: Path, out: Path, fmt: str) -> int:
    from friendsim.analysis.rewards import RewardLogError
    from friendsim.analysis.rewards_cli import resolve_run, rewards_table
    from friendsim.platform.events import EventDecodeError
    from friendsim.rundir.errors import CorruptLogError

    try:
        rows = rewards_table(src)
    except (EventDecodeError, RewardLogError) as exc:  # they name the seq, not the log
        raise CorruptLogError(f"{resolve_run(src)[0]}: {exc}") from None
    if fmt == "parquet":
        from friendsim.analysis.parquet import write_rewards_parquet

        return write_rewards_parquet(rows, out)
    import json

    from friendsim.analysis.parquet import write_atomically

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, sort_keys=True, allow_nan=False) + "\n")

    write_atomically(out, write)
    return len(rows)


@contextlib.contextmanager
def _checked_snapshot(db: Path) -> Iterator[Path]:
    """A snapshot copy of ``db`` in a temporary folder, checked as every reader checks a log (a
    damaged database is a :class:`~friendsim.rundir.errors.RunInputError` naming ``db``)."""
    import tempfile

    from friendsim.rundir.log import connect, snapshot, summarise

    with tempfile.TemporaryDirectory(prefix="friendsim-export-") as tmp:
        copy = snapshot(db, Path(tmp))
        conn = connect(copy, label=db)
        try:
            summarise(conn, label=db)
        finally:
            conn.close()
        yield copy


def _export_network(
    db: Path, out: Path, fmt: str, table: str, window: int | None, *, theta: float | None = None
) -> str:
    """Write the network ``table`` of the log ``db`` (all ended windows, or ``window``) to
    ``out``; returns what was written, in words. ``theta`` (ties as GraphML only, checked by
    :func:`_check_theta_option`): write the window's tie network binarised at θ. The log is read once, from one snapshot; the
    file is written under a temporary name and renamed, so bad input leaves nothing behind."""
    import json

    from friendsim.analysis.analyze import (
        given,
        run_manifest,
        stored_text_evidence,
        tie_params_from_manifest,
    )
    from friendsim.analysis.network_tables import (
        COLUMNS,
        window_graph,
        window_networks,
        window_tie_graph,
    )
    from friendsim.analysis.parquet import require_pyarrow, write_atomically, write_rows_parquet
    from friendsim.analysis.rewards_cli import iter_events, malformed_events_named
    from friendsim.analysis.sentiment import get_sentiment
    from friendsim.analysis.tie_evidence import copy_stamp

    run_dir = db.parent
    manifest = run_manifest(run_dir)
    params, thetas = tie_params_from_manifest(manifest)
    if fmt == "parquet":
        require_pyarrow()
    with _checked_snapshot(db) as copy, malformed_events_named(db):
        text = None
        sentiment = None
        if table == "ties":
            if params.method == "text":
                stamp = copy_stamp(copy)
                text = stored_text_evidence(run_dir, params, stamp=stamp).per_window
            name = str((given(manifest, "rewards") or {}).get("sentiment", "vader"))
            sentiment = get_sentiment(name)
        nets = window_networks(
            table,
            iter_events(copy, snapshot=False, label=db),
            params=params,
            sentiment=sentiment,
            text_evidence=text,
        )
        ended: list[int] = []
        last: list[WindowNetwork] = []

        def chosen() -> Iterator[WindowNetwork]:
            for net in nets:
                ended.append(net.window)
                if window is None:
                    last[:] = [net]
                    yield net
                elif net.window == window:
                    last[:] = [net]
                    yield net
                    return
            if window is not None and window not in ended:
                raise ValueError(
                    f"{db}: window {window} never ended in this run (ended: {_span(ended)})"
                )

        if fmt == "graphml":
            import networkx as nx

            picked: list[WindowNetwork] = list(chosen())[-1:]
            if not picked:
                raise ValueError(f"{db}: no window ended in this run; no network to write")
            if theta is None:
                g = window_graph(table, picked[0])
                at = ""
            else:
                g = window_tie_graph(picked[0], theta=theta)
                at = f" at theta={theta:g}"
            write_atomically(out, lambda tmp: nx.write_graphml(g, tmp))
            return (
                f"wrote the {table} network of window {picked[0].window}{at} "
                f"({g.number_of_nodes()} agents, {g.number_of_edges()} "
                f"{'undirected ' if theta is not None else ''}edges) to {out}"
                + _outside_note(picked[0])
                + ("" if theta is None else _threshold_note(theta, thetas))
            )
        rows = (row for net in chosen() for row in net.rows)
        if fmt == "parquet":
            n = write_rows_parquet(rows, out, columns=COLUMNS[table])
        else:
            n = 0

            def write(tmp: Path) -> None:
                nonlocal n
                with tmp.open("w", encoding="utf-8") as fh:
                    for row in rows:
                        fh.write(json.dumps(row, allow_nan=False) + "\n")
                        n += 1

            write_atomically(out, write)
    return f"wrote {n} rows of {table} to {out}" + (_outside_note(last[0]) if last else "")


def _outside_note(net: WindowNetwork) -> str:
    """What the interactions rows leave out: those outside any window, up to ``net``'s end."""
    if not net.outside:
        return ""
    n = net.outside
    return (
        f"; {n} interaction{'s' if n != 1 else ''} up to the end of window {net.window} "
        f"{'were' if n != 1 else 'was'} outside any window (before the first, between windows, "
        "or in a window started again before it ended) and counted in no window's rows, as "
        "the rewards and ties count them"
    )


def _threshold_note(theta: float, thetas: tuple[float, ...]) -> str:
    """Says so when ``theta`` is not one of the run's ``[ties] thresholds`` (``thetas``), the
    only ones at which ``friendsim analyze`` reports the network's metrics."""
    if theta in thetas:
        return ""
    return (
        f"; theta={theta:g} is not one of the run's [ties] thresholds "
        f"({', '.join(f'{t:g}' for t in thetas)}), so 'friendsim analyze' reports no metrics at it"
    )


def _span(windows: list[int]) -> str:
    return (
        "none"
        if not windows
        else f"{windows[0]}..{windows[-1]}"
        if len(windows) > 2
        else (", ".join(map(str, windows)))
    )
