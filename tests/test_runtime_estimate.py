"""``friendsim run CONFIG --estimate``: requests, tokens and cost before a run, with no model,
key or network; checked against the tokens a real-HTTP run against a stub server is billed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from llm_stub_server import StubLLMServer, mind_responder

from friendsim.llm.accounting import Price, PriceTable
from friendsim.llm.batch import spec_batches
from friendsim.llm.estimate import RequestCount, price_requests
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import parse_config
from friendsim.runtime.estimate import estimate_run, format_estimate


def config(provider: str, **llm: Any) -> Any:
    return parse_config(
        {
            "experiment": {"name": "est", "seed": 2, "rounds": 3, "n_actions": 3},
            "agents": {"count": 6, "policy": "llm"},
            "llm": {"provider": provider, "retries": 0, "cache": "off", **llm},
            "rewards": {"sentiment": "lexicon"},
        }
    )


def within(estimate: float, actual: float, tol: float = 0.10) -> bool:
    return abs(estimate - actual) <= tol * actual


async def test_estimate_is_within_ten_percent_of_a_real_http_run(tmp_path: Path) -> None:
    with StubLLMServer(responder=mind_responder(0), min_cache_tokens=1024) as stub:
        spec = f"openai:{stub.openai_base_url}#gpt-4o-mini"
        cfg = config(spec)
        est = await estimate_run(cfg)
        assert stub.requests == []  # the estimate never called the server
        await run_experiment(cfg, out_dir=tmp_path / "run")
    actual = json.loads((tmp_path / "run" / "manifest.json").read_text())["llm_usage"]["total"]
    got = est.to_json()
    assert got["requests"] == actual["calls"] == len(stub.requests)
    assert within(got["input_tokens"], actual["input_tokens"]), (got, actual)
    assert within(got["output_tokens"], actual["output_tokens"]), (got, actual)
    assert within(got["cost_usd"], actual["cost_usd"]), (got, actual)
    assert got["output_tokens_max"] >= got["output_tokens"]
    (row,) = got["by_model"]
    assert (row["provider"], row["model"]) == ("openai", "gpt-4o-mini")
    assert set(row["by_label"]) >= {"plan", "content", "vote"}


async def test_a_batch_run_over_an_endpoint_pool_is_estimated_at_live_prices(
    tmp_path: Path,
) -> None:
    """A pool sends no batches (each request goes to one member, live), so a batch run over
    one is billed live: its estimate must price it so, not at the batch discount."""
    with (
        StubLLMServer(responder=mind_responder(0), min_cache_tokens=1024) as a,
        StubLLMServer(responder=mind_responder(0), min_cache_tokens=1024) as b,
    ):
        cfg = config(f"openai:{a.openai_base_url},{b.openai_base_url}#gpt-4o-mini", batch=True)
        est = (await estimate_run(cfg)).to_json()
        await run_experiment(cfg, out_dir=tmp_path / "run")
    actual = json.loads((tmp_path / "run" / "manifest.json").read_text())["llm_usage"]["total"]
    assert actual["batch_calls"] == 0 and actual["calls"] == est["requests"]
    assert within(est["cost_usd"], actual["cost_usd"]), (est, actual)
    assert est["cost_usd"] == pytest.approx(est["cost_live_cached_usd"])


def test_estimate_prices_in_batch_only_the_providers_that_send_batches() -> None:
    assert spec_batches("openai:gpt-4o-mini") and spec_batches("anthropic:claude-haiku-4-5")
    assert spec_batches("openai:http://127.0.0.1:8000/v1#m")
    assert not spec_batches("openai:http://h1:8000/v1,http://h2:8000/v1#m")
    assert not spec_batches("openai:gpt-4o-mini", fleet=True)  # [llm] endpoints_file: a pool
    assert not spec_batches("local:smollm2") and not spec_batches("scripted")
    table = PriceTable({"p:m": Price(input=1.0, output=4.0)})
    reqs = [
        RequestCount(provider="p", model="m", label="plan", prefix_key=k, prefix_tokens=0,
                     input_tokens=300, output_tokens=50, batchable=k == "batched")
        for k in ("batched", "live")
    ]  # fmt: skip
    (row,) = price_requests(reqs, table, batchable=True)
    one = (300 * 1.0 + 50 * 4.0) / 1e6
    assert row.cost_usd == pytest.approx(2 * one)
    assert row.cost_batch_usd == pytest.approx(one / 2 + one)


async def test_estimate_of_a_scripted_run_matches_its_usage(tmp_path: Path) -> None:
    from test_replay_support import mind_factory

    cfg = config("scripted:mind", prices={"scripted:mind": {"input": 1.0, "output": 2.0}})
    est = (await estimate_run(cfg)).to_json()
    run = await run_experiment(cfg, out_dir=tmp_path / "run", llm_factory=mind_factory)
    actual = run.manifest.llm_usage["total"]
    assert est["requests"] == actual["calls"]
    assert within(est["input_tokens"], actual["input_tokens"], 0.01)
    assert within(est["output_tokens"], actual["output_tokens"], 0.01)
    assert within(est["cost_live_uncached_usd"], actual["cost_usd"], 0.01)


def test_caching_and_batching_arithmetic() -> None:
    reqs = [
        RequestCount(provider="p", model="m", label="plan", prefix_key=k, prefix_tokens=100,
                     input_tokens=300, output_tokens=50)
        for k in ("a", "a", "a", "b")
    ]  # fmt: skip
    table = PriceTable({"p:m": Price(input=1.0, output=4.0, cached_input=0.1, cache_write=1.25)})
    (row,) = price_requests(reqs, table, batchable=True, min_cache={"p:*": 100})
    assert (row.requests, row.input_tokens, row.output_tokens) == (4, 1200, 200)
    assert (row.cache_write_tokens, row.cached_input_tokens) == (200, 200)  # a, b write; a, a read
    assert row.cost_usd == pytest.approx((1200 * 1.0 + 200 * 4.0) / 1e6)
    cached = (800 * 1.0 + 200 * 1.25 + 200 * 0.1 + 200 * 4.0) / 1e6
    assert row.cost_cached_usd == pytest.approx(cached)
    assert row.cost_batch_usd == pytest.approx(row.cost_usd / 2)
    assert row.cost_batch_cached_usd == pytest.approx(cached / 2)
    (floor,) = price_requests(reqs, table, batchable=False, min_cache={"p:*": 101})
    assert floor.cached_input_tokens == 0 and floor.cost_cached_usd == floor.cost_usd
    assert floor.cost_batch_usd == floor.cost_usd  # no barriers, no batch discount


def test_cli_estimate_needs_no_key_or_network(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[experiment]\nrounds = 2\nn_actions = 2\n[agents]\ncount = 3\n[llm]\nprovider = "
        '"anthropic:claude-haiku-4-5"\nbatch = true\n[rewards]\nsentiment = "lexicon"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["HTTPS_PROXY"] = env["HTTP_PROXY"] = "http://127.0.0.1:9"  # any connection would fail
    out = subprocess.run(
        [sys.executable, "-m", "friendsim", "run", str(cfg), "--estimate"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    last = json.loads(lines[-1])
    assert {"requests", "input_tokens", "output_tokens", "cost_usd"} <= set(last)
    assert last["requests"] > 0 and last["input_tokens"] > last["output_tokens"] > 0
    assert last["cost_usd"] == pytest.approx(last["cost_batch_cached_usd"])
    assert last["cost_batch_uncached_usd"] == pytest.approx(
        last["cost_live_uncached_usd"] / 2, abs=1e-6
    )
    assert lines[0].startswith("anthropic:claude-haiku-4-5: ")
    assert not (tmp_path / "runs").exists()  # nothing was run for real
    real = subprocess.run(
        [sys.executable, "-m", "friendsim", "run", str(cfg), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert real.returncode == 2 and "ANTHROPIC_API_KEY" in real.stderr


def continuous(count: int, policy: str, **llm: Any) -> Any:
    """A coarse tick (λ ≈ 1.5 wakes per agent per slice on average, heavy-tailed): the slices
    merge most configured wakes."""
    return parse_config(
        {
            "experiment": {
                "name": "est-ticks", "seed": 5, "mode": "continuous", "n_actions": 1,
                "window_length": 3600.0, "duration": 3 * 3600.0, "tick": 900.0,
                "wake_rate": 6.0, "activity_sigma": 1.0,
            },
            "agents": {"count": count, "policy": policy},
            "coach": {"enabled": False},
            "llm": {"retries": 0, "cache": "off", **llm},
            "rewards": {"sentiment": "lexicon"},
        }
    )  # fmt: skip


async def test_a_continuous_estimate_counts_the_wakes_the_run_acts_not_the_configured(
    tmp_path: Path,
) -> None:
    """The dry run draws the wakes as the run does: its count is the run's. The expected
    acting wakes are within 4 standard deviations of the run's count (a sum of independent
    Bernoulli slices: its variance is below its mean, so 4 √expected bounds it), and the
    configured ones (rate × duration) are far outside that."""
    cfg = continuous(120, "baseline")
    est = (await estimate_run(cfg)).to_json()
    run = await run_experiment(cfg, out_dir=tmp_path / "run")
    actual = run.manifest.totals["wakes"]
    expected = est["wakes_expected"]
    assert est["wakes"] == actual
    assert abs(expected["acting"] - actual) <= 4 * expected["acting"] ** 0.5, (expected, actual)
    assert expected["configured"] - actual > 10 * expected["acting"] ** 0.5
    assert expected["lost_share"] > 0.3 and expected["top_lost_share"] > expected["lost_share"]
    assert expected["top_agents"] == 2 and expected["tick"] == 900.0


async def test_a_continuous_estimate_asks_what_the_run_asks(tmp_path: Path) -> None:
    from test_replay_support import mind_factory

    cfg = continuous(8, "llm", provider="scripted:mind")
    estimate = await estimate_run(cfg)
    est = estimate.to_json()
    run = await run_experiment(cfg, out_dir=tmp_path / "run", llm_factory=mind_factory)
    assert est["wakes"] == run.manifest.totals["wakes"] > 0
    assert est["requests"] == run.manifest.llm_usage["total"]["calls"]
    assert est["by_model"][0]["by_label"]["plan"] == est["wakes"]  # one plan per acting wake
    assert est["wakes_expected"]["acting"] < est["wakes_expected"]["configured"]
    line = next(x for x in format_estimate(estimate) if x.startswith("wakes: "))
    assert f"wakes: {est['wakes']:,} in the dry run; expected " in line
    assert "tick = 900 s loses" in line and "for the most active 1% (1 agent)" in line
