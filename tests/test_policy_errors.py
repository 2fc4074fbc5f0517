"""A policy that raises loses its agent's decision: the run goes on, but it cannot say
``completed``. The decision is recorded as ``action_failed`` (stage ``policy``), counted in the
manifest's ``totals.policy_errors``, and the run ends ``degraded`` (exit 3) with a line that says
what was lost; a run without such errors is unchanged."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from friendsim.commands.run import degraded_line
from friendsim.runtime.status import finished_status

CHILD = textwrap.dedent(
    '''
    import sys
    from friendsim.agents.policies import POLICIES, _baseline, BaselineParams

    class Crashy:
        """The baseline policy, except that it raises on its agent's decisions in window 2."""

        def __init__(self, inner, agent):
            self.inner, self.agent = inner, agent

        def __getattr__(self, name):
            return getattr(self.inner, name)

        async def decide(self, obs):
            if obs.window == 2 and self.agent in {crashing}:
                raise ZeroDivisionError("division by zero in the plug-in policy")
            return await self.inner.decide(obs)

    def crashy(*, context, **params):
        return Crashy(_baseline(context=context, **params), context.persona.id)

    POLICIES.register("crashy", crashy, params=BaselineParams)
    from friendsim.cli import main
    sys.exit(main(sys.argv[1:]))
    '''
)

CONFIG = """
[experiment]
name = "crashy"
seed = 3
rounds = 3
n_actions = 2

[agents]
count = 4
policy = "crashy"
"""


def run_cli(tmp_path: Path, crashing: set[str]) -> tuple[subprocess.CompletedProcess[str], Path]:
    cfg = tmp_path / "crashy.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / f"run-{len(crashing)}"
    done = subprocess.run(
        [sys.executable, "-c", CHILD.replace("{crashing}", repr(crashing)),
         "run", str(cfg), "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    return done, out


def test_a_run_whose_policy_raised_ends_degraded_and_says_what_was_lost(tmp_path: Path) -> None:
    done, out = run_cli(tmp_path, {"a01", "a02"})
    assert done.returncode == 3, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "degraded" and manifest["windows"] == 3
    assert manifest["totals"]["policy_errors"] == 2 and manifest["totals"]["lost_actions"] == 0
    with sqlite3.connect(out / "events.db") as con:
        failed = [
            (actor, json.loads(p))
            for actor, p in con.execute(
                "SELECT actor, payload FROM events WHERE kind = 'action_failed' ORDER BY seq"
            )
        ]
    assert [(a, p["stage"], p["reason"], p["window"]) for a, p in failed] == [
        ("a01", "policy", "ZeroDivisionError", 2),
        ("a02", "policy", "ZeroDivisionError", 2),
    ]
    assert json.loads(done.stdout.strip().splitlines()[-1])["status"] == "degraded"
    assert "2 decisions lost to a policy that raised (a bug in the policy" in done.stderr
    assert "provider errors" not in done.stderr and "Traceback" not in done.stderr


def test_the_same_run_without_errors_is_completed(tmp_path: Path) -> None:
    done, out = run_cli(tmp_path, set())
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["totals"]["policy_errors"] == 0


def test_status_and_the_line_that_explains_it() -> None:
    assert finished_status({"lost_actions": 0, "policy_errors": 0}) == "completed"
    assert finished_status({"lost_actions": 0, "policy_errors": 1}) == "degraded"
    assert finished_status({"lost_actions": 2}) == "degraded"
    assert finished_status({"lost_guidance": 1}) == finished_status({"lost_reviews": 1})
    assert finished_status({"lost_reviews": 1}) == "degraded"
    both = degraded_line("degraded", {"lost_actions": 3, "policy_errors": 1})
    assert both.startswith("degraded: every window ran but 3 model-backed decisions lost to")
    assert "; 1 decisions lost to a policy that raised" in both
    assert degraded_line("degraded", {}) == "degraded: every window ran but something was lost"


def test_every_loss_is_counted_told_and_noted_from_one_table() -> None:
    """The status, the command line's line and analysis' note read one table of losses: a loss
    named there degrades the run, and both texts name it with the same words."""
    from friendsim.analysis.analyze import _status_note
    from friendsim.rundir.manifest import Manifest
    from friendsim.vocabulary import LOSSES

    assert tuple(x.name for x in LOSSES) == ("lost_actions", "policy_errors", "lost_guidance",
                                              "lost_reviews", "lost_answers")  # fmt: skip
    for n, loss in enumerate(LOSSES, start=2):
        totals = {loss.name: n}
        assert finished_status(totals) == "degraded"
        line = degraded_line("degraded", totals)
        assert line == f"degraded: every window ran but {n} {loss.what} ({loss.where})"
        note = _status_note(Manifest(status="degraded", totals=totals))
        assert note == f"degraded run: every window ran, but {n} {loss.what}"
