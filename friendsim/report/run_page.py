"""The report page of one run (from :func:`friendsim.analysis.analyze.load_analysis`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
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
from friendsim.report.run_sections import (
    agents_section,
    coach_section,
    components_section,
    optional_sections,
)


def _run_bands(analysis: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per policy group (``all agents`` + each dominant policy): per window, the mean total
    reward over the group's agents with its 95 % t band."""
    from friendsim.analysis.stats import mean_ci

    dominant = {a: v["dominant"] for a, v in analysis["agents"].items()}
    per: dict[str, dict[int, list[float]]] = {}
    for r in analysis["rewards"]["per_agent"]:
        for g in ("all agents", dominant.get(r["agent"], "mixed")):
            per.setdefault(g, {}).setdefault(int(r["window"]), []).append(float(r["total"]))
    return {
        g: [{"window": w, **mean_ci(v)} for w, v in sorted(ws.items())]
        for g, ws in sorted(per.items(), key=lambda kv: (kv[0] != "all agents", kv[0]))
    }


def _reference_cells(ref: Mapping[str, Any]) -> list[str]:
    cells = []
    for k in REF_KEYS:
        r = ref.get(k) or {}
        inside = r.get("inside")
        cls = "" if inside is None else (' class="in"' if inside else ' class="out"')
        flag = "" if inside is None else (" ✓" if inside else " ✗")
        cells.append(f"<td{cls}>{num(r.get('value'))}{flag}</td>")
    return cells


def _ranges_head(analysis_ref: Mapping[str, Any]) -> list[str]:
    rng = analysis_ref["ranges"]
    return [f"{k} [{rng[k]['min']:.3g}, {rng[k]['max']:.3g}]" for k in REF_KEYS]


def reliability_line(usage: Mapping[str, Any]) -> str:
    """Attempts, retries by cause and failed calls by class, over every segment of the run."""
    total = usage.get("total") or {}
    retries = total.get("retries") or {}
    failures = total.get("failures") or {}

    def counts(d: Mapping[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"

    segments = int(usage.get("segments") or 1)
    over = f" over {segments} segments (the run and its resumes)" if segments > 1 else ""
    return (
        f"Requests sent {total.get('attempts', 0)}{over}; retries by cause: {counts(retries)}; "
        f"calls failed after retries, by class: {counts(failures)}."
    )


def usage_section(usage: Mapping[str, Any]) -> str:
    """Token and cost tables from the LLM ledger of the manifest."""
    total = usage.get("total") or {}
    keys = (
        "calls",
        "cache_hits",
        "errors",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "output_tokens",
        "cost_usd",
        "uncached_cost_usd",
    )
    parts = [table(["", *keys], [["total", *(num(total.get(k), 6) for k in keys)]])]
    saved = (total.get("uncached_cost_usd") or 0.0) - (total.get("cost_usd") or 0.0)
    if total.get("cached_input_tokens"):
        parts.append(
            f"<p>Prompt caching served {num(total.get('cached_input_tokens'), 0)} input tokens "
            f"from the providers' caches and saved ${saved:.4f} (uncached_cost_usd is the cost "
            "without it).</p>"
        )
    rows = [
        [
            f"{r.get('provider')}:{r.get('model')} / {r.get('label')}",
            *(num(r.get(k), 6) for k in keys),
        ]
        for r in usage.get("by_key") or []
    ]
    parts.append(f"<p>{esc(reliability_line(usage))}</p>")
    if rows:
        parts.append(table(["provider:model / label", *keys], rows))
    else:
        parts.append("<p>No LLM calls were made (baseline policy or fully cached run).</p>")
    if usage.get("unpriced_models"):
        parts.append(
            f'<p class="note">No price known for: {esc(", ".join(usage["unpriced_models"]))} '
            "(their cost counts as 0).</p>"
        )
    return "".join(parts)


def run_report(
    analysis: Mapping[str, Any], *, theta: str | float | None = None, color_by: str | None = None
) -> Report:
    """The report of one run from its analysis."""
    m = analysis["manifest"]
    net = analysis["network"]
    th = pick_theta(net["thetas"], theta)
    attr = pick_attribute(analysis["agents"], color_by)
    title = f"friendsim run report: {m.get('name') or analysis.get('run_dir')}"
    if m.get("null_model"):
        title += " (null-model run)"
    figs: dict[str, bytes] = {}

    summary_rows = [
        [
            k,
            num(m.get(k))
            if not isinstance(m.get(k), dict)
            else esc(", ".join(f"{a}={json.dumps(b)}" for a, b in m[k].items())),
        ]
        for k in (
            "name",
            "status",
            "mode",
            "policy",
            "null_model",
            "seed",
            "theme",
            "agents",
            "windows",
            "n_actions",
            "coach",
            "feed",
            "tie_evidence",
            "models",
            "wall_seconds",
            "totals",
        )
    ]
    summary = table(["field", "value"], summary_rows, raw=True)
    summary += "".join(f'<p class="note">{esc(n)}</p>' for n in analysis.get("notes", []))

    bands = _run_bands(analysis)
    figs["rewards"] = figures.reward_curves(
        {g: {"this run": pts} for g, pts in bands.items()},
        title="mean total reward per window by dominant policy (band: 95% t-interval over agents)",
    )
    windows = analysis["rewards"]["windows"]
    reward_rows = [
        [g, *(num(next((p["mean"] for p in pts if p["window"] == w), None), 3) for w in windows)]
        for g, pts in bands.items()
    ]
    rewards = img("rewards", figs["rewards"], "Reward curves per dominant policy") + table(
        ["policy", *(f"w{w}" for w in windows)], reward_rows
    )

    groups = groups_of(analysis["agents"], attr)
    figs["network"] = figures.network_drawing(
        sorted(analysis["agents"]),
        tie_edges(analysis, th),
        groups=groups,
        attribute=attr or "",
        title=f"final tie network, θ={th}, coloured by {attr}",
        seed=int(m.get("seed") or 0),
    )
    fm = net["ties"]["final"].get(th) or {"edges": 0}  # no complete window: no ties
    network = img(
        "network",
        figs["network"],
        f"Final tie network at θ={th} ({fm['edges']} edges), colour = {attr}",
    )

    reference = _reference_html(analysis)

    dists = {
        f"ties θ={t}": mm.get("degree_distribution") or {} for t, mm in net["ties"]["final"].items()
    }
    dists["follow"] = net["follow"].get("degree_distribution") or {}
    dists["interaction"] = net["interaction"]["final"].get("degree_distribution") or {}
    figs["degrees"] = figures.degree_distributions(dists, title="degree distributions")
    alpha_rows = [
        [
            f"ties θ={t}",
            num((mm.get("power_law") or {}).get("alpha"), 3),
            num(mm.get("median_degree"), 1),
        ]
        for t, mm in net["ties"]["final"].items()
    ]
    degrees = img(
        "degrees", figs["degrees"], "Degree distributions: nodes per degree (isolated nodes at 0)"
    ) + table(["network", "power-law γ", "median degree"], alpha_rows)

    components, figs["components"] = components_section(analysis)
    sections = [
        ("summary", "Summary", summary),
        ("rewards", "Rewards per policy", rewards),
        ("components", "Reward components per window", components),
        ("coach", "Coach tips and whether they were followed", coach_section(analysis)),
        ("agents", "Agents", agents_section(analysis)),
        ("network", "Tie network", network),
        ("reference", "Against real friendship networks", reference),
        ("degrees", "Degree distributions", degrees),
        *optional_sections(analysis),
        ("usage", "Token usage and cost", usage_section(analysis["usage"])),
    ]
    return Report(title=title, html=page(title, sections), figures=figs)


def _reference_html(analysis: Mapping[str, Any]) -> str:
    ref = analysis["reference"]
    net = analysis["network"]
    head = ["network", "edges", *_ranges_head(ref)]
    rows = []
    for t, mm in net["ties"]["final"].items():
        rows.append(
            [
                f"<td>ties θ={esc(t)}</td>",
                f"<td>{num(mm.get('edges'))}</td>",
                *_reference_cells(mm.get("reference") or {}),
            ]
        )
    from friendsim.analysis.reference import compare_to_reference

    for name, mm in (
        ("follow graph", net["follow"]),
        ("interaction graph", net["interaction"]["final"]),
    ):
        rows.append(
            [
                f"<td>{name}</td>",
                f"<td>{num(mm.get('edges'))}</td>",
                *_reference_cells(compare_to_reference(mm)),
            ]
        )
    out = [
        "<p>✓ inside / ✗ outside the min–max range of the eight real friendship networks "
        "(column headers give the range).</p>",
        table(head, rows, raw=True),
    ]
    hom_rows = []
    for t, hh in (ref.get("homophily") or {}).items():
        for a, h in hh.items():
            rng = h.get("range")
            flag = "" if h.get("inside") is None else ("✓" if h["inside"] else "✗")
            hom_rows.append(
                [
                    f"θ={t}",
                    a,
                    num(h.get("value"), 3),
                    "—" if not rng else f"{rng[0]}–{rng[1]}",
                    flag,
                ]
            )
    if hom_rows:
        out.append("<h3>Homophily (same-ratio)</h3>")
        out.append(
            table(["network", "attribute", "same-ratio", "literature range", "inside"], hom_rows)
        )
    table_rows = [
        [r["name"], r["kind"], num(r.get("n")), *(num(r.get(k)) for k in REF_KEYS)]
        for r in ref["table"]
    ]
    out.append("<h3>Side by side</h3>")
    out.append(table(["network", "kind", "n", *REF_KEYS], table_rows))
    return "".join(out)
