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
