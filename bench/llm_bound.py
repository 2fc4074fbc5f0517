"""Model-bound runs against the concurrency bound: friendsim end to end over real HTTP.

A run (the same assembly ``friendsim run`` uses: ``run_experiment``) with the LLM policy talks to
a stub OpenAI-compatible server on 127.0.0.1 that answers every request after ``--latency-ms``
(default 200 ms) with what the in-process scripted mind would answer (valid plans, texts and
votes; ``tests/llm_stub_server.py``'s ``mind_responder``). The server is an asyncio HTTP/1.1
server in its own process (``--serve``), so its CPU is not charged to friendsim; each run is a
child process too (``--child``), so its CPU comes from the OS (``os.wait4`` of that process,
and ``getrusage`` inside it around the run alone).

Settings (``--quick`` makes them smaller):

* ``rounds``: 200 agents × 3 rounds, 3 actions per round, full-visibility feed, every agent
  votes on every item of the round (no ``vote_limit``), rule coach;
* ``continuous``: 1,000 agents, one virtual hour cut into **one slice** (``tick`` = the
  window): every agent that wakes in the hour (3 wakes per hour on average, heterogeneous rates) plans and
  writes in that one slice, on the chrono feed.

Concurrency 128 (``[llm] concurrency``), retries on, cache off. Every request the provider
sends is timed (agent, start, end). A *phase* is the work between two points where the run
waits for all its requests (a round's planning, its voting; a slice). Per phase the
**phase-aware lower bound** is ``max(latency × longest per-agent chain of sequential requests,
latency × requests ÷ concurrency)``; a request is after another of the same agent in the
chain when it started after that one ended. Reported per phase and summed: requests, chain,
bound, the phase's wall (first request sent to last answer read), bound ÷ wall, the mean number
of requests in flight, the mean request time (above the latency: answers waiting for a busy
loop) and the ramp (until 90 % of the concurrency is in flight: prompts being built); for the
whole run: bound ÷ the run's wall (``run_experiment`` from call to return: set-up of the run
directory, agents and clients, every window, and the closing scoring and manifest), bound ÷
the windows' wall (from the scheduler's start to the last window's end: the simulation's own
work between phases, observations, applying, scoring, but not set-up and close, which are
reported beside it as ``setup_s`` and ``close_s``) and friendsim's CPU per request (the run's
CPU ÷ requests: everything the process did, simulation included). ``--http-path sdk`` measures the SDK's
client instead of the lean path (the default for OpenAI-compatible servers); ``--http-path
inproc`` answers in process (the same mind, the same latency, no HTTP): its CPU per request
without the mind's own CPU (timed around each answer) is the simulation and the LLM layers
alone, so ``lean`` minus ``inproc`` is what the HTTP path costs per request.

On the lean path the benchmark then measures a **floor** against the same server: a client
that does nothing but send the run's own request bodies, phase by phase, the same number of
requests as the run through the same number of keep-alive connections (one of them carrying
the phase's longest chain one request after another), on the same event loop (``floor_s``,
per phase and summed). ``bound_over_floor`` is the best bound ÷ wall any client gets from this
stub (the stub answers a little after its latency, and the requests come in whole waves);
``phase_wall_over_floor`` is how much longer friendsim's phases take than that client's.
``at_most_bound_over_wall`` is the bound ÷ the floor plus what must precede or follow the
requests whatever the engineering: building the personas (``personas_s``, timed alone after
the run: every wake rate is normalised by the population's mean activity, so no agent wakes
before all are drawn) and each window's end after its last answer (``window_ends_s``: the
rewards, coach contexts and tips read every event of the window): the most the run could reach
if opening the database, registering agents, observing and closing cost nothing.
``first_request_s`` is the time from the call to the first request sent.

The run's event loop is the one ``friendsim run`` uses (``--loop auto``: uvloop where installed,
:mod:`friendsim._loop`); ``--loop both`` runs each setting on the stdlib loop, then on uvloop,
and reports the ratio of their CPU per request.

Usage: ``python bench/llm_bound.py [--quick] [--settings rounds,continuous] [--http-path lean]
[--loop auto|uvloop|asyncio|both] [--repeat N]``. ``--repeat N`` runs each setting N times and
reports every run's ratio and the median run's figures: on a shared 2-core machine the ratio
moves with the machine's speed (CPU per request), by about ±0.01 between minutes.
Prints ``uptime`` before and after; the final line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

# A sibling script named like a stdlib module (bench/platform.py) must not shadow it.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

TESTS = Path(__file__).resolve().parent.parent / "tests"
CONCURRENCY = 128

SETTINGS: dict[str, dict[str, Any]] = {
    "rounds": {
        "experiment": {"name": "bound-rounds", "seed": 12, "mode": "rounds", "rounds": 3,
                       "n_actions": 3},
        "agents": {"count": 200, "policy": "llm"},
        "feed": {"ranker": "full", "limit": 90},
    },
    "continuous": {
        "experiment": {"name": "bound-continuous", "seed": 12, "mode": "continuous",
                       "n_actions": 1, "window_length": 3600.0, "duration": 3600.0,
                       "tick": 3600.0, "wake_rate": 3.0, "activity_sigma": 0.5},
        "agents": {"count": 1000, "policy": "llm"},
        "feed": {"ranker": "chrono", "limit": 20},
    },
}  # fmt: skip
QUICK_AGENTS = {"rounds": 40, "continuous": 200}
FLOOR_BODIES = 2000
"""The floor client sends the run's first this many request bodies, in turn."""


# --- the stub server (its own process) --------------------------------------------------------


def serve(latency_s: float, seed: int) -> None:
    """Answer OpenAI chat completions on 127.0.0.1 ``latency_s`` after each request arrived
    (the stub's own work on it included, so a burst of requests is not answered late); print the
    port."""
    sys.path.insert(0, str(TESTS))
    from llm_stub_server import StubLLMServer, StubReply, mind_responder

    stub = StubLLMServer(responder=mind_responder(seed))
    loop = asyncio.new_event_loop()

    class Conn(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            arrived = loop.time()  # the answer is due latency_s after its request arrived
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                head = self.buffer[:end].decode("latin-1").split("\r\n")
                length = 0
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if len(self.buffer) < end + 4 + length:
                    return
                body = self.buffer[end + 4 : end + 4 + length]
                self.buffer = self.buffer[end + 4 + length :]
                path = head[0].split()[1]
                status, payload, _ = stub._respond(path, json.loads(body), StubReply())
                reply = (
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(payload)}\r\n\r\n"
                ).encode() + payload
                loop.call_at(arrived + latency_s, self.send, reply)

        def send(self, reply: bytes) -> None:
            if not self.transport.is_closing():
                self.transport.write(reply)

    server = loop.run_until_complete(loop.create_server(Conn, "127.0.0.1", 0, backlog=4096))
    sys.stdout.write(f"{server.sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()
    loop.run_forever()


# --- one run (its own process) ----------------------------------------------------------------


def child(spec_path: Path) -> None:
    """Run the experiment described in ``spec_path``; write the timings next to it."""
    from friendsim._loop import LOOP_ENV, loop_name, run
    from friendsim.llm.base import LLM, Completion, LLMRequest
    from friendsim.llm.registry import create_llm
    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.config import parse_config
    from friendsim.runtime.engine import RunListener, WindowTally

    spec = json.loads(spec_path.read_text())
    timings: list[tuple[str, float, float]] = []
    marks: list[float] = []

    sent_at: contextvars.ContextVar[list[float]] = contextvars.ContextVar("sent_at")

    class Timed:
        """The provider, timing every request it sends: from the moment it takes a concurrency
        slot (where the provider holds the cap itself, as the lean path does, the moment its
        connection writes it) to its answer read."""

        def __init__(self, inner: LLM) -> None:
            self.inner = inner

        @property
        def model(self) -> str:
            return self.inner.model

        def cap_in_flight(self, limit: int) -> Any:
            cap = getattr(self.inner, "cap_in_flight", None)
            return cap(limit) if cap is not None else None

        async def complete(self, request: LLMRequest) -> Completion:
            stamps: list[float] = []
            sent_at.set(stamps)
            t0 = time.perf_counter()
            out = await self.inner.complete(request)
            t0 = stamps[-1] if stamps else t0
            timings.append((request.agent or request.system, t0, time.perf_counter()))
            return out

        async def aclose(self) -> None:
            await self.inner.aclose()

    started: list[float] = []
    ended: list[float] = []

    class Marks(RunListener):
        def run_started(self, *, windows: int, agents: int) -> None:
            started.append(time.perf_counter())

        def wake_applied(self, tally: WindowTally) -> None:
            marks.append(time.perf_counter())

        def window_ended(self, tally: WindowTally) -> None:
            marks.append(time.perf_counter())
            ended.append(time.perf_counter())

    mind_cpu = [0.0]

    def factory(provider_spec: str) -> LLM:
        if spec["http_path"] != "inproc":
            return Timed(create_llm(provider_spec, http_path=spec["http_path"]))
        from friendsim.llm.scripted import ScriptedLLM
        from friendsim.runtime.scripted_mind import plausible_responder

        mind = plausible_responder(spec["seed"])

        def answer(request: LLMRequest) -> Any:
            c0 = time.thread_time()
            try:
                return mind(request)
            finally:
                mind_cpu[0] += time.thread_time() - c0

        return Timed(ScriptedLLM(answer, latency_s=spec["latency_s"], model="bench-model"))

    bodies: list[str] = []
    if spec["http_path"] == "lean":
        from friendsim.llm.http11 import HTTP11Client

        post_json = HTTP11Client.post_json

        async def recording(self: HTTP11Client, path: str, body: bytes) -> Any:
            if len(bodies) < FLOOR_BODIES:
                bodies.append(body.decode("utf-8"))
            return await post_json(self, path, body)

        HTTP11Client.post_json = recording  # type: ignore[method-assign]

        from friendsim.llm import http11

        class StampedCall(http11._Call):
            __slots__ = ("stamps",)

            def __init__(self, request: bytes, reply: Any) -> None:
                super().__init__(request, reply)
                self.stamps = sent_at.get(None)

        send = http11._Connection.send

        def stamped_send(self: Any, call: Any, deadline: float) -> None:
            if call.stamps is not None:
                call.stamps.append(time.perf_counter())
            send(self, call, deadline)

        http11._Call = StampedCall  # type: ignore[misc]
        http11._Connection.send = stamped_send  # type: ignore[method-assign]

    cfg = parse_config(spec["config"])

    async def go() -> dict[str, Any]:
        loop = loop_name()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        result = await run_experiment(
            cfg, out_dir=spec["out_dir"], llm_factory=factory, listener=Marks()
        )
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        return {
            "loop": loop,
            "status": result.manifest.status,
            "t0": t0,
            "wall_s": wall,
            "run_cpu_s": cpu,
            "calls": result.manifest.llm_usage["total"]["calls"],
            "errors": result.manifest.llm_usage["total"].get("errors", 0),
        }

    profile = spec.get("profile")
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
    out = run(go(), env={LOOP_ENV: spec["loop"]})
    if profile:
        profiler.stop()
        Path(profile).parent.mkdir(parents=True, exist_ok=True)
        Path(profile).write_text(profiler.output_text(unicode=True, show_all=False))
    out["mind_cpu_s"] = mind_cpu[0]
    out["personas_s"] = personas_time(cfg)
    out["ended"] = ended
    out["setup_s"] = started[0] - out["t0"]
    out["windows_wall_s"] = ended[-1] - started[0]
    out["timings"] = timings
    out["marks"] = marks
    out["bodies"] = bodies
    spec_path.with_suffix(".out.json").write_text(json.dumps(out))


def personas_time(cfg: Any) -> float:
    """Seconds to build the run's personas alone (median of 3, after the run, so the run's own
    set-up is measured cold): no agent can wake before all are drawn, since every wake rate is
    normalised by the population's mean activity."""
    from friendsim.runtime.personas_build import build_personas

    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        build_personas(cfg, base=Path.cwd(), source="<bench>")
        times.append(time.perf_counter() - t0)
    return sorted(times)[1]


# --- the floor: a client that does nothing but send the run's requests ------------------------


def floor(spec_path: Path) -> None:
    """Send each phase's number of requests (the run's own bodies, in turn) through
    ``CONCURRENCY`` keep-alive connections to the stub, on the run's event loop, and time each
    phase from its first request to its last answer: what a client that costs nothing gets from
    this server for the same work. Writes the phase walls next to ``spec_path``."""
    from friendsim._loop import LOOP_ENV, run

    spec = json.loads(spec_path.read_text())
    port, bodies = spec["port"], [b.encode("utf-8") for b in spec["bodies"]]
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n"
    )
    requests = [head % len(b) + b for b in bodies]

    async def phase(n: int, chain: int) -> float:
        todo = iter(range(n))

        async def connection(steps: int | None) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                for i in todo if steps is None else range(steps):
                    writer.write(requests[i % len(requests)])
                    lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
                    length = next(
                        int(line.split(b":", 1)[1])
                        for line in lines
                        if line.lower().startswith(b"content-length:")
                    )
                    await reader.readexactly(length)
            finally:
                writer.close()

        t0 = time.perf_counter()
        await asyncio.gather(connection(chain), *(connection(None) for _ in range(CONCURRENCY - 1)))
        return time.perf_counter() - t0

    async def go() -> list[float]:
        return [await phase(p["requests"] - p["chain"], p["chain"]) for p in spec["phases"]]

    walls = run(go(), env={LOOP_ENV: spec["loop"]})
    spec_path.with_suffix(".out.json").write_text(json.dumps(walls))


# --- the analysis -----------------------------------------------------------------------------


def chain_length(spans: list[tuple[float, float]]) -> int:
    """Longest chain of one agent's requests where each started after the previous ended."""
    spans = sorted(spans)
    depth: list[int] = []
    for i, (start, _) in enumerate(spans):
        before = [depth[j] for j in range(i) if spans[j][1] <= start]
        depth.append(1 + max(before, default=0))
    return max(depth, default=0)


def ramp(items: list[tuple[str, float, float]], first: float) -> float | None:
    """Seconds from a phase's first request until 90 % of the concurrency is in flight (None:
    never): how long the run takes to build enough prompts to fill the slots."""
    edges = sorted([(s, 1) for _, s, _ in items] + [(e, -1) for _, _, e in items])
    level = 0
    for t, step in edges:
        level += step
        if level >= 0.9 * CONCURRENCY:
            return round(t - first, 3)
    return None


def phases(
    timings: list[tuple[str, float, float]], marks: list[float], latency_s: float
) -> list[dict[str, Any]]:
    """Split the requests at the run's phase ends and compute each phase's bound."""
    ends = sorted(marks)
    groups: dict[int, list[tuple[str, float, float]]] = defaultdict(list)
    for item in timings:
        k = next((i for i, m in enumerate(ends) if item[1] < m), len(ends))
        groups[k].append(item)
    out = []
    for k in sorted(groups):
        items = groups[k]
        per_agent: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for agent, start, end in items:
            per_agent[agent].append((start, end))
        chain = max(chain_length(s) for s in per_agent.values())
        n = len(items)
        bound = max(latency_s * chain, latency_s * n / CONCURRENCY)
        first = min(s for _, s, _ in items)
        wall = max(e for _, _, e in items) - first
        busy = sum(e - s for _, s, e in items)
        out.append({"requests": n, "agents": len(per_agent), "chain": chain,
                    "bound_s": round(bound, 3), "wall_s": round(wall, 3),
                    "bound_over_wall": round(bound / wall, 3),
                    "mean_in_flight": round(busy / wall, 1),
                    "mean_request_ms": round(busy / n * 1000, 1),
                    "ramp_s": ramp(items, first)})  # fmt: skip
    return out


def measure(
    setting: str, args: argparse.Namespace, port: int, tmp: Path, loop: str
) -> dict[str, Any]:
    config = json.loads(json.dumps(SETTINGS[setting]))
    if args.quick:
        config["agents"]["count"] = QUICK_AGENTS[setting]
        if setting == "rounds":
            config["experiment"]["rounds"] = 2
    if args.agents:
        config["agents"]["count"] = args.agents
    config["llm"] = {
        "provider": f"openai:http://127.0.0.1:{port}/v1#bench-model",
        "concurrency": CONCURRENCY,
        "retries": 4,
        "cache": "off",
    }
    config["coach"] = {"enabled": True, "kind": "rule"}
    config["rewards"] = {"sentiment": "lexicon"}
    spec_path = tmp / f"{setting}-{loop}.json"
    spec = {
        "config": config,
        "out_dir": str(tmp / f"{setting}-{loop}"),
        "http_path": args.http_path,
        "loop": loop,
        "latency_s": args.latency_ms / 1000.0,
        "seed": args.seed,
        "profile": str(args.profile / f"{setting}-{loop}.txt") if args.profile else None,
    }
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(spec_path)])
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{setting}: the run's process failed (status {status})")
    out = json.loads(spec_path.with_suffix(".out.json").read_text())
    latency = args.latency_ms / 1000.0
    per_phase = phases([tuple(t) for t in out["timings"]], out["marks"], latency)
    n = len(out["timings"])
    spans = sorted(end - start for _, start, end in out["timings"])
    bound = sum(p["bound_s"] for p in per_phase)
    llm_wall = sum(p["wall_s"] for p in per_phase)
    answers = sorted(end for _, _, end in out["timings"])
    window_ends = sum(m - max((e for e in answers if e <= m), default=m) for m in out["ended"])
    floors: dict[str, Any] = {}
    if out["bodies"]:
        floor_path = tmp / f"{setting}-{loop}-floor.json"
        floor_path.write_text(json.dumps({"port": port, "loop": loop, "bodies": out["bodies"],
                                          "phases": per_phase}))  # fmt: skip
        subprocess.run([sys.executable, __file__, "--floor", str(floor_path)], check=True)
        walls = json.loads(floor_path.with_suffix(".out.json").read_text())
        for p, w in zip(per_phase, walls, strict=True):
            p["floor_s"] = round(w, 3)
        floor_s = sum(walls)
        sequential = floor_s + out["personas_s"] + window_ends
        floors = {
            "floor_s": round(floor_s, 3),
            "bound_over_floor": round(bound / floor_s, 3),
            "phase_wall_over_floor": round(llm_wall / floor_s, 3),
            "at_most_bound_over_wall": round(bound / sequential, 3),
        }
    return {
        "loop": out["loop"],
        "agents": config["agents"]["count"],
        "status": out["status"],
        "requests": n,
        "llm_errors": out["errors"],
        "phases": len(per_phase),
        "bound_s": round(bound, 3),
        "wall_s": round(out["wall_s"], 3),
        "bound_over_wall": round(bound / out["wall_s"], 3),
        "setup_s": round(out["setup_s"], 3),
        "first_request_s": round(min(s for _, s, _ in out["timings"]) - out["t0"], 3),
        "personas_s": round(out["personas_s"], 3),
        "window_ends_s": round(window_ends, 3),
        "windows_wall_s": round(out["windows_wall_s"], 3),
        "close_s": round(out["wall_s"] - out["setup_s"] - out["windows_wall_s"], 3),
        "bound_over_windows_wall": round(bound / out["windows_wall_s"], 3),
        "phase_wall_s": round(llm_wall, 3),
        "bound_over_phase_wall": round(bound / llm_wall, 3),
        **floors,
        "cpu_ms_per_request": round(out["run_cpu_s"] / n * 1000, 4),
        "cpu_ms_per_request_without_mind": round(
            (out["run_cpu_s"] - out["mind_cpu_s"]) / n * 1000, 4
        ),
        "request_ms": {
            "mean": round(sum(spans) / n * 1000, 1),
            "p50": round(spans[n // 2] * 1000, 1),
            "p95": round(spans[int(n * 0.95)] * 1000, 1),
            "max": round(spans[-1] * 1000, 1),
        },
        "run_cpu_s": round(out["run_cpu_s"], 3),
        "process_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "per_phase": per_phase,
    }


def repeated(
    setting: str, args: argparse.Namespace, port: int, tmp: Path, loop: str
) -> dict[str, Any]:
    """:func:`measure` ``args.repeat`` times (each run in a folder of its own); the figures of
    the median run (by bound ÷ wall), with every run's ratio, CPU per request and load."""
    if args.repeat < 2:
        return measure(setting, args, port, tmp, loop)
    runs = []
    for k in range(args.repeat):
        where = tmp / f"run{k + 1}"
        where.mkdir(parents=True, exist_ok=True)
        fig = measure(setting, args, port, where, loop)
        fig["uptime"] = uptime()
        runs.append(fig)
    ranked = sorted(runs, key=lambda f: f["bound_over_wall"])
    median = ranked[len(ranked) // 2]
    return {
        **median,
        "runs": [f["bound_over_wall"] for f in runs],
        "runs_cpu_ms_per_request": [f["cpu_ms_per_request"] for f in runs],
        "runs_uptime": [f["uptime"] for f in runs],
        "bound_over_wall_median": median["bound_over_wall"],
    }


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs, well under 60 s")
    ap.add_argument("--settings", default="rounds,continuous")
    ap.add_argument("--agents", type=int, default=None, help="override the agent count")
    ap.add_argument("--latency-ms", type=float, default=200.0)
    ap.add_argument("--http-path", choices=("lean", "httpcore", "sdk", "inproc"), default="lean")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio", "both"),
        default="auto",
        help="the run's event loop (FRIENDSIM_LOOP; auto: uvloop where installed, as for "
        "`friendsim run`); both: each setting on asyncio, then on uvloop",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="write a pyinstrument profile of each run into this folder",
    )
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep each run's directory and its timings (<setting>-<path>.out.json) in this folder",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each setting this many times, one after the other, and report every run's "
        "bound ÷ wall and the figures of the median run (this machine's speed moves the ratio "
        "by about ±0.01 from minute to minute)",
    )
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--floor", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.floor is not None:
        floor(args.floor)
        return
    if args.serve:
        serve(args.latency_ms / 1000.0, args.seed)
        return
    if args.child is not None:
        child(args.child)
        return

    before = uptime()
    print(f"uptime before: {before}", flush=True)
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency-ms", str(args.latency_ms)],
        stdout=subprocess.PIPE,
    )
    figures: dict[str, Any] = {
        "bench": "llm_bound",
        "quick": args.quick,
        "latency_ms": args.latency_ms,
        "concurrency": CONCURRENCY,
        "http_path": args.http_path,
        "uptime_before": before,
    }
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with contextlib.ExitStack() as stack:
            tmp = args.keep or stack.enter_context(tempfile.TemporaryDirectory())
            Path(tmp).mkdir(parents=True, exist_ok=True)
            loops = ("asyncio", "uvloop") if args.loop == "both" else (args.loop,)
            for setting in args.settings.split(","):
                for loop in loops:
                    fig = repeated(setting, args, port, Path(tmp), loop)
                    name = f"{setting}@{loop}" if args.loop == "both" else setting
                    figures[name] = fig
                    print(
                        f"{name}: {fig['agents']} agents on {fig['loop']}, {fig['requests']} "
                        f"requests in "
                        f"{fig['phases']} phases; bound {fig['bound_s']} s, wall "
                        f"{fig['wall_s']} s -> {fig['bound_over_wall']} (windows only: "
                        f"{fig['bound_over_windows_wall']}, phases only: "
                        f"{fig['bound_over_phase_wall']}); "
                        f"CPU {fig['cpu_ms_per_request']} ms per request"
                        + (
                            f"; {len(fig['runs'])} runs: {fig['runs']}, median "
                            f"{fig['bound_over_wall_median']}"
                            if "runs" in fig
                            else ""
                        )
                        + (
                            f"; a client that only sends the same requests: {fig['floor_s']} "
                            f"s -> {fig['bound_over_floor']}"
                            if "floor_s" in fig
                            else ""
                        ),
                        flush=True,
                    )
                if args.loop == "both":
                    figures[f"{setting}_cpu_uvloop_over_asyncio"] = round(
                        figures[f"{setting}@uvloop"]["cpu_ms_per_request"]
                        / figures[f"{setting}@asyncio"]["cpu_ms_per_request"],
                        3,
                    )
    finally:
        server.terminate()
        server.wait()
    figures["uptime_after"] = uptime()
    print(f"uptime after: {figures['uptime_after']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
