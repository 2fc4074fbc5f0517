"""HTTP/2 against HTTP/1.1 for the model path: the client's CPU per request over real sockets.

The issue that made the model path lean asked to measure HTTP/2 "where the server offers it"
before choosing. This measures it: one server that speaks both (hypercorn, an ASGI server, in
its own process, so its CPU is not charged to the client; HTTP/2 over cleartext with prior
knowledge, as an inference server on a private network would be reached) answers every
``POST /v1/chat/completions`` with the same chat completion after ``--latency-ms``, and this
process sends the same requests (a plan-sized body, about 6 KB) through:

* ``lean``: :class:`friendsim.llm.http11.HTTP11Client`, the path friendsim takes for
  OpenAI-compatible servers (HTTP/1.1, one connection per request in flight);
* ``httpx-h1``: httpx's ``AsyncClient`` on HTTP/1.1 with a pool as large as the concurrency;
* ``httpx-h2``: httpx's ``AsyncClient`` on HTTP/2 (``http1=False, http2=True``: the ``h2``
  package), requests multiplexed as streams on as few connections as the server allows.

For each: requests per second and this process's CPU per request (``time.process_time`` around
the batch, the answers' JSON decoding included), at ``--concurrency`` in flight. Needs ``h2``
and ``hypercorn`` (the ``bench`` extra: ``pip install -e '.[bench]'``); without them it says so
and exits 2.

Usage: ``python bench/llm_http2.py [--quick] [--requests N] [--concurrency C] [--latency-ms L]``.
Prints ``uptime`` before and after; the final line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# A sibling script named like a stdlib module (bench/platform.py) must not shadow it.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

PATH = "/v1/chat/completions"
ANSWER = json.dumps(
    {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": json.dumps(
                        {"actions": [{"type": "POST", "topic": "climate", "tone": "neutral"}]}
                    ),
                },
            }
        ],
        "usage": {"prompt_tokens": 1500, "completion_tokens": 40, "total_tokens": 1540},
    }
).encode()


def body(i: int) -> bytes:
    """A plan-sized chat completion request (about 6 KB), distinct per ``i``."""
    return json.dumps(
        {
            "model": "bench-model",
            "messages": [
                {"role": "system", "content": f"You are agent a{i:05d}. " + "Persona. " * 400},
                {"role": "user", "content": "Your feed:\n" + "- a post about energy\n" * 80},
            ],
            "max_tokens": 256,
            "temperature": 0.7,
            "response_format": {"type": "json_object"},
        }
    ).encode()


# --- the server (its own process) -------------------------------------------------------------


def serve(port: int, latency_s: float) -> None:
    """Serve the fixed answer on 127.0.0.1:``port`` (HTTP/1.1 and h2c) ``latency_s`` after each
    request's body arrived."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        if latency_s:
            await asyncio.sleep(latency_s)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": ANSWER})

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.h2_max_concurrent_streams = 1000
    config.keep_alive_timeout = 60
    # by default 1,000: then the server's GOAWAY fails every stream in flight on the connection
    config.keep_alive_max_requests = 1 << 30
    config.accesslog = None
    config.errorlog = None
    asyncio.run(hypercorn_serve(app, config))  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError(f"the server on port {port} did not start")


# --- the clients ------------------------------------------------------------------------------

Post = Callable[[bytes], Awaitable[dict[str, Any]]]


async def measure(name: str, post: Post, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    sem = asyncio.Semaphore(concurrency)

    async def one(b: bytes) -> None:
        async with sem:
            answer = await post(b)
            assert answer["choices"][0]["message"]["content"]

    await asyncio.gather(*(one(b) for b in bodies[: min(200, len(bodies))]))  # warm the pools
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(b) for b in bodies))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {
        "path": name,
        "requests": len(bodies),
        "requests_per_s": round(len(bodies) / wall, 1),
        "cpu_ms_per_request": round(1000 * cpu / len(bodies), 4),
    }


async def run_all(port: int, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    import httpx

    from friendsim.llm.http11 import HTTP11Client

    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}

    lean = HTTP11Client(f"{base}/v1", headers={"authorization": "Bearer x"})

    async def post_lean(b: bytes) -> dict[str, Any]:
        reply = await lean.post_json("/chat/completions", b)
        return dict(json.loads(reply.body))

    out["lean"] = await measure("lean", post_lean, bodies, concurrency)
    out["lean"]["connections"] = lean.opened
    await lean.aclose()

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"authorization": "Bearer x", "content-type": "application/json"}
    for name, version in (("httpx-h1", "HTTP/1.1"), ("httpx-h2", "HTTP/2")):
        h2 = version == "HTTP/2"
        async with httpx.AsyncClient(
            base_url=base, limits=limits, http1=not h2, http2=h2
        ) as client:

            async def post_httpx(
                b: bytes, client: httpx.AsyncClient = client, version: str = version
            ) -> dict[str, Any]:
                r = await client.post(PATH, content=b, headers=headers)
                assert r.http_version == version
                return dict(r.json())

            out[name] = await measure(name, post_httpx, bodies, concurrency)
    return out


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 requests per path")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        serve(args.serve, args.latency_ms / 1000)
        return 0
    try:
        import h2  # noqa: F401
        import hypercorn  # noqa: F401
    except ImportError as exc:
        sys.stderr.write(f"llm_http2: needs h2 and hypercorn ({exc}): pip install -e '.[bench]'\n")
        return 2
    n = 1000 if args.quick else args.requests
    before = uptime()
    print(f"uptime before: {before}", flush=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--latency-ms", str(args.latency_ms)],
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        asyncio.run(wait_for(port))
        paths = asyncio.run(run_all(port, [body(i) for i in range(n)], args.concurrency))
    finally:
        server.terminate()
        server.wait()
    for fig in paths.values():
        print(
            f"{fig['path']:9s} {fig['requests_per_s']:8.1f} req/s  "
            f"{fig['cpu_ms_per_request']:.3f} ms CPU per request",
            flush=True,
        )
    after = uptime()
    print(f"uptime after: {after}")
    figures = {
        "bench": "llm_http2",
        "quick": args.quick,
        "concurrency": args.concurrency,
        "latency_ms": args.latency_ms,
        "uptime_before": before,
        **{name.replace("-", "_"): fig for name, fig in paths.items()},
        "h2_over_lean_cpu": round(
            paths["httpx-h2"]["cpu_ms_per_request"] / paths["lean"]["cpu_ms_per_request"], 2
        ),
        "h2_over_httpx_h1_cpu": round(
            paths["httpx-h2"]["cpu_ms_per_request"] / paths["httpx-h1"]["cpu_ms_per_request"], 2
        ),
        "uptime_after": after,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
