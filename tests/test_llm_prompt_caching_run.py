"""Prompt caching over real HTTP: whole runs against stub servers started here on 127.0.0.1.

The Anthropic-compatible stub honours ``cache_control`` on the system block and reports
``cache_creation_input_tokens`` / ``cache_read_input_tokens``; the OpenAI-compatible one reports
``prompt_tokens_details.cached_tokens`` for a repeated system prefix. From each agent's second
request on, its stable prefix (persona, rules, reward definitions) is read from the cache, and
the manifest's cost is what the price table's arithmetic gives: lower than without caching.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_stub_server import StubLLMServer, mind_responder

from friendsim.analysis.analyze import analyze_run
from friendsim.llm.accounting import DEFAULT_PRICES
from friendsim.llm.anthropic_provider import AnthropicLLM
from friendsim.llm.base import LLM
from friendsim.report.run_page import usage_section
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import parse_config


def config(provider: str, **llm: Any) -> Any:
    return parse_config(
        {
            "experiment": {"name": "cache", "seed": 3, "rounds": 2, "n_actions": 2},
            "agents": {"count": 4, "policy": "llm"},
            "llm": {"provider": provider, "retries": 0, "cache": "off", **llm},
            "rewards": {"sentiment": "lexicon"},
        }
    )


@pytest.fixture
def stub() -> Iterator[StubLLMServer]:
    with StubLLMServer(responder=mind_responder(0)) as s:
        yield s


def system_of(body: dict[str, Any]) -> str:
    if "system" in body:
        return "".join(b["text"] for b in body["system"])
    return "".join(m["content"] for m in body["messages"] if m["role"] == "system")


def expected_cache_split(stub: StubLLMServer) -> tuple[int, int, dict[str, int]]:
    """(tokens written, tokens read, requests per distinct system prefix) from what was sent."""
    seen: dict[str, int] = {}
    written = read = 0
    for r in stub.requests:
        system = system_of(r.body)
        seen[system] = seen.get(system, 0) + 1
        if seen[system] == 1:
            written += len(system) // 4
        else:
            read += len(system) // 4
    return written, read, seen


async def test_anthropic_run_reads_the_stable_prefix_from_the_cache(
    stub: StubLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")

    def factory(spec: str) -> LLM:
        assert spec == "anthropic:claude-haiku-4-5"
        return AnthropicLLM("claude-haiku-4-5", base_url=stub.base_url)

    result = await run_experiment(
        config("anthropic:claude-haiku-4-5"), out_dir=tmp_path / "run", llm_factory=factory
    )
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "completed" and result.manifest.status == "completed"
    total = manifest["llm_usage"]["total"]
    written, read, per_system = expected_cache_split(stub)
    assert len(per_system) == 4  # one stable prefix per agent, the same in all its requests
    assert all(n >= 3 for n in per_system.values())  # plan, content and votes share it
    for r in stub.requests:
        assert r.body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert total["calls"] == len(stub.requests)
    assert total["cache_write_tokens"] == written > 0
    assert total["cached_input_tokens"] == read > written  # every request after the first reads
    price = DEFAULT_PRICES["anthropic:claude-haiku-4-5"]
    assert price.cached_input is not None and price.cache_write is not None
    plain = total["input_tokens"] - read - written
    expected = (
        plain * price.input
        + read * price.cached_input
        + written * price.cache_write
        + total["output_tokens"] * price.output
    ) / 1e6
    uncached = (total["input_tokens"] * price.input + total["output_tokens"] * price.output) / 1e6
    # the manifest rounds costs to 8 decimals
    assert total["cost_usd"] == pytest.approx(expected, abs=1e-8)
    assert total["uncached_cost_usd"] == pytest.approx(uncached, abs=1e-8)
    assert total["cost_usd"] < total["uncached_cost_usd"]
    shown = analyze_run(tmp_path / "run")["usage"]["total"]
    assert shown["cached_input_tokens"] == read and shown["cache_write_tokens"] == written
    html = usage_section(analyze_run(tmp_path / "run")["usage"])
    saved = total["uncached_cost_usd"] - total["cost_usd"]
    assert f"Prompt caching served {read} input tokens" in html and f"${saved:.4f}" in html


async def test_openai_run_counts_cached_tokens_and_costs_less(
    stub: StubLLMServer, tmp_path: Path
) -> None:
    spec = f"openai:{stub.openai_base_url}#gpt-4o-mini"
    await run_experiment(config(spec), out_dir=tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    total = manifest["llm_usage"]["total"]
    _, read, per_system = expected_cache_split(stub)
    assert len(per_system) == 4
    assert total["cached_input_tokens"] == read > 0
    assert total["cache_write_tokens"] == 0  # OpenAI caches automatically and bills no write
    price = DEFAULT_PRICES["openai:gpt-4o-mini"]
    assert price.cached_input is not None
    expected = (
        (total["input_tokens"] - read) * price.input
        + read * price.cached_input
        + total["output_tokens"] * price.output
    ) / 1e6
    assert total["cost_usd"] == pytest.approx(expected, abs=1e-8)  # the manifest rounds to 1e-8
    assert total["cost_usd"] < total["uncached_cost_usd"]
    first_of_agent = {system_of(r.body) for r in stub.requests}
    assert len(first_of_agent) == 4


async def test_prefix_below_the_providers_floor_is_not_cached(tmp_path: Path) -> None:
    with StubLLMServer(responder=mind_responder(0), min_cache_tokens=4096) as stub:
        spec = f"openai:{stub.openai_base_url}#gpt-4o-mini"
        await run_experiment(config(spec), out_dir=tmp_path / "run")
    total = json.loads((tmp_path / "run" / "manifest.json").read_text())["llm_usage"]["total"]
    assert total["calls"] > 0 and total["cached_input_tokens"] == 0
    assert total["cost_usd"] == pytest.approx(total["uncached_cost_usd"], rel=1e-9)
