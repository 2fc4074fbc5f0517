"""Shared pieces of the report pages: HTML helpers (escaping, tables, embedded images, the page
shell with its Content-Security-Policy) and the choices every page makes (threshold, colouring
attribute, tie edges)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from friendsim.rundir.layout import REPORT

REPORT_FILE = REPORT
FIGURES_DIR = "figures"
SECTION_IDS = ("summary", "rewards", "network", "reference", "degrees", "usage")
"""Sections of every report (a sweep's page has these, then ``aggregate``)."""
RUN_SECTION_IDS = (
    "summary",
    "rewards",
    "components",
    "coach",
    "agents",
    "network",
    "reference",
    "degrees",
    "usage",
)
"""Sections of a run's report (optional sections such as ``interventions`` go before ``usage``
when the run has them)."""
REF_KEYS = ("density", "clustering", "lcc", "path_ln", "modularity")
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


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return esc(x)


def table(head: Sequence[str], rows: Sequence[Sequence[str]], *, raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they are trusted ``<td>`` bodies or
    whole ``<td ...>`` elements built here)."""
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>")
        for c in r:
            if raw and c.startswith("<td"):
                out.append(c)
            else:
                out.append(f"<td>{c if raw else esc(c)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def img(name: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img id="fig-{esc(name)}" alt="{esc(caption)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{esc(caption)}</figcaption></figure>'
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
            known = ", ".join(sorted({*names, "dominant"}))
            raise ReportError(f"no persona attribute {color_by!r}; known: {known}")
        return color_by
    for pref in _PREFERRED_ATTRS:
        if pref in names:
            return pref
    return names[0] if names else "dominant"


def groups_of(agents: Mapping[str, Mapping[str, Any]], attribute: str | None) -> dict[str, str]:
    """Agent -> its group for ``attribute`` (agents without that attribute are left out)."""
    out = {}
    for a, info in agents.items():
        attrs = info.get("attributes") or {}
        if attribute == "dominant":
            out[a] = str(attrs.get("dominant", info.get("dominant")))
        elif attribute is not None and attribute in attrs:
            out[a] = str(attrs[attribute])
    return out


def tie_edges(analysis: Mapping[str, Any], theta: str) -> list[tuple[str, str, float]]:
    """The final tie network's edges ``(u, v, symmetrised strength)`` at threshold ``theta``."""
    from friendsim.analysis.ties import tie_graph

    strengths = {
        (s["source"], s["target"]): s["strength"] for s in analysis["network"]["ties"]["strengths"]
    }
    g = tie_graph(strengths, theta=float(theta), nodes=analysis["agents"])
    return [(u, v, d["strength"]) for u, v, d in g.edges(data=True)]


def page(title: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole HTML document: title, navigation, one <section id=...> per entry."""
    nav = " ".join(f'<a href="#{sid}">{esc(h)}</a>' for sid, h, _ in sections)
    body = "".join(
        f'<section id="{sid}"><h2>{esc(h)}</h2>{content}</section>' for sid, h, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1><nav>{nav}</nav>{body}</body></html>\n"
    )
