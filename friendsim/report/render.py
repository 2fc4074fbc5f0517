"""One self-contained HTML report of a run or a sweep: ``report.html`` plus its PNGs.

The page takes its numbers from the same functions as ``friendsim analyze --json``
(:func:`friendsim.analysis.analyze.load_analysis` for a run,
:func:`friendsim.sweep.aggregate.load_or_aggregate` for a sweep), so the two never disagree.
Sections (HTML ids): ``summary``, ``rewards`` (reward curves per dominant policy, mean and 95 %
band; for a sweep one line per grid cell, e.g. coach on vs off), ``network`` (the final tie
network at θ drawn with a seeded spring layout, coloured by a persona group attribute),
``reference`` (metrics against the ranges of the eight real friendship networks, inside/outside
flags), ``degrees`` (log-log degree distributions), ``usage`` (tokens and cost), and for sweeps
``aggregate`` (headline metrics, mean [95 % CI] per cell).

Self-contained: images are embedded as base64 ``data:`` URIs (and also written beside the page as
files), styles are inline, there is no script, and a Content-Security-Policy forbids loading
anything else. All text from the run (names, models, attributes) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from friendsim.report import figures

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
SECTION_IDS = ("summary", "rewards", "network", "reference", "degrees", "usage")
_REF_KEYS = ("density", "clustering", "lcc", "path_ln", "modularity")
_PREFERRED_ATTRS = ("stance_group", "dominant")
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;
color:#222;line-height:1.4;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{background:#f3f3f3}
td.in{background:#e3f5e3}td.out{background:#fbe4e4}
figure{margin:.8rem 0}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.8rem;color:#555}.note{color:#7a5a00;font-size:.85rem}
nav a{margin-right:.8rem}
"""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


class ReportError(ValueError):
    """The path is neither a run directory nor a sweep directory."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Report:
    """A rendered report: the page and its figures (name -> PNG bytes)."""

    title: str
    html: str
    figures: Mapping[str, bytes] = field(default_factory=dict)


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return _e(x)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], *, raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they are trusted ``<td>`` bodies or
    whole ``<td ...>`` elements built here)."""
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>")
        for c in r:
            if raw and c.startswith("<td"):
                out.append(c)
            else:
                out.append(f"<td>{c if raw else _e(c)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _img(name: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img id="fig-{_e(name)}" alt="{_e(caption)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{_e(caption)}</figcaption></figure>'
    )


def pick_theta(thetas: Sequence[str], theta: str | float | None) -> str:
    """The threshold key to show: ``theta`` if given (must be one of the run's), else 0.05 if
    present, else the middle one."""
    if not thetas:
        raise ReportError("the analysis has no tie thresholds")
    if theta is not None:
        key = f"{float(theta):g}"
        if key not in thetas:
            raise ReportError(f"theta {key} is not one of the run's thresholds {list(thetas)}")
        return key
    return "0.05" if "0.05" in thetas else thetas[len(thetas) // 2]


def pick_attribute(agents: Mapping[str, Mapping[str, Any]], color_by: str | None) -> str | None:
    """The persona attribute that colours the network (``color_by``, else a preferred one)."""
    names = sorted({k for a in agents.values() for k in (a.get("attributes") or {})})
    if color_by is not None:
        if color_by != "dominant" and color_by not in names:
            raise ReportError(f"no persona attribute {color_by!r}; known: {[*names, 'dominant']}")
        return color_by
    for pref in _PREFERRED_ATTRS:
        if pref in names:
            return pref
    return names[0] if names else "dominant"


def _groups(agents: Mapping[str, Mapping[str, Any]], attribute: str | None) -> dict[str, str]:
    out = {}
    for a, info in agents.items():
        attrs = info.get("attributes") or {}
        if attribute == "dominant":
            out[a] = str(attrs.get("dominant", info.get("dominant")))
        elif attribute is not None and attribute in attrs:
            out[a] = str(attrs[attribute])
    return out


def _tie_edges(analysis: Mapping[str, Any], theta: str) -> list[tuple[str, str, float]]:
    from friendsim.analysis.ties import tie_graph

    strengths = {
        (s["source"], s["target"]): s["strength"] for s in analysis["network"]["ties"]["strengths"]
    }
    g = tie_graph(strengths, theta=float(theta), nodes=analysis["agents"])
    return [(u, v, d["strength"]) for u, v, d in g.edges(data=True)]


def _run_bands(analysis: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per policy group (``all agents`` + each dominant policy): per window, the mean total
    reward over the group's agents with its 95 % t band."""
    from friendsim.sweep.aggregate import mean_ci

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
    for k in _REF_KEYS:
        r = ref.get(k) or {}
        inside = r.get("inside")
        cls = "" if inside is None else (' class="in"' if inside else ' class="out"')
        flag = "" if inside is None else (" ✓" if inside else " ✗")
        cells.append(f"<td{cls}>{_num(r.get('value'))}{flag}</td>")
    return cells


def _ranges_head(analysis_ref: Mapping[str, Any]) -> list[str]:
    rng = analysis_ref["ranges"]
    return [f"{k} [{rng[k]['min']:.3g}, {rng[k]['max']:.3g}]" for k in _REF_KEYS]


def _page(title: str, sections: Sequence[tuple[str, str, str]]) -> str:
    nav = " ".join(f'<a href="#{sid}">{_e(h)}</a>' for sid, h, _ in sections)
    body = "".join(
        f'<section id="{sid}"><h2>{_e(h)}</h2>{content}</section>' for sid, h, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1><nav>{nav}</nav>{body}</body></html>\n"
    )


def _usage_section(usage: Mapping[str, Any]) -> str:
    total = usage.get("total") or {}
    keys = ("calls", "cache_hits", "errors", "input_tokens", "output_tokens", "cost_usd")
    parts = [_table(["", *keys], [["total", *(_num(total.get(k), 6) for k in keys)]])]
    rows = [
        [
            f"{r.get('provider')}:{r.get('model')} / {r.get('label')}",
            *(_num(r.get(k), 6) for k in keys),
        ]
        for r in usage.get("by_key") or []
    ]
    if rows:
        parts.append(_table(["provider:model / label", *keys], rows))
    else:
        parts.append("<p>No LLM calls were made (baseline policy or fully cached run).</p>")
    if usage.get("unpriced_models"):
        parts.append(
            f'<p class="note">No price known for: {_e(", ".join(usage["unpriced_models"]))} '
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
    figs: dict[str, bytes] = {}

    summary_rows = [
        [
            k,
            _num(m.get(k))
            if not isinstance(m.get(k), dict)
            else _e(", ".join(f"{a}={b}" for a, b in m[k].items())),
        ]
        for k in (
            "name",
            "status",
            "mode",
            "policy",
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
    summary = _table(["field", "value"], summary_rows, raw=True)
    summary += "".join(f'<p class="note">{_e(n)}</p>' for n in analysis.get("notes", []))

    bands = _run_bands(analysis)
    figs["rewards"] = figures.reward_curves(
        {g: {"this run": pts} for g, pts in bands.items()},
        title="mean total reward per window by dominant policy (band: 95% t-interval over agents)",
    )
    windows = analysis["rewards"]["windows"]
    reward_rows = [
        [g, *(_num(next((p["mean"] for p in pts if p["window"] == w), None), 3) for w in windows)]
        for g, pts in bands.items()
    ]
    rewards = _img("rewards", figs["rewards"], "Reward curves per dominant policy") + _table(
        ["policy", *(f"w{w}" for w in windows)], reward_rows
    )

    groups = _groups(analysis["agents"], attr)
    figs["network"] = figures.network_drawing(
        sorted(analysis["agents"]),
        _tie_edges(analysis, th),
        groups=groups,
        attribute=attr or "",
        title=f"final tie network, θ={th}, coloured by {attr}",
        seed=int(m.get("seed") or 0),
    )
    fm = net["ties"]["final"][th]
    network = _img(
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
    figs["degrees"] = figures.degree_distributions(dists, title="degree distributions (log-log)")
    alpha_rows = [
        [
            f"ties θ={t}",
            _num((mm.get("power_law") or {}).get("alpha"), 3),
            _num(mm.get("median_degree"), 1),
        ]
        for t, mm in net["ties"]["final"].items()
    ]
    degrees = _img(
        "degrees", figs["degrees"], "Degree distributions, log-log (isolated nodes noted)"
    ) + _table(["network", "power-law γ", "median degree"], alpha_rows)

    sections = [
        ("summary", "Summary", summary),
        ("rewards", "Rewards per policy", rewards),
        ("network", "Tie network", network),
        ("reference", "Against real friendship networks", reference),
        ("degrees", "Degree distributions", degrees),
        ("usage", "Token usage and cost", _usage_section(analysis["usage"])),
    ]
    return Report(title=title, html=_page(title, sections), figures=figs)


def _reference_html(analysis: Mapping[str, Any]) -> str:
    ref = analysis["reference"]
    net = analysis["network"]
    head = ["network", "edges", *_ranges_head(ref)]
    rows = []
    for t, mm in net["ties"]["final"].items():
        rows.append(
            [
                f"<td>ties θ={_e(t)}</td>",
                f"<td>{_num(mm.get('edges'))}</td>",
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
                f"<td>{_num(mm.get('edges'))}</td>",
                *_reference_cells(compare_to_reference(mm)),
            ]
        )
    out = [
        "<p>✓ inside / ✗ outside the min–max range of the eight real friendship networks "
        "(column headers give the range).</p>",
        _table(head, rows, raw=True),
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
                    _num(h.get("value"), 3),
                    "—" if not rng else f"{rng[0]}–{rng[1]}",
                    flag,
                ]
            )
    if hom_rows:
        out.append("<h3>Homophily (same-ratio)</h3>")
        out.append(
            _table(["network", "attribute", "same-ratio", "literature range", "inside"], hom_rows)
        )
    table_rows = [
        [r["name"], r["kind"], _num(r.get("n")), *(_num(r.get(k)) for k in _REF_KEYS)]
        for r in ref["table"]
    ]
    out.append("<h3>Side by side</h3>")
    out.append(_table(["network", "kind", "n", *_REF_KEYS], table_rows))
    return "".join(out)


def sweep_report(
    agg: Mapping[str, Any],
    *,
    sweep_dir: Path,
    theta: str | float | None = None,
    color_by: str | None = None,
) -> Report:
    """The report of a sweep from its aggregate (and each cell's first run for the drawings)."""
    from friendsim.analysis.analyze import load_analysis
    from friendsim.sweep.aggregate import format_stat, headline_keys

    title = f"friendsim sweep report: {agg.get('name')}"
    cells = agg["cells"]
    figs: dict[str, bytes] = {}
    first = {c["name"]: load_analysis(sweep_dir / c["run_dirs"][0]) for c in cells if c["run_dirs"]}
    thetas = next((a["network"]["thetas"] for a in first.values()), [])
    th = pick_theta(thetas, theta) if thetas else None

    grid = agg.get("grid") or {}
    summary = _table(
        ["field", "value"],
        [
            ["replications", str(agg["replications"])],
            ["grid", "; ".join(f"{k} = {json.dumps(v)}" for k, v in grid.items()) or "(none)"],
            ["seeds", ", ".join(map(str, agg.get("seeds", [])))],
            ["status", str(agg.get("status"))],
            ["wall seconds", _num(agg.get("wall_seconds"), 1)],
            ["interval", str(agg.get("interval"))],
        ],
    )
    summary += _table(
        ["cell", "settings", "completed / runs"],
        [
            [
                c["name"],
                ", ".join(f"{k}={json.dumps(v)}" for k, v in c["overrides"].items()),
                f"{c['completed']} / {c['runs']}",
            ]
            for c in cells
        ],
    )
    for c in cells:
        for f in c["failed"]:
            summary += f'<p class="note">failed: {_e(f["dir"])}: {_e(f["status"])} {_e(f.get("error"))}</p>'
    if any(c["completed"] == 1 for c in cells):
        summary += (
            '<p class="note">Cells with one completed run have no confidence interval (n=1).</p>'
        )

    panels: dict[str, dict[str, Any]] = {}
    for c in cells:
        for g, pts in c["curves"].items():
            panels.setdefault("all agents" if g == "all" else g, {})[c["name"]] = pts
    panels = dict(sorted(panels.items(), key=lambda kv: (kv[0] != "all agents", kv[0])))
    vs = " (coach on vs off)" if "coach.enabled" in grid else ""
    figs["rewards"] = figures.reward_curves(
        panels, title=f"mean total reward per window{vs}; band: 95% t-interval over replications"
    )
    rewards = _img(
        "rewards", figs["rewards"], f"Reward curves per dominant policy, one line per cell{vs}"
    )

    network = ""
    if th is not None:
        for i, (name, a) in enumerate(first.items()):
            attr = pick_attribute(a["agents"], color_by)
            key = f"network-{i}"
            figs[key] = figures.network_drawing(
                sorted(a["agents"]),
                _tie_edges(a, th),
                groups=_groups(a["agents"], attr),
                attribute=attr or "",
                title=f"{name}, rep 0: tie network θ={th}, coloured by {attr}",
                seed=int(a["manifest"].get("seed") or 0),
            )
            network += _img(key, figs[key], f"{name} (first replication), θ={th}, colour = {attr}")

    reference = "<p>No tie thresholds (no completed run).</p>"
    degrees = reference
    if th is not None:
        from friendsim.analysis.reference import load_reference

        ref = load_reference()
        head = [
            "cell",
            *(f"{k} [{ref.ranges[k][0]:.3g}, {ref.ranges[k][1]:.3g}]" for k in _REF_KEYS),
        ]
        rows = []
        for c in cells:
            row = [f"<td>{_e(c['name'])}</td>"]
            for k in _REF_KEYS:
                s = c["metrics"].get(f"ties.{th}.{k}")
                mean = None if not s else s.get("mean")
                inside = None if mean is None else ref.ranges[k][0] <= mean <= ref.ranges[k][1]
                cls = "" if inside is None else (' class="in"' if inside else ' class="out"')
                flag = "" if inside is None else (" ✓" if inside else " ✗")
                row.append(f"<td{cls}>{_e(format_stat(s))}{flag}</td>")
            rows.append(row)
        reference = (
            f"<p>Final tie networks at θ={_e(th)}: mean [95% CI] over replications; ✓/✗: the mean is "
            "inside/outside the range of the eight real friendship networks.</p>"
            + _table(head, rows, raw=True)
        )
        dists: dict[str, dict[str, int]] = {}
        for c in cells:
            pooled: dict[str, int] = {}
            for d in c["run_dirs"]:
                mm = load_analysis(sweep_dir / d)["network"]["ties"]["final"][th]
                for k, v in (mm.get("degree_distribution") or {}).items():
                    pooled[k] = pooled.get(k, 0) + int(v)
            dists[c["name"]] = pooled
        figs["degrees"] = figures.degree_distributions(
            dists, title=f"tie-network degree distributions, θ={th}, pooled over replications"
        )
        degrees = _img("degrees", figs["degrees"], "Degree distributions per cell (log-log)")

    ukeys = (
        "usage.calls",
        "usage.input_tokens",
        "usage.output_tokens",
        "usage.cost_usd",
        "run.wall_seconds",
    )
    usage = _table(
        ["cell", *ukeys, "total cost (all runs)"],
        [
            [
                c["name"],
                *(format_stat(c["metrics"].get(k)) for k in ukeys),
                _num(_total_cost(c), 6),
            ]
            for c in cells
        ],
    )
    agg_rows = [[k, *(format_stat(c["metrics"].get(k)) for c in cells)] for k in headline_keys(agg)]
    aggregate = (
        _table(["metric", *(f"{c['name']} (n={c['completed']})" for c in cells)], agg_rows)
        + "<p>Every metric (per window, per policy, per θ) is in <code>aggregate.json</code>.</p>"
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
    return Report(title=title, html=_page(title, sections), figures=figs)


def _total_cost(cell: Mapping[str, Any]) -> float | None:
    s = cell["metrics"].get("usage.cost_usd") or {}
    return None if s.get("mean") is None else float(s["mean"]) * int(s["n"])


def build_report(
    path: str | Path, *, theta: str | float | None = None, color_by: str | None = None
) -> Report:
    """The report of a run directory or a sweep directory (``sweep.json``)."""
    from friendsim.analysis.analyze import EVENTS_DB, load_analysis
    from friendsim.sweep.aggregate import load_or_aggregate
    from friendsim.sweep.runner import SWEEP_FILE

    p = Path(path)
    if (p / SWEEP_FILE).is_file():
        return sweep_report(load_or_aggregate(p), sweep_dir=p, theta=theta, color_by=color_by)
    if (p / EVENTS_DB).is_file():
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
