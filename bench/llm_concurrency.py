"""Throughput and CPU overhead of the LLM wrapper stack.

Drives the full stack built by ``friendsim.llm.build_llm`` (accounting -> retry -> RPM/TPM
limits -> concurrency cap -> provider) with the scripted provider at a fixed latency:

1. latency run: N requests at concurrency C against a 200 ms provider. Target: achieved
   throughput >= 90 % of C / latency (the stack keeps the configured concurrency busy).
2. zero-latency run: the same stack with an instant provider; process CPU time per call is the
   layer's own cost (target <= 1 ms). The bare scripted provider's cost is reported beside it.
3. (full run only) the latency run again with the SQLite read-through cache recording answers.
4. ``--http``: the OpenAI provider over real HTTP against the stub server of
   ``tests/llm_stub_server.py`` run in a child process, at ``--http-concurrency`` (default 64,
   so that the single-process stdlib stub is not the bottleneck): throughput and the client
   process's CPU per call (HTTP path + our layer; the stub's CPU is in the other process), for
   the provider's HTTP paths in the same run: ``sdk`` (the official SDK's client), ``httpcore``
   (:mod:`friendsim.llm.lean_http`: httpx's core on a free list) and ``lean``
   (:mod:`friendsim.llm.http11`, the default for OpenAI-compatible servers), and the ratios.

Usage: ``python bench/llm_concurrency.py [--quick] [--requests N] [--concurrency C]``.
The final line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# A sibling script named like a stdlib module (bench/platform.py) must not shadow it.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from friendsim.llm import LLMRequest, ScriptedLLM, build_llm, user

STUB_SERVER = Path(__file__).resolve().parent.parent / "tests" / "llm_stub_server.py"
SCHEMA = {
    "type": "object",
    "properties": {"actions": {"type": "array"}, "reason": {"type": "string"}},
    "required": ["actions"],
}
ANSWER = {
    "actions": [
        {"type": "POST", "topic": "climate", "tone": "supportive", "mention": None},
        {"type": "COM", "target": 17, "topic": "energy", "tone": "neutral", "mention": "ada"},
        {"type": "DM", "to": "bo", "topic": "policy", "tone": "critical", "mention": None},
    ],
    "reason": "mix of posting and engaging with peers I follow " * 3,
}
SYSTEM = "You are agent {i}, a persona with a stable description and rules. " * 30


def make_requests(n: int) -> list[LLMRequest]:
    return [
        LLMRequest(
            system=SYSTEM.format(i=i % 30),
            messages=(user(f"Round {i // 30}: here is your feed ... " * 12),),
            json_schema=SCHEMA,
            seed=i,
            label="plan",
        )
        for i in range(n)
    ]


async def run_stack(
    requests: list[LLMRequest],
    *,
    latency_s: float,
    concurrency: int,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    provider = ScriptedLLM(default=ANSWER, latency_s=latency_s, model="bench")
    stack = await build_llm(
        provider,
        concurrency=concurrency,
        rpm=100_000_000,
        tpm=10_000_000_000,
        retries=4,
        cache_path=None if cache_dir is None else cache_dir / "llm_cache.sqlite",
        cache_mode="off" if cache_dir is None else "read_through",
        prices={"scripted:bench": {"input": 0.15, "output": 0.60}},
    )
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    results = await asyncio.gather(*(stack.complete(r) for r in requests))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await stack.aclose()
    assert all(r.parsed == ANSWER for r in results)
    total = stack.ledger.total()
    tokens = total.usage.input_tokens + total.usage.output_tokens
    n = len(requests)
    return {
        "requests": n,
        "wall_s": round(wall, 4),
        "req_per_s": round(n / wall, 1),
        "tokens_per_s": round(tokens / wall, 1),
        "cpu_ms_per_call": round(cpu / n * 1000, 4),
        "max_in_flight": stack.concurrency.max_in_flight if stack.concurrency else None,
        "cost_usd": round(total.cost_usd, 6),
    }


async def start_stub(latency_ms: float) -> tuple[asyncio.subprocess.Process, int]:
    stub = STUB_SERVER
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(stub), "--latency-ms", str(latency_ms), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    port = int((await proc.stdout.readline()).decode().strip())
    return proc, port


async def run_http(
    requests: list[LLMRequest], *, latency_ms: float, concurrency: int, http_path: str
) -> dict[str, Any]:
    proc, port = await start_stub(latency_ms)
    try:
        stack = await build_llm(
            f"openai:http://127.0.0.1:{port}/v1#bench",
            concurrency=concurrency,
            retries=4,
            http_path=http_path,
        )
        await asyncio.gather(*(stack.complete(r) for r in requests[:50]))  # warm connections
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        results = await asyncio.gather(*(stack.complete(r) for r in requests))
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        await stack.aclose()
    finally:
        proc.terminate()
        await proc.wait()
    assert all(r.parsed is not None for r in results)
    total = stack.ledger.total()
    n = len(requests)
    return {
        "req_per_s": round(n / wall, 1),
        "ideal_req_per_s": round(concurrency / (latency_ms / 1000), 1) if latency_ms else None,
        "tokens_per_s": round((total.usage.input_tokens + total.usage.output_tokens) / wall, 1),
        "cpu_ms_per_call": round(cpu / n * 1000, 4),
    }


async def bare_provider_cpu(requests: list[LLMRequest]) -> float:
    provider = ScriptedLLM(default=ANSWER, model="bench")
    cpu0 = time.process_time()
    await asyncio.gather(*(provider.complete(r) for r in requests))
    return (time.process_time() - cpu0) / len(requests) * 1000


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller run, well under 60 s")
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--latency-ms", type=float, default=200.0)
    ap.add_argument("--http", action="store_true", help="also measure the OpenAI SDK over HTTP")
    ap.add_argument("--http-concurrency", type=int, default=64)
    args = ap.parse_args()
    load_before = os.getloadavg()
    # Quick: ten full waves of the concurrency (no partial last wave); full: the 5,000 asked for.
    n = args.requests or (10 * args.concurrency if args.quick else 5000)
    latency = args.latency_ms / 1000.0
    requests = make_requests(n)

    # Warm-up (imports, first-call paths) so the timed runs measure the steady state.
    await run_stack(requests[:300], latency_s=0.0, concurrency=args.concurrency)

    latency_run = await run_stack(requests, latency_s=latency, concurrency=args.concurrency)
    zero_run = await run_stack(requests, latency_s=0.0, concurrency=args.concurrency)
    bare_ms = await bare_provider_cpu(requests)
    ideal = args.concurrency / latency
    figures: dict[str, Any] = {
        "bench": "llm_concurrency",
        "quick": args.quick,
        "requests": n,
        "concurrency": args.concurrency,
        "latency_ms": args.latency_ms,
        "ideal_req_per_s": round(ideal, 1),
        "req_per_s": latency_run["req_per_s"],
        "throughput_ratio": round(latency_run["req_per_s"] / ideal, 4),
        "tokens_per_s": latency_run["tokens_per_s"],
        "max_in_flight": latency_run["max_in_flight"],
        "wall_s": latency_run["wall_s"],
        "cpu_ms_per_call_stack": zero_run["cpu_ms_per_call"],
        "cpu_ms_per_call_bare_provider": round(bare_ms, 4),
        "zero_latency_req_per_s": zero_run["req_per_s"],
    }
    if not args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            cached = await run_stack(
                requests, latency_s=latency, concurrency=args.concurrency, cache_dir=Path(tmp)
            )
        figures["with_cache_req_per_s"] = cached["req_per_s"]
        figures["with_cache_throughput_ratio"] = round(cached["req_per_s"] / ideal, 4)
    if args.http:
        http_n = min(n, 600 if args.quick else 2000)
        figures["http"] = {"requests": http_n, "concurrency": args.http_concurrency}
        for path in ("sdk", "httpcore", "lean"):
            timed = await run_http(
                requests[:http_n],
                latency_ms=args.latency_ms,
                concurrency=args.http_concurrency,
                http_path=path,
            )
            zero = await run_http(
                requests[:http_n], latency_ms=0.0, concurrency=args.http_concurrency, http_path=path
            )
            figures["http"][path] = {
                "req_per_s": timed["req_per_s"],
                "ideal_req_per_s": timed["ideal_req_per_s"],
                "throughput_ratio": round(timed["req_per_s"] / timed["ideal_req_per_s"], 4),
                "tokens_per_s": timed["tokens_per_s"],
                "cpu_ms_per_call": zero["cpu_ms_per_call"],
                "cpu_ms_per_call_at_latency": timed["cpu_ms_per_call"],
                "zero_latency_req_per_s": zero["req_per_s"],
            }
        http = figures["http"]
        http["lean_over_sdk_cpu"] = round(
            http["lean"]["cpu_ms_per_call"] / http["sdk"]["cpu_ms_per_call"], 4
        )
        http["lean_over_httpcore_cpu"] = round(
            http["lean"]["cpu_ms_per_call"] / http["httpcore"]["cpu_ms_per_call"], 4
        )
    figures["loadavg_before"] = [round(x, 2) for x in load_before]
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    figures["pass_throughput"] = figures["throughput_ratio"] >= 0.90
    figures["pass_cpu"] = figures["cpu_ms_per_call_stack"] <= 1.0
    print(
        f"{n} requests, concurrency {args.concurrency}, latency {args.latency_ms:.0f} ms: "
        f"{figures['req_per_s']} req/s ({figures['throughput_ratio']:.1%} of ideal {ideal:.0f}), "
        f"{figures['tokens_per_s']} tokens/s; CPU {figures['cpu_ms_per_call_stack']} ms/call "
        f"(bare provider {figures['cpu_ms_per_call_bare_provider']} ms)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
