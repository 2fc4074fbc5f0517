"""One self-contained HTML report of a run or a sweep: ``report.html`` plus its PNGs.

The page takes its numbers from the same functions as ``friendsim analyze --json``
(:func:`friendsim.analysis.analyze.load_analysis` for a run,
:func:`friendsim.sweep.aggregate.load_or_aggregate` for a sweep), so the two never disagree.
Sections (HTML ids): ``summary``, ``rewards`` (reward curves per dominant policy, mean and 95 %
band; for a sweep one line per grid cell, e.g. coach on vs off); for a run also ``components``
(SOC, INF, PRE, COORD, EMO and the total per window with 95 % bands), ``coach`` (tips and how
often they were followed), ``agents`` (one row per agent); ``network`` (the final tie
network at θ drawn with a seeded spring layout, coloured by a persona group attribute),
``reference`` (metrics against the ranges of the eight real friendship networks, inside/outside
flags), ``degrees`` (nodes per degree, one panel per network), for a run the optional sections of
:data:`friendsim.report.run_sections.OPTIONAL_SECTIONS` it has (interventions, moderation,
surveys, cascades), ``usage`` (tokens and cost), and for sweeps
``aggregate`` (headline metrics, mean [95 % CI] per cell).

Self-contained: images are embedded as base64 ``data:`` URIs (and also written beside the page as
files), styles are inline, there is no script, and a Content-Security-Policy forbids loading
anything else. All text from the run (names, models, attributes) is HTML-escaped.
"""

from __future__ import annotations

import os
from pathlib import Path

from friendsim.report.common import (
    FIGURES_DIR,
    REPORT_FILE,
    RUN_SECTION_IDS,
    SECTION_IDS,
    Report,
    ReportError,
)
from friendsim.report.run_page import run_report
from friendsim.report.sweep_page import sweep_report

__all__ = [
    "FIGURES_DIR",
    "REPORT_FILE",
    "RUN_SECTION_IDS",
    "SECTION_IDS",
    "Report",
    "ReportError",
    "build_report",
    "run_report",
    "sweep_report",
    "write_report",
]


def build_report(
    path: str | Path, *, theta: str | float | None = None, color_by: str | None = None
) -> Report:
    """The report of a run directory or a sweep directory (``sweep.json``). A run's report holds
    off full garbage collections (:mod:`friendsim._heap`): its figures are drawn with the whole
    analysis in memory, which each full collection would walk for nothing."""
    from friendsim._heap import paced_collection
    from friendsim.analysis.analyze import load_analysis
    from friendsim.rundir.layout import EVENTS_DB, SWEEP_FILE
    from friendsim.runtime.tie_scoring import score_run_ties
    from friendsim.sweep.aggregate import load_or_aggregate

    p = Path(path)
    if (p / SWEEP_FILE).is_file():
        return sweep_report(load_or_aggregate(p), sweep_dir=p, theta=theta, color_by=color_by)
    if (p / EVENTS_DB).is_file():
        score_run_ties(p)  # text-based tie evidence is scored (once) before analysis reads it
        with paced_collection():
            return run_report(load_analysis(p), theta=theta, color_by=color_by)
    raise ReportError(
        f"{p}: neither a run directory ({EVENTS_DB}) nor a sweep directory ({SWEEP_FILE})"
    )


def write_report(
    path: str | Path,
    *,
    out: str | Path | None = None,
    theta: str | float | None = None,
    color_by: str | None = None,
) -> Path:
    """Write ``report.html`` (default: inside ``path``) and its PNGs in ``figures/`` beside it;
    returns the HTML path."""
    report = build_report(path, theta=theta, color_by=color_by)
    target = Path(out) if out is not None else Path(path) / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    fig_dir = target.parent / FIGURES_DIR
    fig_dir.mkdir(exist_ok=True)
    for name, png in report.figures.items():
        (fig_dir / f"{name}.png").write_bytes(png)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(report.html, encoding="utf-8")
    os.replace(tmp, target)
    return target
