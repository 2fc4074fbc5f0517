"""A sweep's ``spent_usd`` counts every attempt at a replication whose accounting reached disk,
each once. A replication whose process was killed is set aside as ``rep<k>.stale-<n>`` and run
again: what the killed attempt spent was left out of the cell's spend (and the report's "spent
(all runs)" column), which read only the final ``rep<k>``. A replication resumed in place with
``friendsim run --resume`` keeps its original beside it (``rep<k>.interrupted``) while its own
manifest sums both segments: that original is not counted a second time."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_analyze_fixture import build_run_dir
from test_sweep_aggregate import build_sweep_dir

OFF = "coach.enabled-false"


def _cost(run_dir: Path) -> float:
    return float(
        json.loads((run_dir / "manifest.json").read_text())["llm_usage"]["total"]["cost_usd"]
    )


def _set(run_dir: Path, **fields: object) -> None:
    path = run_dir / "manifest.json"
    body = json.loads(path.read_text())
    body.update(fields)
    path.write_text(json.dumps(body))


def _usage(cost: float) -> dict[str, object]:
    return {"total": {"calls": 1, "cost_usd": cost}, "by_key": [], "unpriced_models": []}


def test_spent_counts_set_aside_attempts_once(tmp_path: Path) -> None:
    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2)
    cell = sd / OFF
    killed = build_run_dir(cell / "rep0.stale-1", seed=100, windows=1, n_agents=6, coach=False,
                           cost_usd=0.7)  # fmt: skip
    _set(killed, status="running")  # SIGKILLed: its last usage checkpoint
    original = build_run_dir(cell / "rep1.interrupted", seed=101, windows=1, n_agents=6,
                             coach=False, cost_usd=0.3)  # fmt: skip
    _set(original, status="interrupted")
    own = _cost(cell / "rep1")
    digest = hashlib.sha256((original / "manifest.json").read_bytes()).hexdigest()
    _set(  # what an in-place resume of rep1 that finished records: both segments, summed
        cell / "rep1",
        resumed_from={"path": str(cell / "rep1"), "manifest_sha256": digest,
                      "accounting": {"segments": [], "llm_usage": _usage(0.3)}},
        segments=[{"kind": "original", "llm_usage": {"cost_usd": 0.3}},
                  {"kind": "resume", "llm_usage": {"cost_usd": own}}],
        llm_usage=_usage(0.3 + own),
    )  # fmt: skip
    expected = _cost(cell / "rep0") + 0.7 + 0.3 + own

    done = subprocess.run(
        [sys.executable, "-m", "friendsim", "analyze", str(sd), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    off = next(c for c in json.loads(done.stdout)["cells"] if c["name"] == OFF)
    assert off["spent_usd"]["total"] == pytest.approx(expected)
    assert off["spent_usd"]["runs"] == 2 and off["spent_usd"]["unknown"] == 0
    assert off["spent_usd"]["attempts"] == 3  # rep0, rep0.stale-1, rep1 (covering its original)

    done = subprocess.run(
        [sys.executable, "-m", "friendsim", "report", str(sd)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    html = Path(done.stdout.strip()).read_text(encoding="utf-8")
    usage = html[html.index('id="usage"') :]
    row = re.search(r"<tr><td>coach\.enabled=false</td>.*?</tr>", usage, re.S)  # OFF's label
    assert row is not None
    assert row.group(0).endswith(f"<td>{expected:.6f} (2 runs, 3 attempts)</td></tr>")
