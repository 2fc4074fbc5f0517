"""The report page of a sweep (from :func:`friendsim.sweep.aggregate.load_or_aggregate`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from friendsim.report import figures
from friendsim.report.common import (
    REF_KEYS,
    Report,
    esc,
    groups_of,
    img,
    num,
    page,
    pick_attribute,
    pick_theta,
    table,
    tie_edges,
)


def sweep_report(
    agg: Mapping[str, Any],
    *,
    sweep_dir: Path,
    theta: str | float | None = None,
    color_by: str | None = None,
) -> Report:
    """The report of a sweep from its aggregate (and each cell's first run for the drawings)."""
    from friendsim.analysis.analyze import load_analysis
    from friendsim.analysis.stats import format_stat
    from friendsim.sweep.aggregate import cell_label, headline_keys

    title = f"friendsim sweep report: {agg.get('name')}"
    cells = agg["cells"]
    label = {c["name"]: cell_label(c) for c in cells}
    figs: dict[str, bytes] = {}
    first = {
        label[c["name"]]: load_analysis(sweep_dir / c["run_dirs"][0])
        for c in cells
        if c["run_dirs"]
    }
    thetas: list[str] = next((a["network"]["thetas"] for a in first.values()), [])
    th = pick_theta(thetas, theta) if thetas else None

    grid = agg.get("grid") or {}
    summary = table(
        ["field", "value"],
        [
            ["replications", str(agg["replications"])],
            ["grid", "; ".join(f"{k} = {json.dumps(v)}" for k, v in grid.items()) or "(none)"],
            ["seeds", ", ".join(map(str, agg.get("seeds", [])))],
            ["status", str(agg.get("status"))],
            ["wall seconds", num(agg.get("wall_seconds"), 1)],
            ["interval", str(agg.get("interval"))],
        ],
    )
    summary += table(
        ["cell", "directory", "settings", "completed / runs"],
        [
            [
                label[c["name"]],
                c["name"],
                ", ".join(f"{k}={json.dumps(v)}" for k, v in c["overrides"].items()),
                f"{c['completed']} / {c['runs']}",
            ]
            for c in cells
        ],
    )
    for c in cells:
        for f in c["failed"]:
            summary += f'<p class="note">failed: {esc(f["dir"])}: {esc(f["status"])} {esc(f.get("error"))}</p>'
    if any(c["completed"] == 1 for c in cells):
        summary += (
            '<p class="note">Cells with one completed run have no confidence interval (n=1).</p>'
        )

    panels: dict[str, dict[str, Any]] = {}
    for c in cells:
        for g, pts in c["curves"].items():
            panels.setdefault("all agents" if g == "all" else g, {})[label[c["name"]]] = pts
    panels = dict(sorted(panels.items(), key=lambda kv: (kv[0] != "all agents", kv[0])))
    vs = " (coach on vs off)" if "coach.enabled" in grid else ""
    figs["rewards"] = figures.reward_curves(
        panels, title=f"mean total reward per window{vs}; band: 95% t-interval over replications"
    )
    rewards = img(
        "rewards", figs["rewards"], f"Reward curves per dominant policy, one line per cell{vs}"
    )

    network = ""
    if th is not None:
        for i, (name, a) in enumerate(first.items()):
            attr = pick_attribute(a["agents"], color_by)
            key = f"network-{i}"
            figs[key] = figures.network_drawing(
                sorted(a["agents"]),
                tie_edges(a, th),
                groups=groups_of(a["agents"], attr),
                attribute=attr or "",
                title=f"{name}, rep 0: tie network θ={th}, coloured by {attr}",
                seed=int(a["manifest"].get("seed") or 0),
            )
            network += img(key, figs[key], f"{name} (first replication), θ={th}, colour = {attr}")

    reference = "<p>No tie thresholds (no completed run).</p>"
    degrees = reference
    if th is not None:
        from friendsim.analysis.reference import load_reference

        ref = load_reference()
        head = [
            "cell",
            *(f"{k} [{ref.ranges[k][0]:.3g}, {ref.ranges[k][1]:.3g}]" for k in REF_KEYS),
        ]
        rows = []
        for c in cells:
            row = [f"<td>{esc(label[c['name']])}</td>"]
            for k in REF_KEYS:
                s = c["metrics"].get(f"ties.{th}.{k}")
                mean = None if not s else s.get("mean")
                inside = None if mean is None else ref.ranges[k][0] <= mean <= ref.ranges[k][1]
                cls = "" if inside is None else (' class="in"' if inside else ' class="out"')
                flag = "" if inside is None else (" ✓" if inside else " ✗")
                row.append(f"<td{cls}>{esc(format_stat(s, of=c['completed']))}{flag}</td>")
            rows.append(row)
        reference = (
            f"<p>Final tie networks at θ={esc(th)}: mean [95% CI] over replications; ✓/✗: the mean is "
            "inside/outside the range of the eight real friendship networks.</p>"
            + table(head, rows, raw=True)
        )
        dists: dict[str, dict[str, int]] = {}
        nodes: dict[str, float] = {}
        for c in cells:
            pooled: dict[str, int] = {}
            for d in c["run_dirs"]:
                mm = load_analysis(sweep_dir / d)["network"]["ties"]["final"].get(th) or {}
                for k, v in (mm.get("degree_distribution") or {}).items():
                    pooled[k] = pooled.get(k, 0) + int(v)
            dists[label[c["name"]]] = pooled
            nodes[label[c["name"]]] = sum(pooled.values()) / max(1, len(c["run_dirs"]))
        figs["degrees"] = figures.degree_distributions(
            dists,
            title=f"tie-network degree distributions, θ={th}, pooled over replications",
            nodes=nodes,
        )
        degrees = img(
            "degrees", figs["degrees"], "Degree distributions per cell (nodes per degree)"
        )

    ukeys = (
        "usage.calls",
        "usage.input_tokens",
        "usage.output_tokens",
        "usage.cost_usd",
        "run.wall_seconds",
    )
    usage = table(
        ["cell", *ukeys, "total cost (completed runs)", "spent (all runs)"],
        [
            [
                label[c["name"]],
                *(format_stat(c["metrics"].get(k), of=c["completed"]) for k in ukeys),
                num(_total_cost(c), 6),
                _spent(c),
            ]
            for c in cells
        ],
    )
    agg_rows = [
        [k, *(format_stat(c["metrics"].get(k), of=c["completed"]) for c in cells)]
        for k in headline_keys(agg)
    ]
    aggregate = (
        table(["metric", *(f"{label[c['name']]} (n={c['completed']})" for c in cells)], agg_rows)
        + "<p>Every metric (per window, per policy, per θ) is in <code>aggregate.json</code>.</p>"
    )
    diffs = agg.get("contrasts") or []
    if diffs:
        keys = headline_keys(agg)
        aggregate += (
            f"<h3>Paired difference vs {esc(label.get(diffs[0]['baseline'], diffs[0]['baseline']))}"
            "</h3><p>Per replication "
            "(same seed in both cells): cell − baseline, mean [95% CI].</p>"
            + table(
                [
                    "metric",
                    *(f"{label.get(d['cell'], d['cell'])} (pairs={d['pairs']})" for d in diffs),
                ],
                [
                    [k, *(format_stat(d["metrics"].get(k), of=d["pairs"]) for d in diffs)]
                    for k in keys
                ],
            )
        )
    sections = [
        ("summary", "Summary", summary),
        ("rewards", "Rewards per policy", rewards),
        ("network", "Tie networks", network),
        ("reference", "Against real friendship networks", reference),
        ("degrees", "Degree distributions", degrees),
        ("usage", "Token usage and cost", usage),
        ("aggregate", "Aggregate (mean [95% CI])", aggregate),
    ]
    return Report(title=title, html=page(title, sections), figures=figs)


def _spent(cell: Mapping[str, Any]) -> str:
    """What every run of the cell spent, and how many runs' spend is unknown."""
    spent = cell.get("spent_usd") or {}
    if not spent:
        return "—"
    runs, attempts = spent.get("runs", 0), spent.get("attempts", 0)
    text = f"{num(spent.get('total'), 6)} ({runs} runs"
    if attempts > runs:
        text += f", {attempts} attempts"
    unknown = spent.get("unknown") or 0
    return text + (f"; {unknown} unknown)" if unknown else ")")


def _total_cost(cell: Mapping[str, Any]) -> float | None:
    s = cell["metrics"].get("usage.cost_usd") or {}
    return None if s.get("mean") is None else float(s["mean"]) * int(s["n"])
