"""LLM stacks as a config asks for them: the provider specs it resolves, the ledger that prices
them, and the one builder of stacks.

:func:`open_llm_stack` is the one place that builds an LLM stack (with ``build_llm``): a run
through the assembly (:mod:`friendsim.runtime.assembly`, one stack per distinct provider spec),
and the jobs beside a run (text-based tie scoring, the persona planner) call it directly, so
each gets ``[llm]``'s limits, retries, cache mode and batch polling the same way. ``auto``
specs resolve against the environment (:func:`~.config.resolve_auto_provider`).
:func:`outage_check` is the engine's view of the agents' circuit breakers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from friendsim.agents.persona import Persona
from friendsim.coach import kinds as coach_kinds
from friendsim.llm.accounting import DEFAULT_PRICES, Ledger, PriceTable
from friendsim.llm.base import LLM
from friendsim.llm.batch import BatchJournal, PollPolicy
from friendsim.llm.errors import ProviderStoppedError
from friendsim.llm.stack import LLMStack, build_llm
from friendsim.runtime.config import ExperimentConfig, resolve_auto_provider


def provider_specs(
    cfg: ExperimentConfig, personas: Sequence[Persona], env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Each agent's resolved provider spec (``auto`` replaced by the environment's choice)."""
    auto = resolve_auto_provider(env)
    out = {}
    for p in personas:
        spec = cfg.provider_for(p.id, p.dominant)
        out[p.id] = auto if spec == "auto" else spec
    return out


def coach_spec(cfg: ExperimentConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The resolved provider spec of the LLM coach (``None`` without one)."""
    if not (cfg.coach.enabled and coach_kinds.uses_llm(cfg.coach.kind)):
        return None
    spec = cfg.coach.provider or cfg.llm.provider
    return resolve_auto_provider(env) if spec == "auto" else spec


def make_ledger(cfg: ExperimentConfig) -> Ledger:
    """A ledger priced by ``[llm.prices]`` (USD per million tokens) over the built-in prices."""
    return Ledger(PriceTable({**DEFAULT_PRICES, **cfg.llm.prices}))


async def open_llm_stack(
    spec: str | LLM,
    cfg: ExperimentConfig,
    *,
    cache_path: Path | None,
    ledger: Ledger,
    batch_journal: BatchJournal | None = None,
) -> LLMStack:
    """The LLM stack for ``spec`` with the limits, retries and cache mode of ``cfg``'s ``[llm]``
    (and batch mode when a ``batch_journal`` is given).

    The one place that builds LLM stacks: runs use it through
    :func:`~friendsim.runtime.assembly.run_plan`; jobs beside a run (text-based tie scoring,
    the persona planner) call it directly.
    """
    cache_on = cfg.llm.cache != "off" and cache_path is not None
    return await build_llm(
        spec,
        breaker_threshold=cfg.llm.breaker_failures,
        concurrency=cfg.llm.concurrency,
        rpm=cfg.llm.rpm,
        tpm=cfg.llm.tpm,
        retries=cfg.llm.retries,
        retry_seed=cfg.experiment.seed,
        cache_path=cache_path if cache_on else None,
        cache_mode=cfg.llm.cache if cache_on else "off",
        ledger=ledger,
        batch_journal=batch_journal,
        batch_poll=PollPolicy(first=cfg.llm.batch_poll_s, most=60 * cfg.llm.batch_poll_s),
        **(cfg.llm.provider_options(spec) if isinstance(spec, str) else {}),
    )


def outage_check(stacks: Sequence[LLMStack]) -> Callable[[str], ProviderStoppedError | None]:
    """The engine's ``outage`` check over the agents' ``stacks``: every provider whose latest
    calls failed after retries is unreachable (its breaker opens); their errors as one."""

    def outage(lost: str) -> ProviderStoppedError | None:
        down = [e for st in stacks if st.breaker is not None and (e := st.breaker.outage(lost))]
        if len(down) <= 1:
            return down[0] if down else None
        return ProviderStoppedError("; ".join(map(str, down)), fatal=False, cause=down[0].cause)

    return outage
