"""Re-driving an old log through the bus to new reward settings or a new coach, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_replay_support import checksums, config, make_run, rows

from friendsim.analysis.rewards import score_log
from friendsim.analysis.rewards_params import RewardParams
from friendsim.platform.events import event_from_row
from friendsim.replay.redrive import redrive
from friendsim.rundir.errors import RunInputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import asyncio

    out = tmp_path_factory.mktemp("redrive") / "run"
    asyncio.run(make_run(out, config(rounds=3, agents=5, coach=True)))
    return out


async def test_recorded_settings_reproduce_the_recorded_guidance(run_dir: Path) -> None:
    before = checksums(run_dir)
    result = await redrive(run_dir, coach="rule")
    assert [w["window"] for w in result.windows] == [1, 2, 3]
    for w in result.windows:
        assert w["guidance"] and w["guidance"] == w["recorded_guidance"]
        assert w["scores"] == w["recorded_scores"]
    assert checksums(run_dir) == before


async def test_new_reward_setting_scores_like_score_log(run_dir: Path) -> None:
    result = await redrive(run_dir, rewards={"beta_soc": 0.9, "beta_emo": -0.5})
    manifest = json.loads((run_dir / "manifest.json").read_text())
    params = RewardParams(**{**manifest["rewards"], "beta_soc": 0.9, "beta_emo": -0.5})
    expected = score_log(
        (event_from_row(*r) for r in rows(run_dir / "events.db")),
        params=params,
        lambdas=manifest["lambdas"],
    )
    got = {(a, w["window"]): s["total"] for w in result.windows for a, s in w["scores"].items()}
    assert got == {(s.agent, s.window): s.total for s in expected}
    recorded = {
        (a, w["window"]): s["total"]
        for w in result.windows
        for a, s in w["recorded_scores"].items()
    }
    assert got != recorded  # beta_soc changed: SOC-weighted totals move
    assert all(w["guidance"] == {} for w in result.windows)  # coach "none"


async def test_bad_reward_setting_is_named(run_dir: Path) -> None:
    with pytest.raises(RunInputError, match="beta_soc"):
        await redrive(run_dir, rewards={"beta_soc": 3.0})
    with pytest.raises(RunInputError, match=r"unknown reward params \['beta_nope'\]; known: "):
        await redrive(run_dir, rewards={"beta_nope": 0.1})


def test_cli_redrive_writes_json_and_never_touches_the_run(run_dir: Path, tmp_path: Path) -> None:
    before = checksums(run_dir)
    out = tmp_path / "scores.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "friendsim",
            "replay",
            str(run_dir),
            "--redrive",
            "--rewards",
            "beta_emo=-0.5",
            "--coach",
            "rule",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    body = json.loads(out.read_text())
    assert body["rewards"]["beta_emo"] == -0.5 and body["coach"] == "rule"
    assert len(body["windows"]) == 3 and body["windows"][0]["guidance"]
    assert checksums(run_dir) == before
    again = subprocess.run(
        [sys.executable, "-m", "friendsim", "replay", str(run_dir), "--redrive", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--verify", "--at", "2"), "--at is only used with --fork"),
        (("--verify", "--rewards", "beta_emo=1"), "--rewards is only used with --redrive"),
        (("--rerun", "--coach", "rule"), "--coach is only used with --redrive"),
        (("--verify", "--moderator", "rule"), "--moderator is only used with --redrive"),
        (("--redrive", "--moderator-params", "toxicity=0.5"),
         "--moderator-params is only used with --moderator"),
        (("--verify", "--out", "{tmp}/x"),
         "--out is only used with --rerun, --redrive, --resume or --fork"),
    ],
)  # fmt: skip
def test_an_option_the_action_would_ignore_is_refused(
    run_dir: Path, tmp_path: Path, argv: tuple[str, ...], message: str
) -> None:
    """``replay --verify --at 2`` and the like ran the action and silently dropped the option."""
    before = checksums(run_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "friendsim", "replay", str(run_dir),
         *(a.format(tmp=tmp_path) for a in argv)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr == f"friendsim replay: {message}\n"
    assert proc.stdout == "" and checksums(run_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == []
