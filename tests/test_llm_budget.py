"""Budgets: ``[llm].budget_usd`` stops a run as interrupted before it could overspend; the run
resumes and completes, with the very log an unlimited run writes, once the budget is raised."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from llm_stub_server import StubLLMServer, mind_responder
from test_replay_support import config, mind_factory, rows

from friendsim.llm.accounting import Ledger, PriceTable
from friendsim.llm.base import Completion, LLMRequest, Usage, user
from friendsim.llm.budget import Budget, BudgetedLLM
from friendsim.llm.errors import BudgetExceededError
from friendsim.llm.scripted import ScriptedLLM
from friendsim.llm.tokens import estimate_input_tokens
from friendsim.replay.resume import resume
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import ExperimentConfig
from friendsim.runtime.engine import RunInterrupted

PRICES = {"scripted:mind": {"input": 100.0, "output": 400.0}}


def priced(budget: float | None = None) -> ExperimentConfig:
    cfg = config(rounds=3, agents=4)
    llm = cfg.llm.model_copy(update={"prices": PRICES, "budget_usd": budget})
    return cfg.model_copy(update={"llm": llm})


async def test_budgeted_llm_refuses_the_call_that_could_overspend() -> None:
    ledger = Ledger(PriceTable({"scripted:m": {"input": 1_000_000.0, "output": 1_000_000.0}}))
    budget = Budget(60.0, ledger)  # $1 per token: the limit is 60 tokens
    inner = ScriptedLLM(default="x" * 40, model="m")  # 10 output tokens
    llm = BudgetedLLM(_Accounting(inner, ledger), budget)
    req = LLMRequest(messages=(user("p" * 80),), max_tokens=10)  # 20 in + at most 10 out
    await llm.complete(req)
    assert budget.spent() == pytest.approx(30.0) and not budget.tripped
    await llm.complete(req)  # 30 spent + 30 at worst: exactly the limit, allowed
    assert budget.spent() == pytest.approx(60.0)
    with pytest.raises(BudgetExceededError, match=r"budget of \$60\.0000 reached"):
        await llm.complete(LLMRequest(messages=(user("p" * 4),), max_tokens=1))
    assert len(inner.calls) == 2 and budget.tripped and budget.reserved_usd == 0
    budget.limit_usd = 1000.0
    with pytest.raises(BudgetExceededError):  # once tripped, it stays tripped
        await llm.complete(LLMRequest(messages=(user("p"),), max_tokens=1))
    assert len(inner.calls) == 2


async def test_a_prompt_written_to_the_providers_cache_is_reserved_at_the_write_price() -> None:
    """Anthropic bills a prompt it writes to its cache at 1.25x the input price: the reservation
    covers that, so such a call cannot take spending past the limit (it was reserved at the
    input price and a call answered in full overspent)."""
    prices = {"input": 1_000_000.0, "output": 1_000_000.0, "cache_write": 1_250_000.0}
    ledger = Ledger(PriceTable({"anthropic:m": prices}))
    req = LLMRequest(messages=(user("p" * 80),), max_tokens=10)
    tokens = estimate_input_tokens(req)

    class Writer:
        model = "anthropic:m"

        async def complete(self, request: LLMRequest) -> Completion:
            usage = Usage(input_tokens=tokens, cache_write_tokens=tokens, output_tokens=10)
            return Completion(text="x", model="m", provider="anthropic", usage=usage)

        async def aclose(self) -> None:
            return None

    cost = (tokens * 1.25 + 10) * 1.0
    budget = Budget(cost - 1, ledger)  # a dollar short of what the call costs
    llm = BudgetedLLM(_Accounting(Writer(), ledger), budget)
    with pytest.raises(BudgetExceededError):
        await llm.complete(req)
    assert budget.spent() == 0.0
    budget = Budget(cost, Ledger(PriceTable({"anthropic:m": prices})))
    llm = BudgetedLLM(_Accounting(Writer(), budget.ledger), budget)
    await llm.complete(req)
    assert budget.spent() == pytest.approx(cost) and not budget.tripped


async def _batch_stack(stub: StubLLMServer, tmp: Path, ledger: Ledger, http_path: str) -> Any:
    from friendsim.llm.batch import BatchJournal, PollPolicy
    from friendsim.llm.stack import build_llm

    return await build_llm(
        f"openai:{stub.openai_base_url}#m",
        ledger=ledger,
        retries=0,
        batch_journal=BatchJournal(tmp / f"batches-{http_path}.db"),
        batch_poll=PollPolicy(first=0.02, most=0.1, gather_s=0.01),
        http_path=http_path,
    )


BATCH_REQ = LLMRequest(messages=(user("p" * 80),), max_tokens=10)
DOLLAR_A_TOKEN = {"openai:m": {"input": 1_000_000.0, "output": 1_000_000.0}}


@pytest.mark.parametrize("http_path", ["sdk", "lean"])
async def test_a_batch_call_is_reserved_at_the_batch_price_it_is_billed_at(
    tmp_path: Path, http_path: str
) -> None:
    """A call sent in a provider batch is billed at half price: a budget that covers that much
    lets it through (reserved at the live price, it was refused and the run stopped early)."""
    ledger = Ledger(PriceTable(DOLLAR_A_TOKEN))
    with StubLLMServer(text_answer="ok") as stub:
        stack = await _batch_stack(stub, tmp_path, ledger, http_path)
        budget = Budget(1.0, ledger)
        budget.limit_usd = budget.worst_case("openai", "m", BATCH_REQ) / 2
        done = await BudgetedLLM(stack, budget).complete(BATCH_REQ)
        await stack.aclose()
    assert done.batch and len(stub.batch_creates) == 1
    assert 0 < budget.spent() <= budget.limit_usd and not budget.tripped
    assert budget.reserved_usd == 0 and budget.in_flight == 0


@pytest.mark.parametrize("http_path", ["sdk", "lean"])
async def test_a_batch_call_falling_back_live_is_reserved_at_the_live_price(
    tmp_path: Path, http_path: str
) -> None:
    """A call its batch left unanswered is asked live, at the live price: its reservation is
    raised to that first, so a budget covering only the batch price refuses it unsent."""
    ledger = Ledger(PriceTable(DOLLAR_A_TOKEN))
    with StubLLMServer(text_answer="ok", expire_batches=True) as stub:
        stack = await _batch_stack(stub, tmp_path, ledger, http_path)
        live = Budget(1.0, ledger).worst_case("openai", "m", BATCH_REQ)
        short = Budget(live * 0.75, ledger)
        with pytest.raises(BudgetExceededError):
            await BudgetedLLM(stack, short).complete(BATCH_REQ)
        assert len(stub.batch_creates) == 1 and short.tripped
        assert [r for r in stub.requests if r.path == "/v1/chat/completions"] == []
        assert short.reserved_usd == 0 and short.in_flight == 0 and short.spent() == 0
        enough = Budget(live, ledger)
        done = await BudgetedLLM(stack, enough).complete(BATCH_REQ)
        await stack.aclose()
    assert not done.batch and len(stub.batch_creates) == 2
    assert len([r for r in stub.requests if r.path == "/v1/chat/completions"]) == 1
    assert 0 < enough.spent() <= enough.limit_usd and enough.reserved_usd == 0


def _Accounting(inner: Any, ledger: Ledger) -> Any:
    from friendsim.llm.accounting import AccountingLLM

    return AccountingLLM(inner, ledger)


async def test_budget_stop_is_an_interruption_that_resumes_to_the_full_log(
    tmp_path: Path,
) -> None:
    full = await run_experiment(priced(), out_dir=tmp_path / "full", llm_factory=mind_factory)
    full_cost = full.manifest.llm_usage["total"]["cost_usd"]
    assert full_cost > 0

    run = tmp_path / "run"
    limit = full_cost * 0.4
    with pytest.raises(RunInterrupted) as stopped:
        await run_experiment(priced(limit), out_dir=run, llm_factory=mind_factory)
    assert stopped.value.reason == "budget"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["stop_reason"] == "budget"
    assert manifest["budget"]["tripped"] is True
    assert manifest["llm_usage"]["total"]["cost_usd"] <= limit  # stopped before, not after
    assert manifest["budget"]["spent_usd"] <= limit
    partial = rows(run / "events.db")
    complete = rows(tmp_path / "full" / "events.db")
    assert 0 < len(partial) < len(complete)
    assert partial == complete[: len(partial)]

    report = await resume(run, llm_factory=mind_factory, budget_usd=full_cost * 3)
    assert report.status == "completed"
    assert rows(run / "events.db") == complete
    resumed = json.loads((run / "manifest.json").read_text())
    assert resumed["status"] == "completed" and "stop_reason" not in resumed
    assert resumed["config"]["llm"]["budget_usd"] == pytest.approx(full_cost * 3)
    # the replayed prefix counts at its recorded cost: the resumed run spent the full run's cost
    assert resumed["budget"]["spent_usd"] == pytest.approx(full_cost, rel=1e-6)


async def test_resume_with_a_budget_still_too_small_stops_again(tmp_path: Path) -> None:
    full = await run_experiment(priced(), out_dir=tmp_path / "full", llm_factory=mind_factory)
    cost = full.manifest.llm_usage["total"]["cost_usd"]
    run = tmp_path / "run"
    with pytest.raises(RunInterrupted):
        await run_experiment(priced(cost * 0.3), out_dir=run, llm_factory=mind_factory)
    before = rows(run / "events.db")
    with pytest.raises(RunInterrupted) as again:
        await resume(run, llm_factory=mind_factory, budget_usd=cost * 0.6)
    assert again.value.reason == "budget"
    assert rows(run / "events.db") == before  # the original is untouched
    report = await resume(run, llm_factory=mind_factory, budget_usd=cost * 2)
    assert report.status == "completed"
    assert rows(run / "events.db") == rows(tmp_path / "full" / "events.db")


async def test_reservations_in_flight_are_those_the_stack_admits(tmp_path: Path) -> None:
    """A budget wraps each stack without losing its admission gate: the calls holding a
    reservation are at most the gate's size (concurrency + 8), not a whole phase's requests
    built at once (30 here; they reserved the budget together and stopped a run far short of
    its limit)."""

    class Peak(Budget):
        peak = 0

        def reserve(self, cost: float, label: str) -> None:
            super().reserve(cost, label)
            self.peak = max(self.peak, self.in_flight)

    class Slow:
        def __init__(self) -> None:
            self.inner = mind_factory("mind")

        @property
        def model(self) -> str:
            return self.inner.model

        async def complete(self, request: LLMRequest) -> Any:
            await asyncio.sleep(0.002)
            return await self.inner.complete(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    cfg = config(rounds=1, agents=30, coach=False)
    cfg = cfg.model_copy(update={"llm": cfg.llm.model_copy(update={"concurrency": 2})})
    ledger = Ledger(PriceTable(PRICES))
    budget = Peak(1e9, ledger)
    result = await run_experiment(
        cfg, out_dir=tmp_path / "r", llm_factory=lambda spec: Slow(), ledger=ledger, budget=budget
    )
    assert result.manifest.status == "completed"
    assert ledger.total().calls > 30
    assert 2 <= budget.peak <= 2 + 8


def test_cli_rejects_a_bad_budget(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[agents]\ncount = 2\npolicy = "baseline"\n[llm]\nbudget_usd = -1\n')
    out = subprocess.run(
        [sys.executable, "-m", "friendsim", "run", str(cfg), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "[llm].budget_usd" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "friendsim", "run", str(cfg), "--budget-usd", "abc"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "not a number" in out.stderr
    assert not (tmp_path / "r").exists()


def test_cli_budget_stop_then_resume_with_a_larger_budget(tmp_path: Path) -> None:
    with StubLLMServer(responder=mind_responder(0)) as stub:
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            '[experiment]\nname = "b"\nrounds = 3\nn_actions = 2\n[agents]\ncount = 4\n'
            f'[llm]\nprovider = "openai:{stub.openai_base_url}#gpt-4o-mini"\nbudget_usd = 0.002\n'
            '[llm.prices."openai:gpt-4o-mini"]\ninput = 0.15\noutput = 0.6\n'
            '[rewards]\nsentiment = "lexicon"\n'
        )
        run = tmp_path / "run"
        first = subprocess.run(
            [sys.executable, "-m", "friendsim", "run", str(cfg), "--out", str(run), "--quiet"],
            capture_output=True,
            text=True,
        )
        assert first.returncode == 130, first.stderr
        assert "stopped before exceeding the budget" in first.stderr
        assert f"friendsim run --resume {run} --budget-usd" in first.stderr
        stopped = json.loads((run / "manifest.json").read_text())
        assert stopped["status"] == "interrupted" and stopped["stop_reason"] == "budget"
        assert 0 < stopped["budget"]["spent_usd"] <= 0.002
        asked = len(stub.requests)
        again = subprocess.run(
            [sys.executable, "-m", "friendsim", "run", "--resume", str(run), "--budget-usd", "1"],
            capture_output=True,
            text=True,
        )
        assert again.returncode == 0, again.stderr
        done = json.loads((run / "manifest.json").read_text())
        assert done["status"] == "completed" and done["windows"] == 3
        assert done["budget"]["spent_usd"] > stopped["budget"]["spent_usd"]
        assert len(stub.requests) > asked


def test_progress_shows_spend_against_the_budget() -> None:
    from rich.console import Console

    from friendsim.runtime.progress import RichProgress

    ledger = Ledger(PriceTable({}))
    progress = RichProgress(ledger, budget=Budget(2.5, ledger, spent_before_usd=0.75),
                            console=Console(file=None, quiet=True))  # fmt: skip
    assert progress.counts.line().endswith(" $0.75/2.50")
    assert RichProgress(ledger, console=Console(quiet=True)).counts.line().endswith(" $0.00")
