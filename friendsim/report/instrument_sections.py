"""Report sections of the research instruments: cascades by truth label, moderation actions
over time, survey trends (and the interventions applied). Each renders one analysis key
(:func:`friendsim.analysis.analyze.instrument_sections`); registered in
:data:`friendsim.report.run_sections.OPTIONAL_SECTIONS`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from friendsim.report import figures
from friendsim.report.common import esc, img, num, table


def interventions_html(rows: Sequence[Mapping[str, Any]]) -> str:
    body = [
        [
            num(r.get("window")),
            num(r.get("t"), 0),
            str(r.get("kind", "")),
            str(r.get("name", "")),
            num(r.get("injected")),
            num(r.get("suspended")),
            num(r.get("joined")),
            num(r.get("changed")),
        ]
        for r in rows
    ]
    return "<p>Scheduled interventions, each applied at its window (or virtual time).</p>" + table(
        [
            "window",
            "virtual time (s)",
            "kind",
            "name",
            "items injected",
            "agents suspended",
            "agents added",
            "personas changed",
        ],
        body,
    )


def cascades_html(data: Mapping[str, Any]) -> str:
    def row(label: str, g: Mapping[str, Any]) -> list[str]:
        return [
            label,
            num(g.get("items")),
            num(g.get("mean_size"), 2),
            num(g.get("max_size")),
            num(g.get("mean_depth"), 2),
            num(g.get("mean_max_breadth"), 2),
            num(g.get("mean_virality"), 3),
            num(g.get("mean_exposed"), 1),
            num(g.get("mean_reach"), 1),
        ]

    head = [
        "items",
        "count",
        "mean size",
        "max size",
        "mean depth",
        "mean max breadth",
        "structural virality",
        "agents exposed",
        "agents reached",
    ]
    rows = [row(f"injected, {g['truth']}", g) for g in data.get("by_truth") or []]
    rows.append(row("all items", data.get("all") or {}))
    out = [
        "<p>Repost and reply cascades of every top-level item. Exposure counts the agents "
        "served the item (or, for reach, any item of its cascade), not only those who engaged.</p>",
        table(head, rows),
    ]
    injected = data.get("injected") or []
    if injected:
        out.append("<h3>Injected items</h3>")
        out.append(
            table(
                [
                    "item",
                    "truth",
                    "source",
                    "size",
                    "depth",
                    "max breadth",
                    "virality",
                    "users",
                    "exposed",
                    "reach",
                ],
                [
                    [
                        str(r["item"]),
                        str(r["truth"]),
                        str(r.get("source", "")),
                        num(r["size"]),
                        num(r["depth"]),
                        num(r["max_breadth"]),
                        num(r["virality"], 3),
                        num(r["users"]),
                        num(r["exposed"]),
                        num(r["reach"]),
                    ]
                    for r in injected
                ],
            )
        )
    return "".join(out)


def moderation_html(rows: Sequence[Mapping[str, Any]]) -> str:
    actions = sorted({str(r["action"]) for r in rows})
    windows = list(range(1, max(int(r["window"]) for r in rows) + 1))  # quiet windows count 0
    series: dict[str, list[dict[str, Any]]] = {}
    for a in actions:
        counts = dict.fromkeys(windows, 0)
        for r in rows:
            if r["action"] == a:
                counts[int(r["window"])] += int(r["count"])
        series[a] = [{"window": w, "mean": float(counts.get(w, 0))} for w in windows]
    peak = max((p["mean"] for s in series.values() for p in s), default=1.0)
    png = figures.reward_curves(
        {"moderation actions": series},
        title="Moderation actions per window",
        ylabel="decisions",
        ymax=max(1.0, peak * 1.1),
    )
    return img("moderation", png, "Moderation decisions per window, one line per action") + table(
        ["window", "moderator", "action", "decisions"],
        [[num(r["window"]), str(r["moderator"]), str(r["action"]), num(r["count"])] for r in rows],
    )


def surveys_html(data: Mapping[str, Any]) -> str:
    belief = data.get("belief") or []
    panels: dict[str, dict[str, list[dict[str, Any]]]] = {"belief in injected items (1-7)": {}}
    for r in belief:
        panels["belief in injected items (1-7)"].setdefault(f"truth: {r['truth']}", []).append(
            {"window": r["window"], "mean": r["mean_belief"]}
        )
    panels["stance (1-7)"] = {
        "mean stance": [
            {"window": r["window"], "mean": r["mean"]} for r in data.get("stance") or []
        ]
    }
    png = figures.reward_curves(panels, title="Survey trends", ylabel="answer", ymin=1.0, ymax=7.0)
    out = [
        img("surveys", png, "Survey answers per surveyed window: belief by truth label, stance"),
        f"<p>{num(data.get('respondents'))} agents answered {num(data.get('answers'))} surveys. "
        "Polarization index: variance of the stance answers over 9, the largest variance on a "
        "1–7 scale (0: consensus, 1: half at each end).</p>",
        table(
            ["window", "respondents", "mean stance", "sd", "polarization"],
            [
                [
                    num(r["window"]),
                    num(r["respondents"]),
                    num(r["mean"], 2),
                    num(r["sd"], 2),
                    num(r["polarization"], 3),
                ]
                for r in data.get("stance") or []
            ],
        ),
    ]
    if belief:
        out.append("<h3>Belief in injected items, by truth label</h3>")
        out.append(
            table(
                ["window", "truth", "answers", "mean belief"],
                [
                    [num(r["window"]), esc(r["truth"]), num(r["answers"]), num(r["mean_belief"], 2)]
                    for r in belief
                ],
            )
        )
    trust = data.get("trust") or []
    if trust:
        out.append("<h3>Trust in sources</h3>")
        out.append(
            table(
                ["window", "source", "answers", "mean trust"],
                [
                    [num(r["window"]), str(r["source"]), num(r["answers"]), num(r["mean_trust"], 2)]
                    for r in trust
                ],
            )
        )
    return "".join(out)
