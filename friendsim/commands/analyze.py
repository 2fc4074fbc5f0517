"""``friendsim analyze DIR [--json]``: the analysis of a run, or the aggregate of a sweep.

With ``--json`` the data of :func:`analyze_path` is printed as one JSON object (the same numbers
the HTML report shows); without it, short tables (rich). For a run with text-based tie evidence
the scoring step (:func:`friendsim.runtime.tie_scoring.score_run_ties`) runs first and stores
its scores in the run directory; the analysis then reads them. Exit codes: 0 ok, 2 not a run or
sweep directory, or a broken one (the message names the file), a sweep directory a sweep command
is still writing (the message names its process; its aggregate would cover only the replications
finished so far), or the scoring model could not be reached or configured.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from friendsim.commands._help import FORMATTER, Subparsers, path_arg

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

_NON_ASCII = re.compile(r"[^\x00-\x7f]")

DESCRIPTION = """\
Analyse a finished run: the rewards of every agent per window, the tie, follow and
interaction networks compared with eight real friendship networks, token usage
and cost. Given a sweep directory, aggregate its runs instead: each metric's mean
with a 95% confidence interval per grid cell.

Results are cached outside the run ($FRIENDSIM_CACHE_DIR, else
$XDG_CACHE_HOME/friendsim, else ~/.cache/friendsim), and the run's recorded files
are never modified; only a run with text-based tie evidence ([ties] evidence =
"text") gains its model's tie scores (tie_scores.json, and the answers in
llm_cache.db). The report shows the same numbers.
"""

EPILOG = """\
examples:
  friendsim analyze runs/paper
  friendsim analyze runs/paper --json > analysis.json
  friendsim analyze runs/sweep
"""


def register(subparsers: Subparsers) -> None:
    """Add the ``analyze`` sub-command to the command line's sub-parsers."""
    p = subparsers.add_parser(
        "analyze",
        help="rewards, networks, comparison with real networks and cost of a run or a sweep",
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
    p.add_argument("--json", action="store_true", help="print the full analysis as one JSON object")
    p.add_argument(
        "--refresh",
        action="store_true",
        help="compute everything again instead of reading the cached analysis",
    )
    p.set_defaults(handler=handle)


def analyze_path(path: str | Path, *, refresh: bool = False) -> dict[str, Any]:
    """The data ``friendsim analyze`` prints: a run's analysis (after scoring text-based tie
    evidence when the run asks for it), or a sweep's aggregate (a directory holding
    ``sweep.json``)."""
    from friendsim.analysis.analyze import RunDirectoryError, load_analysis
    from friendsim.rundir.layout import SWEEP_FILE
    from friendsim.runtime.tie_scoring import score_run_ties

    p = Path(path)
    if (p / SWEEP_FILE).is_file():
        from friendsim.sweep.aggregate import aggregate_sweep, load_or_aggregate

        return aggregate_sweep(p, refresh=True) if refresh else load_or_aggregate(p)
    if not p.is_dir():
        what = (
            "not a directory (a run directory is expected)" if p.exists() else "no such directory"
        )
        raise RunDirectoryError(f"{p}: {what}")
    score_run_ties(p, refresh=refresh)
    return load_analysis(p, refresh=refresh)


def ascii_json(text: str) -> str:
    """JSON ``text`` with every character beyond ASCII escaped as ``json.dumps`` escapes it by
    default, so the output is the same in any console encoding. Valid on the whole text since
    such characters stand only inside JSON strings."""
    if text.isascii():
        return text
    return _NON_ASCII.sub(lambda m: json.dumps(m.group())[1:-1], text)


def _import_igraph_without_pyplot() -> None:
    """Import python-igraph before the analysis does, with matplotlib hidden while it loads.

    igraph imports ``matplotlib.pyplot`` at import time whenever matplotlib is installed, for
    its own plotting, which friendsim never uses: 0.4–0.6 s of CPU, 5–7 % of a 10,000-agent
    analysis and most of a small one's. Done by this command only (its process ends after it;
    the library's :func:`~friendsim.analysis.analyze.analyze_run` imports igraph as it is), and
    only when neither is imported yet. The analysis reports a missing igraph itself.
    """
    if "igraph" in sys.modules or "matplotlib" in sys.modules:
        return
    sys.modules["matplotlib"] = None  # type: ignore[assignment]  # import matplotlib -> ImportError
    try:
        import igraph  # noqa: F401
    except ImportError:
        pass
    finally:
        if "matplotlib" in sys.modules and sys.modules["matplotlib"] is None:
            del sys.modules["matplotlib"]


def handle(args: argparse.Namespace) -> int:
    """Analyse ``args.dir``; returns the exit code."""
    from friendsim.analysis.analyze import RunDirectoryError
    from friendsim.analysis.rewards_params import RewardConfigError
    from friendsim.llm.errors import LLMError
    from friendsim.rundir.errors import RunLockedError
    from friendsim.rundir.layout import SWEEP_FILE, SWEEP_LOCK
    from friendsim.rundir.lock import reading_locked
    from friendsim.sweep.aggregate import SweepReadError

    _import_igraph_without_pyplot()
    try:
        if (Path(args.dir) / SWEEP_FILE).is_file():  # not while a sweep writes it
            with reading_locked(
                args.dir, name=SWEEP_LOCK, what="sweep", reader="friendsim analyze"
            ):
                data = analyze_path(args.dir, refresh=args.refresh)
        else:
            data = analyze_path(args.dir, refresh=args.refresh)
    except RunLockedError as exc:
        sys.stderr.write(f"friendsim analyze: {exc}\n")
        return 2
    except (RunDirectoryError, SweepReadError, RewardConfigError, FileNotFoundError) as exc:
        sys.stderr.write(f"friendsim analyze: {exc}\n")
        return 2
    except LLMError as exc:
        sys.stderr.write(f"friendsim analyze: {args.dir}: scoring text-based tie evidence: {exc}\n")
        return 2
    except ValueError as exc:  # e.g. an unreadable events table (the message names the file)
        where = "" if str(exc).startswith(str(args.dir)) else f"{args.dir}: "
        sys.stderr.write(f"friendsim analyze: {where}{exc}\n")
        return 2
    from friendsim.rundir.lock import holder, writer_name

    if (pid := holder(args.dir)) is not None:
        sys.stderr.write(
            f"friendsim analyze: {args.dir}: run in progress ({writer_name(pid)}); this analysis "
            "covers what it had committed when read\n"
        )
    if args.json:
        from friendsim.analysis.analyze import json_bytes

        sys.stdout.write(ascii_json(json_bytes(data).decode("utf-8")) + "\n")
    elif data.get("kind") == "sweep":
        print_sweep(data)
    else:
        print_run(data)
    return 0


def _f(x: Any, digits: int = 3) -> str:
    return "—" if x is None else f"{float(x):.{digits}f}"


def print_run(a: Mapping[str, Any]) -> None:
    """Short human tables of one run's analysis (rich, to stdout)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    m = a["manifest"]
    usage = a["usage"].get("total") or {}
    console.print(
        f"[bold]{m.get('name')}[/bold]  status={m.get('status')}  mode={m.get('mode')}  "
        f"policy={m.get('policy')}{' (NULL-MODEL RUN)' if m.get('null_model') else ''}  agents={m.get('agents')}  windows={m.get('windows')}  "
        f"coach={'on' if (m.get('coach') or {}).get('enabled') else 'off'}  "
        f"cost=${float(usage.get('cost_usd', 0.0)):.4f}  "
        f"tokens={usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)}  "
        f"prompt-cached={usage.get('cached_input_tokens', 0)}  "
        f"cost-without-caching=${float(usage.get('uncached_cost_usd', usage.get('cost_usd', 0.0))):.4f}"
    )
    from friendsim.report.run_page import reliability_line

    console.print(reliability_line(a["usage"]), markup=False)
    by_policy = a["rewards"]["by_policy"]
    means = {r["window"]: r["total"] for r in a["rewards"]["window_means"]}
    t = Table(title="mean total reward per window: all agents and by dominant policy (n agents)")
    t.add_column("window", justify="right")
    t.add_column("all", justify="right")
    for pol, rows in by_policy.items():
        n = max((r["agents"] for r in rows), default=0)
        t.add_column(f"{pol} ({n})", justify="right")
    series = {pol: {r["window"]: r["total"] for r in rows} for pol, rows in by_policy.items()}
    for w in a["rewards"]["windows"]:
        t.add_row(str(w), _f(means.get(w)), *(_f(series[p].get(w)) for p in by_policy))
    console.print(t)
    keys = ("density", "clustering", "lcc", "path_ln", "modularity")
    nt = Table(
        title="final tie network vs the eight real friendship networks (✓ inside range)",
        show_edge=False,  # its eight columns then fit 80 characters with every name whole
    )
    nt.add_column("θ")
    nt.add_column("edges", justify="right")
    for k in keys:
        nt.add_column(k, justify="right")
    nt.add_column("median\ndegree", justify="right")
    for th, mm in a["network"]["ties"]["final"].items():
        ref = mm.get("reference") or {}
        cells = []
        for k in keys:
            inside = (ref.get(k) or {}).get("inside")
            flag = "" if inside is None else (" ✓" if inside else " ✗")
            cells.append(_f(mm.get(k)) + flag)
        nt.add_row(th, str(mm.get("edges")), *cells, _f(mm.get("median_degree"), 1))
    console.print(nt)
    ranges = _reference_ranges(a["network"]["ties"]["final"], keys)
    if ranges:
        console.print(f"range of the eight real networks: {ranges}", markup=False)
    for note in a.get("notes", []):
        console.print(f"note: {note}")


def _reference_ranges(final: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """``density 0.064–0.469, ...``: the real networks' min–max of each metric the table
    checks (the same at every θ), so a ✗ can be read against the range it misses."""
    parts = []
    for k in keys:
        ref = next(
            (mm["reference"][k] for mm in final.values() if (mm.get("reference") or {}).get(k)),
            None,
        )
        if ref is not None and ref.get("min") is not None and ref.get("max") is not None:
            parts.append(f"{k} {ref['min']:.3f}–{ref['max']:.3f}")
    return ", ".join(parts)


def print_sweep(agg: Mapping[str, Any], *, console: Console | None = None) -> None:
    """The sweep's headline metrics per cell: mean [95 % CI] (rich, to ``console``, else stdout).

    The columns are headed by the cells' labels when the table fits the console's width with
    its columns wrapped at their words (values wrap before a label is replaced); otherwise by
    short ids (``A``, ``B`` ...) that a legend before the table
    gives with each cell's label and settings, and, when even those columns would not fit at
    their narrowest beside the metric names, the cells are split over several tables. The
    metric names are never cut."""
    from rich.console import Console

    from friendsim.analysis.stats import format_stat
    from friendsim.sweep.aggregate import cell_label, headline_keys

    console = console or Console()
    cells = list(agg["cells"])
    keys = headline_keys(agg)
    labels = [cell_label(c) for c in cells]
    title = (
        f"sweep {agg.get('name')}: mean [95% Student-t CI] over "
        f"{agg['replications']} replications (n=1: no CI)"
    )
    rows = [[format_stat(c["metrics"].get(k), 3, of=c["completed"]) for c in cells] for k in keys]
    heads = [f"(n={c['completed']}/{c['runs']})" for c in cells]
    diffs = agg.get("contrasts") or []
    by_name = {c["name"]: label for c, label in zip(cells, labels, strict=True)}
    d_labels = [by_name.get(d["cell"], d.get("label") or d["cell"]) for d in diffs]
    d_rows = [[format_stat(d["metrics"].get(k), 3, of=d["pairs"]) for d in diffs] for k in keys]
    d_heads = [f"(pairs={d['pairs']})" for d in diffs]
    base = by_name.get(diffs[0]["baseline"], diffs[0]["baseline"]) if diffs else ""
    if _fits(console, _metric_table(title, keys, labels, heads, rows), narrowest=True) and (
        not diffs
        or _fits(console, _metric_table("", keys, d_labels, d_heads, d_rows), narrowest=True)
    ):
        console.print(_metric_table(title, keys, labels, heads, rows))
        if diffs:
            d_title = f"paired difference vs {base} (same seeds): mean [95% CI]"
            console.print(_metric_table(d_title, keys, d_labels, d_heads, d_rows))
    else:
        ids = dict(zip(labels, _short_ids(len(cells)), strict=True))
        for c, label in zip(cells, labels, strict=True):
            settings = ", ".join(f"{k} = {json.dumps(v)}" for k, v in c["overrides"].items())
            console.print(f"{ids[label]}  {label} — {settings or '(base)'}", markup=False)
        _print_split(console, title, keys, [ids[x] for x in labels], heads, rows)
        if diffs:
            d_title = f"paired difference vs {ids.get(base, base)} (same seeds): mean [95% CI]"
            _print_split(console, d_title, keys, [ids.get(x, x) for x in d_labels], d_heads, d_rows)
    for c in cells:
        for f in c["failed"]:
            console.print(f"failed: {f['dir']}: {f['status']} {f.get('error') or ''}", markup=False)


def _short_ids(n: int) -> list[str]:
    """``n`` column ids: ``A`` ... ``Z``, then ``AA``, ``AB`` ... (as spreadsheet columns)."""
    out = []
    for i in range(1, n + 1):
        text = ""
        while i:
            i, r = divmod(i - 1, 26)
            text = chr(ord("A") + r) + text
        out.append(text)
    return out


def _metric_table(
    title: str, keys: list[str], heads: list[str], notes: list[str], rows: list[list[str]]
) -> Table:
    """One metric per row (its name never wrapped nor cut), one cell per column."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title or None)
    t.add_column("metric", no_wrap=True, min_width=max(map(len, keys), default=6))
    for head, note in zip(heads, notes, strict=True):
        t.add_column(Text(f"{head}\n{note}"), justify="right")
    for k, row in zip(keys, rows, strict=True):
        t.add_row(k, *row)
    return t


def _fits(console: Console, table: Table, *, narrowest: bool = False) -> bool:
    """Whether ``table`` fits the console's width: at its natural width, or, ``narrowest``, with
    its columns wrapped as narrow as their words allow."""
    from rich.measure import Measurement

    unbounded = console.options.update_width(1 << 20)  # else measured no wider than the console
    m = Measurement.get(console, unbounded, table)
    return (m.minimum if narrowest else m.maximum) <= console.width


def _print_split(
    console: Console,
    title: str,
    keys: list[str],
    heads: list[str],
    notes: list[str],
    rows: list[list[str]],
) -> None:
    """:func:`_metric_table`, its cell columns split over as many tables as it takes for each to
    fit the console at their narrowest (one column per table at the least)."""

    def _part(start: int, end: int) -> Table:
        part = [r[start:end] for r in rows]
        return _metric_table(title, keys, heads[start:end], notes[start:end], part)

    start = 0
    while start < len(heads):
        end = start + 1  # one column at the least
        while end < len(heads) and _fits(console, _part(start, end + 1), narrowest=True):
            end += 1
        console.print(_part(start, end))
        start = end
