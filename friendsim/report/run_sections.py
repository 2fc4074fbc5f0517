"""Sections of a run's report that answer the paper's questions: reward components per window,
the coach (its tips and how often they were followed), one row per agent, and the sections a run
has only when it has the feature (interventions, moderation, surveys, cascades).

Every function takes the run's analysis (:func:`friendsim.analysis.analyze.load_analysis`) and
returns HTML with all run text escaped; figures are returned as PNG bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from friendsim.report import figures
from friendsim.report.common import esc, img, num, table

MAX_TIP_ROWS = 60
"""Tips listed verbatim in the coach section (the counts cover all of them)."""


def component_bands(analysis: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per component (and ``total``): per window, the mean over all agents with its 95 % t band."""
    from friendsim.sweep.aggregate import mean_ci

    comps = [*analysis["rewards"]["components"], "total"]
    per: dict[str, dict[int, list[float]]] = {c: {} for c in comps}
    for r in analysis["rewards"]["per_agent"]:
        for c in comps:
            per[c].setdefault(int(r["window"]), []).append(float(r[c]))
    return {
        c: [{"window": w, **mean_ci(v)} for w, v in sorted(ws.items())] for c, ws in per.items()
    }


def components_section(analysis: Mapping[str, Any]) -> tuple[str, bytes]:
    """Five panels (SOC, INF, PRE, COORD, EMO) plus the total: mean over agents per window with
    a 95 % t-interval band, and the means as a table."""
    bands = component_bands(analysis)
    png = figures.reward_curves(
        {c: {"all agents": pts} for c, pts in bands.items()},
        title="reward components per window, mean over agents (band: 95% t-interval)",
        ylabel="mean score",
    )
    windows = analysis["rewards"]["windows"]
    rows = []
    for c, pts in bands.items():
        by_w = {p["window"]: p for p in pts}
        cells = []
        for w in windows:
            p = by_w.get(w)
            if p is None or p.get("mean") is None:
                cells.append("—")
            elif p.get("lower") is None:
                cells.append(num(p["mean"], 3))
            else:
                cells.append(f"{p['mean']:.3f} [{p['lower']:.3f}, {p['upper']:.3f}]")
        rows.append([c, *cells])
    html = img("components", png, "Reward components per window (SOC, INF, PRE, COORD, EMO, total)")
    html += "<p>Mean [95% CI] over agents per window.</p>"
    html += table(["component", *(f"w{w}" for w in windows)], rows)
    return html, png


def _rate(c: Mapping[str, Any] | None) -> str:
    if not c or not c.get("judged"):
        return "—"
    return f"{c['followed']}/{c['judged']} ({100.0 * c['rate']:.0f}%)"


def coach_section(analysis: Mapping[str, Any]) -> str:
    """The coach's tips: how many, how often followed (overall, by action, by window), and the
    tips themselves (the first :data:`MAX_TIP_ROWS`)."""
    coach = analysis.get("coach") or {}
    tips: Sequence[Mapping[str, Any]] = coach.get("tips") or []
    enabled = (analysis.get("manifest") or {}).get("coach")
    if not tips:
        why = "coaching was off" if enabled in (False, "off", None) else "no tips were issued"
        return f"<p>No coach tips in this run ({esc(why)}).</p>"
    overall = coach.get("overall") or {}
    parts = [
        f"<p>{overall.get('issued', len(tips))} tips from {esc(', '.join(coach.get('coaches') or []))} "
        f'coach; followed in the next window: <strong id="coach-followed">{_rate(overall)}</strong>'
        " of the tips whose next window ran. A tip counts as followed when the agent took its "
        "action in the next window (towards the named user, when the tip names one).</p>"
    ]
    by_action = coach.get("by_action") or {}
    parts.append("<h3>By action</h3>")
    parts.append(
        table(
            ["action", "issued", "followed"],
            [[a, num(c.get("issued")), _rate(c)] for a, c in by_action.items()],
        )
    )
    by_window = coach.get("by_window") or {}
    parts.append("<h3>By window (tips issued after window w, judged in w+1)</h3>")
    parts.append(
        table(
            ["window", "issued", "followed"],
            [[f"w{w}", num(c.get("issued")), _rate(c)] for w, c in by_window.items()],
        )
    )
    parts.append(f"<h3>Tips (first {min(MAX_TIP_ROWS, len(tips))} of {len(tips)})</h3>")
    rows = [
        [
            f"w{t.get('window')}",
            str(t.get("agent")),
            str(t.get("action")),
            "—" if t.get("target") is None else str(t.get("target")),
            str(t.get("text") or ""),
            {True: "yes", False: "no", None: "pending"}[t.get("followed")],
        ]
        for t in tips[:MAX_TIP_ROWS]
    ]
    parts.append(table(["after", "agent", "action", "target", "tip", "followed"], rows))
    return "".join(parts)


def agents_section(analysis: Mapping[str, Any]) -> str:
    """One row per agent: dominant motive, mean of each component and of the total over the
    windows, the last window's total, and the share of its tips it followed."""
    comps = list(analysis["rewards"]["components"])
    sums: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    last: dict[str, tuple[int, float]] = {}
    for r in analysis["rewards"]["per_agent"]:
        a = r["agent"]
        acc = sums.setdefault(a, dict.fromkeys([*comps, "total"], 0.0))
        for c in (*comps, "total"):
            acc[c] += float(r[c])
        counts[a] = counts.get(a, 0) + 1
        if a not in last or int(r["window"]) >= last[a][0]:
            last[a] = (int(r["window"]), float(r["total"]))
    followed = (analysis.get("coach") or {}).get("agents") or {}
    rows = []
    for a, info in sorted(analysis["agents"].items()):
        n = counts.get(a, 0)
        means = [num(sums[a][c] / n, 3) if n else "—" for c in (*comps, "total")]
        rows.append(
            [
                a,
                str(info.get("dominant")),
                *means,
                num(last[a][1], 3) if a in last else "—",
                _rate(followed.get(a)),
            ]
        )
    return "<p>Means over the run's windows.</p>" + table(
        [
            "agent",
            "dominant",
            *(f"mean {c}" for c in comps),
            "mean total",
            "last total",
            "tips followed",
        ],
        rows,
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class OptionalSection:
    """A report section shown only when the analysis holds ``key`` (a feature the run used).

    ``render`` turns ``analysis[key]`` into HTML. The default renders a list of flat records as
    a table: features such as interventions add their analysis key and get a section for free,
    or register a specific renderer here.
    """

    id: str
    heading: str
    key: str
    render: Callable[[Any], str] | None = None

    def html(self, analysis: Mapping[str, Any]) -> str | None:
        data = analysis.get(self.key)
        if not data:
            return None
        return (self.render or records_table)(data)


def records_table(data: Any) -> str:
    """A list of flat records (dicts) as a table; anything else as escaped JSON."""
    if isinstance(data, list) and data and all(isinstance(r, Mapping) for r in data):
        head = sorted({k for r in data for k in r})
        return table(head, [[_cell(r.get(k)) for k in head] for r in data])
    import json

    return f"<pre>{esc(json.dumps(data, indent=1, sort_keys=True, default=str))}</pre>"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v)


def _instrument(name: str, shape: type) -> Callable[[Any], str]:
    """The instrument section renderer ``name`` for data of the analysis's shape (a mapping
    or a list of records); data of another shape gets the generic table."""

    def render(data: Any) -> str:
        from friendsim.report import instrument_sections

        if isinstance(data, list):
            ok = shape is list and all(isinstance(r, Mapping) and "window" in r for r in data)
        else:
            ok = shape is not list and isinstance(data, shape)
        if not ok:
            return records_table(data)
        return str(getattr(instrument_sections, name)(data))

    return render


OPTIONAL_SECTIONS: tuple[OptionalSection, ...] = (
    OptionalSection(
        id="interventions",
        heading="Interventions",
        key="interventions",
        render=_instrument("interventions_html", list),
    ),
    OptionalSection(
        id="cascades",
        heading="Cascades by truth label",
        key="cascades",
        render=_instrument("cascades_html", Mapping),
    ),
    OptionalSection(
        id="moderation",
        heading="Moderation actions over time",
        key="moderation",
        render=_instrument("moderation_html", list),
    ),
    OptionalSection(
        id="surveys",
        heading="Survey trends",
        key="surveys",
        render=_instrument("surveys_html", Mapping),
    ),
)
"""Sections for features a run may have; none of them is in the analysis unless the run used it."""


def optional_sections(analysis: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(id, heading, html)`` of every optional section the run has, in registry order."""
    out = []
    for s in OPTIONAL_SECTIONS:
        html = s.html(analysis)
        if html is not None:
            out.append((s.id, s.heading, html))
    return out
