"""After ``friendsim analyze SWEEP --refresh``, the sweep report's drawings come from the
refreshed analyses, as its tables do. The report drew the degree distributions (and the first
run's network) from each replication's own cached ``analysis.json``, which the refresh does not
rewrite (it never writes into a run), so a wrong cached analysis stayed in every figure while
the numbers beside them were right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_sweep_aggregate import build_sweep_dir

from friendsim.analysis.analyze import ANALYSIS_FILE, analyze_run, load_analysis


def test_report_figures_use_the_refreshed_analysis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from friendsim.report import figures
    from friendsim.report.common import pick_theta
    from friendsim.report.sweep_page import sweep_report
    from friendsim.sweep.aggregate import load_or_aggregate

    cache = tmp_path / "cache"
    monkeypatch.setenv("FRIENDSIM_CACHE_DIR", str(cache))
    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2)
    for cell in ("coach.enabled-true", "coach.enabled-false"):
        for k in range(2):
            rd = sd / cell / f"rep{k}"
            load_analysis(rd, cache=rd / ANALYSIS_FILE)  # as the sweep runner leaves it
    rd = sd / "coach.enabled-true/rep0"
    cached = json.loads((rd / ANALYSIS_FILE).read_text())
    for m in cached["analysis"]["network"]["ties"]["final"].values():
        m["degree_distribution"] = {"97": 1000}  # wrong; the inputs are unchanged: still current
    (rd / ANALYSIS_FILE).write_text(json.dumps(cached))

    done = subprocess.run(
        [sys.executable, "-m", "friendsim", "analyze", str(sd), "--refresh", "--json"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "FRIENDSIM_CACHE_DIR": str(cache)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    drawn: dict[str, Any] = {}
    real = figures.degree_distributions

    def capture(dists: dict[str, dict[str, int]], **kw: Any) -> bytes:
        drawn.update(dists)
        return real(dists, **kw)

    monkeypatch.setattr(figures, "degree_distributions", capture)
    sweep_report(load_or_aggregate(sd), sweep_dir=sd)
    analyses = [analyze_run(sd / f"coach.enabled-true/rep{k}") for k in range(2)]
    theta = pick_theta(analyses[0]["network"]["thetas"], None)
    pooled: dict[str, int] = {}
    for a in analyses:
        for d, n in a["network"]["ties"]["final"][theta]["degree_distribution"].items():
            pooled[d] = pooled.get(d, 0) + n
    assert drawn["coach.enabled=true"] == pooled  # keyed by the cell's label
