"""Continuous mode merges an agent's wakes within one ``tick`` slice: :func:`expected_wakes`
says how many the slices keep (against a Monte Carlo of the scheduler's own draws and closed
forms), and ``friendsim run`` warns when they lose more than 5 % of the configured wakes, and
so do ``--resume`` and ``--fork`` for the windows they run."""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from test_cli_run import friendsim

from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import load_config
from friendsim.runtime.continuous import (
    LOST_WAKES_WARNING,
    expected_wakes,
    loses_wakes,
    wake_rates,
)

L = 3600.0


def test_expected_wakes_match_a_monte_carlo_of_the_schedulers_draws() -> None:
    """The scheduler's draws (``rng.poisson(rates * dt)`` per slice, an agent acting in a slice
    when its count is positive), repeated for 2,000 windows with a fixed seed: the mean wakes
    and acted slices per window, population-wide and for the most active 1 % (3 agents), agree
    with the function within 4 standard errors of the Monte Carlo mean (each computed from the
    figures' own variance: Poisson for the wakes, Σ p(1 − p) for the slices acted in). A tick
    of 700 s cuts each window into five slices of 700 s and one of 100 s."""
    rng = np.random.default_rng(20240611)
    agents = [f"a{i:03d}" for i in range(300)]
    rates = wake_rates(agents, {}, wake_rate=4.0, window_length=L, activity_sigma=1.2, rng=rng)
    tick, windows = 700.0, 2000
    slices = [700.0] * 5 + [100.0]
    top = np.argsort(rates)[-3:]
    wakes = np.zeros((windows, rates.size))
    acted = np.zeros((windows, rates.size))
    for w in range(windows):
        for dt in slices:
            counts = rng.poisson(rates * dt)
            wakes[w] += counts
            acted[w] += counts > 0
    got = expected_wakes(rates, tick=tick, window_length=L)
    assert (got.agents, got.top_agents, got.tick) == (300, 3, tick)
    p = np.array([-np.expm1(-rates * dt) for dt in slices])
    var_acted = (p * (1 - p)).sum(axis=0)
    for cols, configured, acting in (
        (slice(None), got.configured, got.acting),
        (top, got.top_configured, got.top_acting),
    ):
        mc_wakes = wakes[:, cols].sum(axis=1).mean()
        mc_acted = acted[:, cols].sum(axis=1).mean()
        assert abs(mc_wakes - configured) <= 4 * math.sqrt(configured / windows)
        assert abs(mc_acted - acting) <= 4 * math.sqrt(var_acted[cols].sum() / windows)
    assert got.lost_share > 0.15 and got.top_lost_share > 0.6  # heavy tails lose the most
    assert got.top_lost_share > got.lost_share


def test_equal_rates_give_the_closed_forms() -> None:
    n, r = 250, 2.0 / L
    rates = np.full(n, r)
    one = -math.expm1(-r * 60)
    got = expected_wakes(rates, tick=60.0, window_length=L)
    assert got.configured == pytest.approx(n * 2.0)
    assert got.acting == pytest.approx(n * 60 * one)
    assert got.top_agents == 3  # ⌈250 / 100⌉
    assert got.top_configured == pytest.approx(3 * 2.0)
    assert got.top_acting == pytest.approx(3 * 60 * one)
    assert got.lost_share == pytest.approx(1 - 60 * one / 2.0)
    assert got.top_lost_share == pytest.approx(got.lost_share)

    whole = expected_wakes(rates, tick=L, window_length=L)  # one slice: at most one wake
    assert whole.acting == pytest.approx(n * -math.expm1(-2.0))
    assert whole.lost_share == pytest.approx(1 - -math.expm1(-2.0) / 2.0)

    fine = expected_wakes(rates, tick=0.5, window_length=L)
    assert fine.lost_share == pytest.approx(r * 0.5 / 2, rel=1e-3)  # 1 − (1 − e^−λ)/λ ≈ λ/2

    def p(dt: float) -> float:
        return -math.expm1(-r * dt)

    short = expected_wakes(rates, tick=30.0, window_length=100.0)  # slices 30, 30, 30, 10
    assert short.acting == pytest.approx(n * (3 * p(30) + p(10)))
    assert short.configured == pytest.approx(n * r * 100)
    run = expected_wakes(rates, tick=30.0, window_length=100.0, duration=250.0)
    # windows [0, 100), [100, 200), [200, 250): the last one's slices are 30 and 20 s
    assert run.acting == pytest.approx(n * (2 * (3 * p(30) + p(10)) + p(30) + p(20)))
    assert run.configured == pytest.approx(n * r * 250)

    (alone,) = [expected_wakes(np.array([r]), tick=60.0, window_length=L)]
    assert alone.top_agents == 1 and alone.top_acting == pytest.approx(alone.acting)
    none = expected_wakes(np.array([]), tick=60.0, window_length=L)
    assert (none.agents, none.top_agents, none.acting, none.lost_share) == (0, 0, 0.0, 0.0)


def test_the_slices_are_the_schedulers_at_any_float_tick() -> None:
    """Summed over a run, the function equals the scheduler's own slicing done by brute force
    (``start + k × tick < end − 1e-9``, each slice ``min(tick, end − t)`` long) window by
    window, ticks that do not divide the window and a short last window included."""
    rates = np.array([0.001, 0.02, 0.3])
    for tick, length, duration in ((0.7, 100.0, 1234.5), (60.0, 3600.0, 7200.0), (7.0, 50.0, 49.0)):
        n = max(1, math.ceil(duration / length - 1e-9))
        acted = np.zeros_like(rates)
        for w in range(1, n + 1):
            start, end = (w - 1) * length, min(w * length, duration)
            k = 0
            while (t := start + k * tick) < end - 1e-9:
                acted += -np.expm1(-rates * min(tick, end - t))
                k += 1
        got = expected_wakes(rates, tick=tick, window_length=length, duration=duration)
        assert got.acting == pytest.approx(acted.sum(), rel=1e-9)
        assert got.configured == pytest.approx(rates.sum() * duration, rel=1e-9)


def baseline_config(path: Path, *, tick: float, windows: int = 2) -> Path:
    path.write_text(
        '[experiment]\nname = "ticks"\nseed = 3\nmode = "continuous"\nn_actions = 1\n'
        f"window_length = {L}\nduration = {windows * L}\ntick = {tick}\nwake_rate = 4.0\n"
        'activity_sigma = 1.0\n[agents]\ncount = 30\npolicy = "baseline"\n'
        "[coach]\nenabled = false\n"
    )
    return path


WARNING = re.compile(
    r"^friendsim run: warning: tick = (\S+) s loses (\d+)% of the configured wakes \(several "
    r"wakes of an agent in one slice count as one\): (\S+) of (\S+) per window, and (\d+)% for "
    r"the most active 1% \((\d+) agents?: \S+ of \S+\); a smaller \[experiment\] tick keeps them$"
)


def test_run_warns_when_a_coarse_tick_loses_wakes_and_not_for_a_fine_one(tmp_path: Path) -> None:
    coarse = baseline_config(tmp_path / "coarse.toml", tick=1800.0)
    proc = friendsim("run", str(coarse), "--out", str(tmp_path / "coarse"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    warnings = [line for line in lines if "warning" in line]
    assert len(warnings) == 1, proc.stderr
    m = WARNING.match(warnings[0])
    assert m, warnings[0]
    assert lines.index(warnings[0]) < lines.index("friendsim run: 30 agents, 2 windows")
    tick, share, lost, configured, top_share, top_agents = m.groups()[:6]
    assert float(tick) == 1800.0 and int(top_agents) == 1
    # the same figures as the estimate's (the run's rates; its two windows are full ones)
    est = friendsim("run", str(coarse), "--estimate")
    assert est.returncode == 0, est.stderr
    expected = json.loads(est.stdout.splitlines()[-1])["wakes_expected"]
    assert int(share) == round(100 * expected["lost_share"]) > 100 * LOST_WAKES_WARNING
    assert int(top_share) == round(100 * expected["top_lost_share"])
    per_window = expected["configured"] / 2, (expected["configured"] - expected["acting"]) / 2
    # the line rounds to whole wakes, the JSON to tenths
    assert float(configured.replace(",", "")) == pytest.approx(per_window[0], abs=0.6)
    assert float(lost.replace(",", "")) == pytest.approx(per_window[1], abs=0.6)

    fine = baseline_config(tmp_path / "fine.toml", tick=10.0)
    proc = friendsim("run", str(fine), "--out", str(tmp_path / "fine"))
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr and "tick" not in proc.stderr, proc.stderr
    est = friendsim("run", str(fine), "--estimate")
    assert json.loads(est.stdout.splitlines()[-1])["wakes_expected"]["lost_share"] < 0.05


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning" in line]


def test_a_fork_warns_for_its_windows_as_the_run_does(tmp_path: Path) -> None:
    """A fork runs windows W+1 on under its own config, whose ``tick`` (and wake rates) a fork
    cannot change: forking a coarse-tick run, one window longer, warns with the very line the
    parent's ``friendsim run`` printed; forking a fine-tick one does not warn, and a fork that
    would coarsen the tick is refused (exit 2) before any window runs, without the warning."""
    coarse = baseline_config(tmp_path / "coarse.toml", tick=1800.0)
    parent = friendsim("run", str(coarse), "--out", str(tmp_path / "coarse"), "--quiet")
    assert parent.returncode == 0, parent.stderr
    (line,) = warnings_in(parent.stderr)
    longer = baseline_config(tmp_path / "coarse3.toml", tick=1800.0, windows=3)
    proc = friendsim(
        "run", str(longer), "--fork", str(tmp_path / "coarse"), "--at", "1",
        "--out", str(tmp_path / "coarse-fork"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert warnings_in(proc.stderr) == [line], proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["changed"] == {
        "experiment.duration": [2 * L, 3 * L]
    }

    fine = baseline_config(tmp_path / "fine.toml", tick=10.0)
    parent = friendsim("run", str(fine), "--out", str(tmp_path / "fine"), "--quiet")
    assert parent.returncode == 0 and not warnings_in(parent.stderr), parent.stderr
    longer = baseline_config(tmp_path / "fine3.toml", tick=10.0, windows=3)
    proc = friendsim(
        "run", str(longer), "--fork", str(tmp_path / "fine"), "--at", "1",
        "--out", str(tmp_path / "fine-fork"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr and "tick" not in proc.stderr, proc.stderr
    proc = friendsim(
        "run", str(coarse), "--fork", str(tmp_path / "fine"), "--at", "1",
        "--out", str(tmp_path / "coarsened"),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "[experiment].tick differs from the parent run" in proc.stderr
    assert not warnings_in(proc.stderr), proc.stderr


def interrupted_after_window_1(config: Path, out: Path) -> None:
    from friendsim.runtime.status import RunInterrupted
    from friendsim.testing import stop_after_window

    stop, listener = stop_after_window(1)
    with pytest.raises(RunInterrupted):
        asyncio.run(
            run_experiment(
                load_config(config), out_dir=out, config_path=config, stop=stop, listener=listener
            )
        )


def test_a_resume_warns_for_the_windows_it_runs(tmp_path: Path) -> None:
    """Runs stopped after window 1 of 2: resuming the coarse-tick one (``friendsim run
    --resume``, and ``friendsim replay --resume``, prefixed with its own name) warns once, with
    the figures of ``--estimate``, before it runs; resuming the fine-tick one does not."""
    coarse = baseline_config(tmp_path / "coarse.toml", tick=1800.0)
    interrupted_after_window_1(coarse, tmp_path / "coarse")
    proc = friendsim("run", "--resume", str(tmp_path / "coarse"), "--out", str(tmp_path / "r1"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["status"] == "completed"
    (line,) = warnings_in(proc.stderr)
    m = WARNING.match(line)
    assert m, line
    est = friendsim("run", str(coarse), "--estimate")
    assert est.returncode == 0, est.stderr
    expected = json.loads(est.stdout.splitlines()[-1])["wakes_expected"]
    assert float(m.group(1)) == 1800.0
    assert int(m.group(2)) == round(100 * expected["lost_share"]) > 100 * LOST_WAKES_WARNING
    assert int(m.group(5)) == round(100 * expected["top_lost_share"])
    proc = friendsim("replay", str(tmp_path / "coarse"), "--resume", "--out", str(tmp_path / "r2"))
    assert proc.returncode == 0, proc.stderr
    assert warnings_in(proc.stderr) == [line.replace("friendsim run: ", "friendsim replay: ", 1)], (
        proc.stderr
    )

    fine = baseline_config(tmp_path / "fine.toml", tick=10.0)
    interrupted_after_window_1(fine, tmp_path / "fine")
    proc = friendsim("run", "--resume", str(tmp_path / "fine"), "--out", str(tmp_path / "r3"))
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr and "tick" not in proc.stderr, proc.stderr


def test_a_listener_without_the_wakes_hook_still_runs_a_continuous_experiment(
    tmp_path: Path,
) -> None:
    """``api.run`` takes any object with the listener's three methods (docs/api.md): the
    continuous scheduler tells ``wakes_expected`` only to a listener that has it."""
    from friendsim import api
    from friendsim.runtime.config import parse_config

    class Counting:
        def __init__(self) -> None:
            self.ended: list[int] = []

        def run_started(self, *, windows: int, agents: int) -> None:
            pass

        def wake_applied(self, tally: object) -> None:
            pass

        def window_ended(self, tally: object) -> None:
            self.ended.append(tally.window)  # type: ignore[attr-defined]

    cfg = parse_config(
        {
            "experiment": {"mode": "continuous", "window_length": 600.0, "duration": 1200.0},
            "agents": {"count": 4, "policy": "baseline"},
            "coach": {"enabled": False},
        }
    )
    listener = Counting()
    api.run(cfg, tmp_path / "out", listener=listener)  # type: ignore[arg-type]
    assert listener.ended == [1, 2]


def test_a_tail_losing_its_wakes_warns_even_when_the_population_loses_few() -> None:
    """999 agents waking half a time a window and one waking 20 times: a 300 s tick keeps
    about 98 % of the 999's wakes (λ = 1/24 per slice) but under half of the most active
    agent's (λ = 5/3), so the population loses under 5 % and the warning still comes, for the
    most active 1 % (that agent and nine of the others), which loses about 40 %."""
    rates = np.full(1000, 0.5 / L)
    rates[17] = 20.0 / L
    got = expected_wakes(rates, tick=300.0, window_length=L)
    assert got.top_agents == 10
    assert got.lost_share < LOST_WAKES_WARNING and got.top_lost_share > 0.25
    assert loses_wakes(got)
    even = expected_wakes(np.full(1000, 0.5 / L), tick=300.0, window_length=L)
    assert not loses_wakes(even)  # about 2 % lost, the same for the most active 1 %
    assert even.lost_share < 0.03
    assert even.top_lost_share == pytest.approx(even.lost_share)
