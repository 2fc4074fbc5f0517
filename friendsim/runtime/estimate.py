"""``friendsim run CONFIG --estimate``: requests, tokens and cost of a run before spending anything.

The estimate is a dry run: the experiment is executed in a temporary directory with every
provider replaced by the scripted stand-in (:func:`~friendsim.runtime.scripted_mind.plausible_responder`,
valid answers, instant), under the provider's own name, so the real prompt builder, memory,
schemas and coach produce exactly the requests a run with those answers would send. No key, no
network and no model are needed. Each request is counted with
:func:`~friendsim.llm.tokens.provider_input_tokens` (characters per token, plus the role markup
and the structured-output schema the hosted APIs bill) and priced by
:func:`~friendsim.llm.estimate.price_requests`: live or batch, with or without prompt caching.

Wakes are not estimated from the configured rates: the dry run draws them as the run does
(same seed, same slices), so its requests follow the wakes the run will carry out. In continuous
mode several wakes of an agent in one ``tick`` slice count as one, so that is fewer than
``wake_rate`` × agents × windows when ``tick`` is coarse; the estimate shows both, with the
expected figures of :func:`~friendsim.runtime.wakes.expected_wakes`.

What it cannot know: a real model's answers steer the run (how many comments and DMs it plans,
how often it must be re-asked), and real answers are usually longer than the stand-in's, so
output tokens are also given as their upper bound (``max_tokens`` of every request).

Output: one line per provider and model, then a last line holding one JSON object with
``requests``, ``input_tokens``, ``output_tokens`` and ``cost_usd`` (the run as configured:
prompt caching on, batch prices when ``[llm].batch`` applies: in rounds mode, to the requests of
providers that send batches, :func:`~friendsim.llm.batch.spec_batches`; an endpoint pool or a
local model is billed live), plus the four costs, the per-model rows, ``wakes`` (the agents'
wakes the dry run carried out, as a run's manifest counts them) and, in continuous mode,
``wakes_expected`` (:meth:`RunEstimate.to_json`); a line before it says what the slices lose.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from friendsim.llm.base import Completion, LLMRequest
from friendsim.llm.batch import spec_batches
from friendsim.llm.estimate import ModelEstimate, RequestCount, price_requests
from friendsim.llm.redact import mask_userinfo
from friendsim.llm.registry import parse_spec
from friendsim.llm.scripted import ScriptedLLM
from friendsim.llm.tokens import MESSAGE_OVERHEAD_TOKENS, estimate_tokens, provider_input_tokens
from friendsim.runtime.config import ExperimentConfig
from friendsim.runtime.engine import RunListener
from friendsim.runtime.scripted_mind import plausible_responder
from friendsim.runtime.wakes import ExpectedWakes


class CountingStandIn:
    """The provider of ``spec`` replaced by the scripted mind; records each request's counts
    (``batchable``: whether a batch run would send them in provider batches)."""

    def __init__(
        self, spec: str, sink: list[RequestCount], *, seed: int = 0, batchable: bool = True
    ) -> None:
        parsed = parse_spec(spec)
        self.batchable = batchable
        self.provider = parsed.provider
        self.name = parsed.model or "scripted"
        self._inner = ScriptedLLM(
            plausible_responder(seed), model=self.name, provider=self.provider
        )
        self._sink = sink
        self.max_output_tokens = 0

    @property
    def model(self) -> str:
        return self._inner.model

    async def complete(self, request: LLMRequest) -> Completion:
        completion = await self._inner.complete(request)
        prefix = 0
        if request.system:
            prefix = estimate_tokens(request.system) + MESSAGE_OVERHEAD_TOKENS
        self._sink.append(
            RequestCount(
                provider=self.provider,
                model=self.name,
                label=request.label,
                prefix_key=hashlib.sha256(request.system.encode("utf-8")).hexdigest(),
                prefix_tokens=prefix,
                input_tokens=provider_input_tokens(request, self.provider),
                output_tokens=estimate_tokens(completion.text),
                batchable=self.batchable,
            )
        )
        self.max_output_tokens += request.max_tokens
        return completion

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Wakes(RunListener):
    """Keeps the expected wakes of the whole run a continuous dry run reports."""

    def __init__(self) -> None:
        self.run: ExpectedWakes | None = None

    def wakes_expected(self, *, window: ExpectedWakes, run: ExpectedWakes) -> None:
        self.run = run


@dataclass(frozen=True, kw_only=True, slots=True)
class RunEstimate:
    """The priced dry run: per-model rows and what the config would actually pay."""

    rows: tuple[ModelEstimate, ...]
    batch: bool
    batchable: bool
    max_output_tokens: int
    windows: int
    live_specs: tuple[str, ...] = ()
    """Specs asked in the dry run whose providers send no batches (priced live in batch mode)."""
    wakes: int = 0
    """The agents' wakes the dry run carried out: the run's with the same seed (its manifest's
    ``totals.wakes``), unless real answers change who wakes (a moderator's suspensions)."""
    expected: ExpectedWakes | None = None
    """Continuous mode: the whole run's expected wakes, configured and acted."""

    @property
    def cost_usd(self) -> float:
        """The run as configured: prompt caching on; batch prices when batch mode applies."""
        if self.batch and self.batchable:
            return sum(r.cost_batch_cached_usd for r in self.rows)
        return sum(r.cost_cached_usd for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": sum(r.requests for r in self.rows),
            "input_tokens": sum(r.input_tokens for r in self.rows),
            "output_tokens": sum(r.output_tokens for r in self.rows),
            "output_tokens_max": self.max_output_tokens,
            "cached_input_tokens": sum(r.cached_input_tokens for r in self.rows),
            "cost_usd": round(self.cost_usd, 6),
            "cost_live_uncached_usd": round(sum(r.cost_usd for r in self.rows), 6),
            "cost_live_cached_usd": round(sum(r.cost_cached_usd for r in self.rows), 6),
            "cost_batch_uncached_usd": round(sum(r.cost_batch_usd for r in self.rows), 6),
            "cost_batch_cached_usd": round(sum(r.cost_batch_cached_usd for r in self.rows), 6),
            "batch": self.batch,
            "batchable": self.batchable,
            "windows": self.windows,
            "wakes": self.wakes,
            "wakes_expected": None if self.expected is None else _wakes_json(self.expected),
            "unpriced_models": [f"{r.provider}:{r.model}" for r in self.rows if not r.priced],
            "by_model": [r.to_json() for r in self.rows],
        }


def _wakes_json(e: ExpectedWakes) -> dict[str, Any]:
    """``wakes_expected``: the run's wakes the rates ask for (``configured``) and those expected
    to be acted (``acting``), for every agent and for the most active 1 %."""
    return {
        "tick": e.tick,
        "configured": round(e.configured, 1),
        "acting": round(e.acting, 1),
        "lost_share": round(e.lost_share, 4),
        "top_agents": e.top_agents,
        "top_configured": round(e.top_configured, 1),
        "top_acting": round(e.top_acting, 1),
        "top_lost_share": round(e.top_lost_share, 4),
    }


async def estimate_run(
    cfg: ExperimentConfig,
    *,
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> RunEstimate:
    """Dry-run ``cfg`` with stand-in models and price what it asked (see the module docstring)."""
    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.llm_stacks import make_ledger

    dry = cfg.model_copy(
        update={
            "llm": cfg.llm.model_copy(update={"cache": "off", "budget_usd": None, "batch": False})
        }
    )
    sink: list[RequestCount] = []
    stand_ins: list[CountingStandIn] = []
    specs: set[str] = set()

    fleet = cfg.llm.endpoints_file is not None

    def factory(spec: str) -> CountingStandIn:
        llm = CountingStandIn(spec, sink, batchable=spec_batches(spec, fleet=fleet))
        specs.add(spec)
        stand_ins.append(llm)
        return llm

    wakes = _Wakes()
    with tempfile.TemporaryDirectory(prefix="friendsim-estimate-") as tmp:
        result = await run_experiment(
            dry,
            out_dir=Path(tmp) / "run",
            config_path=config_path,
            llm_factory=factory,
            env=env,
            listener=wakes,
        )
    batchable = cfg.experiment.mode == "rounds"
    rows = price_requests(sink, make_ledger(cfg).prices, batchable=batchable)
    return RunEstimate(
        rows=tuple(rows),
        batch=cfg.llm.batch,
        batchable=batchable,
        max_output_tokens=sum(s.max_output_tokens for s in stand_ins),
        windows=len(result.windows),
        live_specs=tuple(sorted({s for s in specs if not spec_batches(s, fleet=fleet)})),
        wakes=result.manifest.totals.get("wakes", 0),
        expected=wakes.run,
    )


def format_estimate(est: RunEstimate) -> list[str]:
    """Human-readable lines (one per model) followed by the JSON line."""
    lines = []
    for r in est.rows:
        money = (
            f"live ${r.cost_usd:.4f} (cached ${r.cost_cached_usd:.4f}), "
            f"batch ${r.cost_batch_usd:.4f} (cached ${r.cost_batch_cached_usd:.4f})"
            if r.priced
            else "no price known (counted as $0)"
        )
        lines.append(
            f"{r.provider}:{r.model}: {r.requests:,} requests, {r.input_tokens:,} input tokens "
            f"({r.cached_input_tokens:,} from the prompt cache), {r.output_tokens:,} output "
            f"tokens; {money}"
        )
    if not est.rows:
        lines.append("no LLM requests (baseline policy without an LLM coach)")
    if est.batch and not est.batchable:
        lines.append("note: [llm].batch applies to rounds mode only; priced live")
    elif est.batch and est.live_specs:
        lines.append(
            "note: [llm].batch: no batch API for "
            + ", ".join(mask_userinfo(s) for s in est.live_specs)
            + " (an endpoint pool or a model without one); priced live"
        )
    if (e := est.expected) is not None:
        agents = "agent" if e.top_agents == 1 else "agents"
        lines.append(
            f"wakes: {est.wakes:,} in the dry run; expected {e.acting:,.0f} of the "
            f"{e.configured:,.0f} the rates ask for: tick = {e.tick:g} s loses "
            f"{e.lost_share:.0%} (several wakes of an agent in one slice count as one), "
            f"{e.top_lost_share:.0%} for the most active 1% ({e.top_agents} {agents})"
        )
    lines.append(json.dumps(est.to_json(), sort_keys=True))
    return lines


def handle_estimate(cfg: ExperimentConfig, config_path: str | Path) -> int:
    """``friendsim run CONFIG --estimate``: print the estimate; exit code 0, or 2 on bad input."""
    from friendsim.agents.persona_io import PersonaFileError
    from friendsim.llm.errors import ProviderConfigError
    from friendsim.runtime.config import ConfigError

    try:
        est = asyncio.run(estimate_run(cfg, config_path=config_path))
    except (ConfigError, PersonaFileError, ProviderConfigError) as exc:
        sys.stderr.write(f"friendsim run --estimate: {exc}\n")
        return 2
    sys.stdout.write("\n".join(format_estimate(est)) + "\n")
    return 0
