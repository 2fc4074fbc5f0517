"""Aggregation across replications: Student-t intervals, n=1, and a sweep directory built from
fixture runs (no runtime involved)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from test_analyze_fixture import build_run_dir

from friendsim.analysis.analyze import load_analysis
from friendsim.analysis.stats import NO_CI_NOTE, format_stat, mean_ci
from friendsim.sweep.aggregate import (
    AGGREGATE_FILE,
    AGGREGATE_TABLE,
    SweepReadError,
    aggregate_sweep,
    flatten_analysis,
)

CELLS = (("coach.enabled-true", True), ("coach.enabled-false", False))


def build_sweep_dir(root: Path, *, reps: int = 3, windows: int = 3, fail_one: bool = False) -> Path:
    """A sweep directory shaped like ``run_sweep``'s, from fixture runs (coach on/off cells)."""
    runs = []
    for name, coach in CELLS:
        for k in range(reps):
            rel = f"{name}/rep{k}"
            status = "completed"
            if fail_one and not coach and k == reps - 1:
                status = "failed"
            else:
                build_run_dir(
                    root / rel,
                    seed=100 + k,
                    windows=windows,
                    n_agents=6,
                    coach=coach,
                    cost_usd=0.01 * (k + 1),
                )
            runs.append(
                {
                    "cell": name,
                    "rep": k,
                    "seed": 100 + k,
                    "dir": rel,
                    "status": status,
                    "wall_seconds": 1.0,
                    "error": "boom" if status == "failed" else None,
                }
            )
    spec = {
        "source": "fixture.toml",
        "name": "fixture-sweep",
        "replications": reps,
        "grid": {"coach.enabled": [True, False]},
        "seeds": [100 + k for k in range(reps)],
        "cells": [{"name": n, "overrides": {"coach.enabled": c}} for n, c in CELLS],
    }
    body = {
        "kind": "sweep",
        "status": "completed",
        "spec": spec,
        "jobs": 1,
        "runs": runs,
        "wall_seconds": 12.5,
    }
    (root / "sweep.json").write_text(json.dumps(body))
    return root


def test_mean_ci_student_t() -> None:
    s = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd(=1) / sqrt(3)
    assert s["n"] == 3 and s["mean"] == 2.0 and s["sd"] == 1.0
    assert s["lower"] == pytest.approx(2.0 - half) and s["upper"] == pytest.approx(2.0 + half)
    one = mean_ci([0.7])
    assert one["mean"] == 0.7 and one["lower"] is None and one["upper"] is None
    assert one["note"] == NO_CI_NOTE
    flat = mean_ci([0.5, 0.5, None, float("nan")])
    assert flat["n"] == 2 and flat["lower"] == flat["upper"] == 0.5
    assert mean_ci([])["mean"] is None
    assert format_stat(one) == "0.7000 (n=1, no CI)"
    assert format_stat(s, 2) == f"2.00 [{2 - half:.2f}, {2 + half:.2f}]"


def test_aggregate_of_a_fixture_sweep(tmp_path: Path) -> None:
    sd = build_sweep_dir(tmp_path / "sweep", reps=3)
    agg = aggregate_sweep(sd)
    assert json.loads((sd / AGGREGATE_FILE).read_text()) == json.loads(json.dumps(agg))
    table = (sd / AGGREGATE_TABLE).read_text()
    assert "reward.all.total.mean" in table and "coach.enabled=false (n=3)" in table
    assert [c["name"] for c in agg["cells"]] == [n for n, _ in CELLS]
    varying = 0
    for cell in agg["cells"]:
        assert cell["completed"] == 3
        flats = [flatten_analysis(load_analysis(sd / d)) for d in cell["run_dirs"]]
        for key, s in cell["metrics"].items():
            vals = [f[key] for f in flats if f.get(key) is not None]
            assert s["n"] == len(vals), key
            if s["n"] >= 2:
                assert s["lower"] <= s["mean"] <= s["upper"], key
                assert s["mean"] == pytest.approx(statistics.fmean(vals)), key
                if statistics.stdev(vals) > 0:
                    varying += 1
                    assert s["upper"] - s["lower"] > 0, key
        m = cell["metrics"]
        assert m["usage.cost_usd"]["mean"] == pytest.approx(0.02)  # 0.01, 0.02, 0.03
        assert "reward.all.total.w3" in m and "ties.0.05.density" in m
        curve = cell["curves"]["all"]
        assert [p["window"] for p in curve] == [1, 2, 3]
        assert all(p["n"] == 3 for p in curve)
    assert varying > 10  # replications really differ (different seeds)
    (contrast,) = agg["contrasts"]
    assert (
        contrast["cell"] == "coach.enabled-false" and contrast["baseline"] == "coach.enabled-true"
    )
    assert contrast["pairs"] == 3
    on = [flatten_analysis(load_analysis(sd / f"coach.enabled-true/rep{k}")) for k in range(3)]
    off = [flatten_analysis(load_analysis(sd / f"coach.enabled-false/rep{k}")) for k in range(3)]
    key = "interaction.total_weight"
    diffs = [b[key] - a[key] for a, b in zip(on, off, strict=True)]
    d = contrast["metrics"][key]
    assert d["mean"] == pytest.approx(statistics.fmean(diffs))
    assert d["mean"] < 0  # the fixture's coached runs are busier
    assert d["lower"] <= d["mean"] <= d["upper"]
    assert "paired difference vs coach.enabled=true" in (sd / AGGREGATE_TABLE).read_text()


def test_failed_runs_are_left_out_and_n1_has_no_ci(tmp_path: Path) -> None:
    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2, fail_one=True)
    agg = aggregate_sweep(sd)
    off = agg["cells"][1]
    assert off["completed"] == 1 and off["failed"][0]["error"] == "boom"
    s = off["metrics"]["reward.all.total.mean"]
    assert s["n"] == 1 and s["lower"] is None and s["note"] == NO_CI_NOTE
    assert "no CI" in (sd / AGGREGATE_TABLE).read_text()


def test_not_a_sweep(tmp_path: Path) -> None:
    with pytest.raises(SweepReadError, match=r"no sweep\.json"):
        aggregate_sweep(tmp_path)
    (tmp_path / "sweep.json").write_text("[]")
    with pytest.raises(SweepReadError, match="missing 'spec'"):
        aggregate_sweep(tmp_path)


def test_cached_aggregate_is_recomputed_when_the_runs_analyses_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An aggregate depends on the runs' analyses as well as on ``sweep.json``: after an upgrade
    that changes the analysis (its version), or a change to a run's inputs, ``analyze`` and
    ``report`` used to serve the old aggregate, disagreeing with each run's own analysis."""
    import friendsim.analysis.analyze as analyze_module
    import friendsim.sweep.aggregate as aggregate_module

    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2)
    cache = tmp_path / "cache"
    monkeypatch.setenv("FRIENDSIM_CACHE_DIR", str(cache))
    first = aggregate_sweep(sd)
    assert aggregate_module.load_or_aggregate(sd) == json.loads(json.dumps(first))  # cached

    real = analyze_module.analyze_run

    def changed(run_dir: Path) -> dict:
        out = real(run_dir)
        out["usage"]["total"]["cost_usd"] += 1.0
        return out

    monkeypatch.setattr(analyze_module, "analyze_run", changed)
    monkeypatch.setattr(analyze_module, "ANALYSIS_VERSION", analyze_module.ANALYSIS_VERSION + 1)
    served = aggregate_module.load_or_aggregate(sd)
    runs = [c["run_dirs"] for c in served["cells"]]
    for cell, dirs in zip(served["cells"], runs, strict=True):
        own = [load_analysis(sd / d)["usage"]["total"]["cost_usd"] for d in dirs]
        assert cell["metrics"]["usage.cost_usd"]["mean"] == pytest.approx(statistics.fmean(own))
        assert cell["metrics"]["usage.cost_usd"]["mean"] > 1.0

    monkeypatch.setattr(analyze_module, "analyze_run", real)
    again = aggregate_module.load_or_aggregate(sd)  # cached again for these inputs
    assert again == json.loads(json.dumps(served))
    manifest = sd / "coach.enabled-true/rep0/manifest.json"
    manifest.write_text(manifest.read_text() + " ")  # a run's inputs changed: recomputed
    fresh = aggregate_module.load_or_aggregate(sd)
    assert fresh["cells"][0]["metrics"]["usage.cost_usd"]["mean"] < 1.0


def test_tables_show_the_n_of_a_metric_undefined_in_some_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A metric undefined in a replication (path length of an empty tie network, say) has its
    mean and interval over fewer runs than the column's n; every table used to show them under
    'n=3' (or 'pairs=3') with nothing saying the interval rests on two values."""
    import friendsim.sweep.aggregate as aggregate_module
    from friendsim.commands.analyze import print_sweep
    from friendsim.report.sweep_page import sweep_report

    key = "ties.0.05.path_ln"
    real = aggregate_module.flatten_analysis

    def one_empty(analysis: dict) -> dict:  # rep1 of the second cell: an empty tie network
        out = real(analysis)
        if analysis["manifest"]["seed"] == 101 and not analysis["manifest"]["coach"]["enabled"]:
            out[key] = None
        return out

    monkeypatch.setattr(aggregate_module, "flatten_analysis", one_empty)
    sd = build_sweep_dir(tmp_path / "sweep", reps=3)
    agg = aggregate_sweep(sd)
    off = agg["cells"][1]
    flats = [one_empty(load_analysis(sd / d)) for d in off["run_dirs"]]
    vals = [f[key] for f in flats if f[key] is not None]
    s = off["metrics"][key]
    assert off["completed"] == 3 and s["n"] == len(vals) == 2
    assert s["mean"] == pytest.approx(statistics.fmean(vals))
    diff = agg["contrasts"][0]["metrics"][key]
    assert agg["contrasts"][0]["pairs"] == 3 and diff["n"] == 2

    rows = [r for r in (sd / AGGREGATE_TABLE).read_text().splitlines() if f"| {key} |" in r]
    assert len(rows) == 2  # the cells' table and the paired differences'
    assert rows[0].endswith(f"| {format_stat(s)} (n=2 of 3) |")  # the second cell only
    assert rows[0].count("(n=2 of 3)") == 1 and "(n=2 of 3)" in rows[1]
    monkeypatch.setenv("COLUMNS", "200")
    print_sweep(agg)
    printed = [ln for ln in capsys.readouterr().out.splitlines() if key in ln]
    assert len(printed) == 2 and all("(n=2 of 3)" in ln for ln in printed)
    html = sweep_report(agg, sweep_dir=sd).html
    assert html.count(f"{format_stat(s)} (n=2 of 3)") >= 2  # the reference table, the aggregate

    assert format_stat(s, of=3) == f"{format_stat(s)} (n=2 of 3)"
    assert format_stat(diff, of=3) == f"{format_stat(diff)} (n=2 of 3)"
    assert format_stat(s, of=2) == format_stat(s)
    assert format_stat(mean_ci([0.5]), of=3) == "0.5000 (n=1 of 3, no CI)"


def test_sweep_report_cost_total_says_which_runs_it_sums(tmp_path: Path) -> None:
    """The usage table's total is the completed runs' cost (the aggregate holds only those); its
    column was headed 'total cost (all runs)' while a failed run's spending was left out."""
    import re

    from friendsim.report.sweep_page import sweep_report

    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2, fail_one=True)
    agg = aggregate_sweep(sd)
    html = sweep_report(agg, sweep_dir=sd).html
    usage = html[html.index('id="usage"') :]
    assert "total cost (all runs)" not in usage and "total cost (completed runs)" in usage
    off = agg["cells"][1]
    assert off["completed"] == 1 < off["runs"]
    spent = sum(load_analysis(sd / d)["usage"]["total"]["cost_usd"] for d in off["run_dirs"])
    row = re.search(r"<tr><td>coach\.enabled=false</td>.*?</tr>", usage, re.S)
    assert row is not None and f"<td>{spent:.6f}</td><td>" in row.group(0)


def test_analyze_refresh_of_a_sweep_analyses_its_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``friendsim analyze SWEEP --refresh`` ("compute everything again instead of reading the
    cached analysis") re-aggregated the runs' cached analyses, so a wrong cached analysis
    stayed in the sweep's numbers."""
    from friendsim.analysis.analyze import ANALYSIS_FILE, analyze_run
    from friendsim.commands.analyze import analyze_path

    monkeypatch.setenv("FRIENDSIM_CACHE_DIR", str(tmp_path / "cache"))
    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2)
    rd = sd / "coach.enabled-true/rep0"
    load_analysis(rd, cache=rd / ANALYSIS_FILE)  # as the sweep runner leaves it
    cached = json.loads((rd / ANALYSIS_FILE).read_text())
    cached["analysis"]["usage"]["total"]["cost_usd"] = 99.0  # inputs unchanged: still current
    (rd / ANALYSIS_FILE).write_text(json.dumps(cached))
    assert analyze_path(sd)["cells"][0]["metrics"]["usage.cost_usd"]["mean"] > 49

    true = [analyze_run(sd / f"coach.enabled-true/rep{k}")["usage"]["total"] for k in range(2)]
    fresh = analyze_path(sd, refresh=True)["cells"][0]["metrics"]["usage.cost_usd"]
    assert fresh["mean"] == pytest.approx(statistics.fmean(t["cost_usd"] for t in true))


def test_what_every_run_of_a_cell_spent_failed_runs_included(tmp_path: Path) -> None:
    """The metrics cover completed runs only, but a failed run was paid for too: ``spent_usd``
    adds up every replication's manifest, and says how many runs' spend is unknown."""
    import re

    from friendsim.report.sweep_page import sweep_report
    from friendsim.rundir.manifest import read_manifest

    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2, fail_one=True)

    def cost(rel: str) -> float:
        return float(read_manifest(sd / rel).llm_usage["total"]["cost_usd"])

    off = aggregate_sweep(sd)["cells"][1]
    paid = cost("coach.enabled-false/rep0")
    assert paid > 0
    assert off["spent_usd"] == {
        "total": pytest.approx(paid),
        "runs": 1,
        "attempts": 1,
        "unknown": 1,
    }

    build_run_dir(  # the failed replication left its run behind, with what it spent
        sd / "coach.enabled-false/rep1", seed=101, windows=1, n_agents=6, coach=False, cost_usd=0.5
    )
    agg = aggregate_sweep(sd)
    off = agg["cells"][1]
    both = paid + cost("coach.enabled-false/rep1")
    assert off["spent_usd"] == {
        "total": pytest.approx(both),
        "runs": 2,
        "attempts": 2,
        "unknown": 0,
    }
    assert off["completed"] == 1 and off["metrics"]["usage.cost_usd"]["mean"] == pytest.approx(paid)
    on = agg["cells"][0]
    assert on["spent_usd"]["total"] == pytest.approx(
        sum(cost(f"coach.enabled-true/rep{k}") for k in range(2))
    )
    usage = sweep_report(agg, sweep_dir=sd).html
    usage = usage[usage.index('id="usage"') :]
    row = re.search(r"<tr><td>coach\.enabled=false</td>.*?</tr>", usage, re.S)
    assert row is not None
    assert row.group(0).endswith(f"<td>{paid:.6f}</td><td>{both:.6f} (2 runs)</td></tr>")


def test_mean_ci_uses_the_student_t_quantile_of_scipy_stats() -> None:
    from scipy import stats

    for n in (2, 3, 5, 30, 1000, 3001):
        xs = [float(i % 7) for i in range(n)]
        s = mean_ci(xs)
        half = float(stats.t.ppf(0.975, n - 1)) * s["sd"] / math.sqrt(n)
        assert s["half_width"] == half
