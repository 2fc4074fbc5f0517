"""End to end with the real runtime: ``python -m friendsim run`` (baseline policy, no model),
then the analysis and the HTML report of that run directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_report_html import check_page

from friendsim.commands.analyze import analyze_path
from friendsim.report.render import RUN_SECTION_IDS, write_report

CONFIG = """
[experiment]
name = "e2e"
seed = 11
rounds = 3
n_actions = 2
[agents]
count = 8
policy = "baseline"
[coach]
enabled = true
[ties]
thresholds = [0.05, 0.1]
"""


def test_real_run_analysis_and_report(tmp_path: Path) -> None:
    cfg = tmp_path / "e2e.toml"
    cfg.write_text(CONFIG)
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "friendsim", "run", str(cfg), "--out", str(run), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    a = analyze_path(run)
    assert a["manifest"]["status"] == manifest["status"] == "completed"
    assert a["rewards"]["windows"] == [1, 2, 3]
    assert len(a["rewards"]["per_agent"]) == 8 * 3
    assert set(a["agents"]) == set(manifest["lambdas"])
    for agent, info in a["agents"].items():
        assert info["dominant"] == manifest["dominant"][agent]
    assert a["network"]["thetas"] == ["0.05", "0.1"]
    assert a["usage"]["total"] == manifest["llm_usage"]["total"]
    page = write_report(run)
    scan = check_page(page, RUN_SECTION_IDS)
    assert {img["id"] for img in scan.images} == {
        "fig-rewards",
        "fig-components",
        "fig-network",
        "fig-degrees",
    }


def test_a_run_that_stopped_before_its_first_window_ended_gets_a_report(tmp_path: Path) -> None:
    """A run whose provider was down from its first request stops ``interrupted`` with no
    complete window: exactly when a report is wanted. The report used to fail with a KeyError
    (no final tie network); now it is written, says where the run stopped, and charts nothing
    the log does not hold (no ties)."""
    import asyncio
    import re

    import pytest

    from friendsim.llm.errors import ServerError
    from friendsim.llm.scripted import ScriptedLLM
    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.config import parse_config
    from friendsim.runtime.status import RunInterrupted

    cfg = parse_config(
        {
            "experiment": {"name": "down", "seed": 1, "rounds": 2, "n_actions": 1},
            "agents": {"count": 4, "policy": "llm"},
            "llm": {"provider": "scripted", "retries": 0},
            "coach": {"enabled": False},
        }
    )
    run = tmp_path / "run"

    def down(spec: str) -> ScriptedLLM:
        return ScriptedLLM(lambda r: ServerError("stub: 503 model down", status=503))

    with pytest.raises(RunInterrupted):
        asyncio.run(run_experiment(cfg, out_dir=run, llm_factory=down))
    assert json.loads((run / "manifest.json").read_text())["windows"] == 0

    proc = subprocess.run(
        [sys.executable, "-m", "friendsim", "report", str(run)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    scan = check_page(run / "report.html", RUN_SECTION_IDS)
    assert "fig-network" in {img["id"] for img in scan.images}
    text = (run / "report.html").read_text(encoding="utf-8")
    assert "interrupted run (provider_down): it stopped before its first window completed" in text
    assert re.search(r"Final tie network at θ=0\.05 \(0 edges\)", text)
