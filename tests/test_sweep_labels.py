"""Sweep cells named by labels a reader can tell apart, wherever a sweep is shown.

A cell's directory name is a slug of its settings
(``moderation.params-_false_action_none_toxic_action_none``); tables, the report and the live
view named the cells by it, so in 80 columns every header of examples/misinformation_sweep.toml
read ``moderation.param…``. Now each cell has a label (``[sweep] labels``, else made from the
values), recorded in ``sweep.json`` beside the name; a ``sweep.json`` written before labels gets
the automatic ones, and such a sweep still resumes.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from serve_support import background
from test_sweep_aggregate import build_sweep_dir

from friendsim.cli import main
from friendsim.commands.analyze import print_sweep
from friendsim.sweep.aggregate import AGGREGATE_TABLE, aggregate_sweep, headline_keys

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LABELS_LINE = 'labels = { "moderation.params" = ["none", "label", "remove"] }'
REGIMES = ["none", "label", "remove"]


def _small_sweep(tmp_path: Path, *, labels: bool) -> Path:
    """examples/misinformation_sweep.toml with one replication, with or without its labels."""
    text = (EXAMPLES / "misinformation_sweep.toml").read_text(encoding="utf-8")
    for old, new in (("replications = 3", "replications = 1"), ("count = 12", "count = 8")):
        assert old in text, old
        text = text.replace(old, new)
    assert LABELS_LINE in text
    if not labels:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("labels ="))
    shutil.copy(EXAMPLES / "misinformation_items.jsonl", tmp_path / "misinformation_items.jsonl")
    path = tmp_path / "ms.toml"
    path.write_text(text + "\n", encoding="utf-8")
    return path


def _strip_labels(sweep_json: Path) -> None:
    """Make ``sweep.json`` as a sweep recorded before labels wrote it."""
    body = json.loads(sweep_json.read_text(encoding="utf-8"))
    body["spec"].pop("labels")
    for cell in body["spec"]["cells"]:
        cell.pop("label")
    sweep_json.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_labels_end_to_end_and_an_old_sweep_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "sweep"
    argv = ["sweep", str(_small_sweep(tmp_path, labels=False)), "--out", str(out), "--jobs", "1"]
    assert main([*argv, "--json"]) == 0
    capsys.readouterr()
    names = [c["name"] for c in json.loads((out / "sweep.json").read_text())["spec"]["cells"]]
    assert names[0] == "moderation.params-_false_action_none_toxic_action_none"

    # recorded before labels: the automatic labels, from the recorded (key-sorted) grid
    _strip_labels(out / "sweep.json")
    agg = _json(["analyze", str(out), "--json"], capsys)
    assert [c["label"] for c in agg["cells"]] == [
        "false_action=none, toxic_action=none",
        "false_action=label, keywords=[idiot, liar, scam], toxicity=0.8",
        "false_action=remove, keywords=[idiot, liar, scam], toxicity=0.8",
    ]
    assert [c["name"] for c in agg["cells"]] == names

    # the same sweep given labels resumes: nothing runs again, and the labels are recorded
    manifests = {p: p.stat().st_mtime_ns for p in out.glob("*/rep0/manifest.json")}
    assert len(manifests) == 3
    argv[1] = str(_small_sweep(tmp_path, labels=True))
    agg = _json([*argv, "--json"], capsys)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/rep*/manifest.json")} == manifests
    assert [c["label"] for c in agg["cells"]] == REGIMES
    assert [c["name"] for c in agg["cells"]] == names  # directories unchanged
    cells = json.loads((out / "sweep.json").read_text())["spec"]["cells"]
    assert [(c["name"], c["label"]) for c in cells] == list(zip(names, REGIMES, strict=True))

    agg = _json(["analyze", str(out), "--json"], capsys)
    assert [c["label"] for c in agg["cells"]] == REGIMES
    assert [(d["label"], d["baseline_label"]) for d in agg["contrasts"]] == [
        ("label", "none"),
        ("remove", "none"),
    ]
    assert {"name", "overrides", "metrics", "completed", "runs"} <= set(agg["cells"][0])

    md = (out / AGGREGATE_TABLE).read_text(encoding="utf-8")
    assert "| metric | none (n=1) | label (n=1) | remove (n=1) |" in md
    assert "paired difference vs none" in md and "| label (pairs=1) | remove (pairs=1) |" in md
    assert f"- none: `{names[0]}/`" in md

    monkeypatch.setenv("COLUMNS", "200")  # wide enough: the labels head the columns
    assert main(["analyze", str(out)]) == 0
    wide = capsys.readouterr().out
    head = next(line for line in wide.splitlines() if "none" in line and "label" in line)
    assert re.search(r"\bnone\b.*\blabel\b.*\bremove\b", head), head
    assert "paired difference vs none" in wide and names[0] not in wide

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["analyze", str(out)]) == 0
    narrow = capsys.readouterr().out
    # short labels stay the headers at 80 columns (the values wrap), with no legend
    lines = narrow.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    head = next(line for line in lines if line.startswith("┃") and "none" in line)
    assert re.search(r"┃\s*none\s*┃\s*label\s*┃\s*remove\s*┃", head), head
    assert "A  none — " not in narrow and "…" not in narrow
    for key in headline_keys(agg):
        assert re.search(rf"│ {re.escape(key)}\s+│", narrow), key

    assert main(["report", str(out)]) == 0
    capsys.readouterr()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<th>none (n=1)</th><th>label (n=1)</th><th>remove (n=1)</th>" in html
    assert f"<tr><td>none</td><td>{names[0]}</td>" in html
    assert "Paired difference vs none" in html
    assert "<th>label (pairs=1)</th><th>remove (pairs=1)</th>" in html

    with background("serve", str(out), "--port", "0") as (_, url):
        runs = httpx.get(f"{url}api/sweep", timeout=60).json()["runs"]
    assert [(r["cell"], r["label"]) for r in runs] == list(zip(names, REGIMES, strict=True))


def _check_narrow(text: str, agg: Any, *, width: int) -> None:
    """Every line within ``width``; each cell a short id with a legend line giving its label
    (labels too wide for their column at its narrowest);
    every headline metric whole; no cell of the tables cut (no ellipsis)."""
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    ids = []
    for i, cell in enumerate(agg["cells"]):
        ident = chr(ord("A") + i) if i < 26 else None
        assert ident is not None
        legend = f"{ident}  {cell['label']} — "
        assert text.replace("\n", " ").count(legend) == 1, legend
        ids.append(ident)
    heads = [line for line in lines if line.startswith("┃")]
    for ident in ids:
        assert any(re.search(rf"┃\s*{ident}\s*┃", h) for h in heads), ident
    for key in headline_keys(agg):
        assert re.search(rf"│ {re.escape(key)}\s+│", text), key
    assert "…" not in text


def test_eighty_columns_tell_every_cell_apart_and_keep_metric_names_whole(
    tmp_path: Path,
) -> None:
    """Nine cells whose labels differ only at their end: at 80 columns the table is headed by
    ids with a legend, split over tables that fit, every metric name whole."""
    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2)
    agg = aggregate_sweep(sd, write=False)
    first = agg["cells"][0]
    agg["cells"] = [
        {**first, "name": f"moderation.params-_slug_{i}", "label": f"moderation.params={i}" * 3}
        for i in range(9)
    ]
    agg["contrasts"] = []
    buf = io.StringIO()
    print_sweep(agg, console=Console(width=80, file=buf))
    _check_narrow(buf.getvalue(), agg, width=80)
    assert "moderation.params-_slug_" not in buf.getvalue()


def test_an_old_sweep_json_is_labelled_from_its_grid(tmp_path: Path) -> None:
    """A ``sweep.json`` without labels (every sweep recorded before them) aggregates, its cells
    labelled from the grid; a recorded label that is not a string is named as the broken key."""
    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2)
    body = json.loads((sd / "sweep.json").read_text())
    assert "label" not in body["spec"]["cells"][0]
    agg = aggregate_sweep(sd)
    assert [c["label"] for c in agg["cells"]] == ["coach.enabled=true", "coach.enabled=false"]
    assert "| coach.enabled=true (n=2) | coach.enabled=false (n=2) |" in (
        sd / AGGREGATE_TABLE
    ).read_text(encoding="utf-8")

    from friendsim.sweep.aggregate import SweepReadError

    body["spec"]["cells"][1]["label"] = 3
    (sd / "sweep.json").write_text(json.dumps(body))
    with pytest.raises(SweepReadError, match=r"spec\.cells\[1\]\.label"):
        aggregate_sweep(sd, write=False)
