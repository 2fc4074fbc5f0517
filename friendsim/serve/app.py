"""The live view's routes (starlette): the log as Server-Sent Events, JSON digests, the page.

One run (``friendsim serve RUN_DIR``, ``friendsim run --serve``) is served at ``/``; a sweep
directory lists its runs at ``/`` and serves run ``i`` under ``/runs/i/`` with the same routes:

* ``GET events/stream?from=SEQ`` — ``text/event-stream``: one SSE event per log row, ``id`` the
  seq and ``data`` the row's JSONL form (exactly a line of ``friendsim log export``), catching up
  from ``SEQ`` (0 or 1: the whole log) and then following the log live; a ``Last-Event-ID``
  header (a reconnecting browser) resumes after that seq. Comment lines keep idle streams alive.
* ``GET api/run`` — manifest summary and personas; ``GET api/windows?from=W`` — per-window
  digests (:mod:`.digest`); ``GET api/control`` / ``POST api/control`` — pause, resume, step
  (only beside a running experiment; 404 otherwise).
* ``GET /`` — the page; ``GET static/...`` — its script and style, shipped in the package.

Safety: the run directory is only ever read (:mod:`.logfile`); responses carry a
Content-Security-Policy allowing only this origin's script and style (no inline script, so agent
text can never run even if it reached the markup; the page also only ever sets it as text);
``Host`` must be the address served (no DNS rebinding); control requests must be JSON with an
``X-Friendsim-Control`` header, which a cross-site form or image cannot send.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from friendsim.analysis.analyze import RunDirectoryError, given, run_manifest
from friendsim.rundir.layout import EVENTS_DB, MANIFEST, SWEEP_FILE
from friendsim.serve.digest import RunDigest
from friendsim.serve.follow import LogProblem, Notifier, StatWatcher, follow
from friendsim.serve.logfile import LogFile, LogReadError

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from friendsim.runtime.control import PauseGate

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "sweep.js": "text/javascript; charset=utf-8",
}
CONTROL_HEADER = "x-friendsim-control"


def _static(name: str) -> bytes:
    return resources.files("friendsim.serve").joinpath("static", name).read_bytes()


@dataclass(kw_only=True)
class RunSource:
    """One run directory as served: its log, digest, change notifier and optional controls."""

    run_dir: Path
    notifier: Notifier
    gate: PauseGate | None = None
    log: LogFile = field(init=False)
    digest: RunDigest = field(init=False)

    def __post_init__(self) -> None:
        self.log = LogFile(self.run_dir / EVENTS_DB)
        self.digest = RunDigest(self.run_dir)


@dataclass(kw_only=True)
class ServeTarget:
    """What a server shows: one run, or a sweep's runs (``sweep`` holds its directory)."""

    runs: list[RunSource]
    sweep: Path | None = None
    closers: list[Any] = field(default_factory=list)


def open_target(path: str | Path, *, poll_interval: float = 0.2) -> ServeTarget:
    """A run directory (``events.db`` or ``manifest.json``) or a sweep directory (``sweep.json``).

    An empty directory is accepted too: the view waits for a run to be written into it (open the
    page first, then ``friendsim run CONFIG --out DIR``).

    Raises :class:`RunDirectoryError` naming the path when it is neither.
    """
    p = Path(path)
    if not p.is_dir():
        what = (
            "not a directory (a run directory is expected)" if p.exists() else "no such directory"
        )
        raise RunDirectoryError(f"{p}: {what}")
    if (p / SWEEP_FILE).is_file():
        try:
            body = json.loads((p / SWEEP_FILE).read_text(encoding="utf-8"))
            rels = [str(r["dir"]) for r in body["runs"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunDirectoryError(f"{p / SWEEP_FILE}: not a readable sweep file: {exc}") from None
        runs = []
        for rel in rels:
            rd = (p / rel).resolve()
            if p.resolve() not in rd.parents:
                raise RunDirectoryError(f"{p / SWEEP_FILE}: run dir {rel!r} is outside the sweep")
            runs.append(_file_source(rd, poll_interval))
        return ServeTarget(runs=runs, sweep=p, closers=[r.notifier for r in runs])
    if not ((p / EVENTS_DB).is_file() or (p / MANIFEST).is_file()) and any(p.iterdir()):
        raise RunDirectoryError(f"{p}: not a run directory (no events.db or manifest.json)")
    src = _file_source(p, poll_interval)
    return ServeTarget(runs=[src], closers=[src.notifier])


def _file_source(run_dir: Path, interval: float) -> RunSource:
    return RunSource(
        run_dir=run_dir, notifier=StatWatcher(LogFile(run_dir / EVENTS_DB), interval=interval)
    )


def _from_seq(request: Request) -> int:
    last = request.headers.get("last-event-id")
    raw = request.query_params.get("from", "1")
    try:
        if last is not None and last.strip():
            return int(last) + 1
        value = int(raw)
    except ValueError:
        raise ValueError(f"from={raw!r}: expected a non-negative integer seq") from None
    if value < 0:
        raise ValueError(f"from={raw!r}: expected a non-negative integer seq")
    return max(1, value)


async def _sse(src: RunSource, start: int, heartbeat: float) -> AsyncIterator[bytes]:
    yield b"retry: 1000\n\n"
    async for rows in follow(src.log, src.notifier, from_seq=start, heartbeat=heartbeat):
        if not rows:
            yield b": keep-alive\n\n"
            continue
        if isinstance(rows[0], LogProblem):
            yield f"event: log-error\ndata: {json.dumps(rows[0].message)}\n\n".encode()
            continue
        yield "".join(f"id: {seq}\ndata: {line}\n\n" for seq, line in rows).encode("utf-8")


def _sweep_row(i: int, src: RunSource, outcome: Mapping[str, Any]) -> dict[str, Any]:
    manifest = run_manifest(src.run_dir) if src.run_dir.is_dir() else None
    totals: Mapping[str, int] = given(manifest, "totals") or {}
    usage: Mapping[str, Any] = given(manifest, "llm_usage") or {}
    row: dict[str, Any] = {
        "index": i,
        "dir": outcome.get("dir"),
        "cell": outcome.get("cell"),
        "rep": outcome.get("rep"),
        "seed": outcome.get("seed"),
        "status": given(manifest, "status") or outcome.get("status"),
        "windows": given(manifest, "windows"),
        "events": totals.get("events"),
        "failures": totals.get("failures"),
        "cost_usd": (usage.get("total") or {}).get("cost_usd"),
        "final_reward": None,
    }
    if src.log.exists():
        windows = src.digest.windows_from(1)
        if windows:
            final = [r["total"] for r in windows[-1]["rewards"].values()]
            row["final_reward"] = sum(final) / len(final) if final else None
    return row


def build_app(
    target: ServeTarget,
    *,
    allowed_hosts: list[str] | None = None,
    heartbeat: float = 15.0,
) -> Starlette:
    """The ASGI app for ``target`` (starlette is imported here: the ``serve`` extra)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route

    def source(request: Request) -> RunSource:
        idx = request.path_params.get("idx")
        if target.sweep is None or idx is None:
            if target.sweep is not None:
                raise LookupError("this server shows a sweep: open a run from the list")
            return target.runs[0]
        if not 0 <= int(idx) < len(target.runs):
            raise LookupError(f"no run {idx} in this sweep")
        return target.runs[int(idx)]

    def headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            **(extra or {}),
        }

    def error(status: int, msg: str) -> Response:
        return JSONResponse({"error": msg}, status_code=status, headers=headers())

    async def page(request: Request) -> Response:
        name = (
            "sweep.html"
            if target.sweep is not None and "idx" not in request.path_params
            else "index.html"
        )
        return Response(_static(name), media_type="text/html; charset=utf-8", headers=headers())

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return error(404, f"no static file {name!r}")
        return Response(_static(name), media_type=STATIC_FILES[name], headers=headers())

    async def stream(request: Request) -> Response:
        try:
            src = source(request)
            start = _from_seq(request)
        except (LookupError, ValueError) as exc:
            return error(400 if isinstance(exc, ValueError) else 404, str(exc))
        return StreamingResponse(
            _sse(src, start, heartbeat),
            media_type="text/event-stream",
            headers=headers({"X-Accel-Buffering": "no"}),
        )

    async def run_info(request: Request) -> Response:
        try:
            src = source(request)
            info = await asyncio.to_thread(src.digest.info)
        except LookupError as exc:
            return error(404, str(exc))
        except (RunDirectoryError, LogReadError) as exc:
            return error(500, str(exc))
        info["control"] = src.gate is not None
        return JSONResponse(info, headers=headers())

    async def windows(request: Request) -> Response:
        try:
            src = source(request)
            first = int(request.query_params.get("from", "1"))
            rows = await asyncio.to_thread(src.digest.windows_from, first)
        except LookupError as exc:
            return error(404, str(exc))
        except ValueError as exc:
            return error(400, f"from: {exc}")
        except (RunDirectoryError, LogReadError) as exc:
            return error(500, str(exc))
        return JSONResponse({"windows": rows}, headers=headers())

    async def control(request: Request) -> Response:
        try:
            src = source(request)
        except LookupError as exc:
            return error(404, str(exc))
        gate = src.gate
        if gate is None:
            return error(404, "no controls: this view follows a run written by another process")
        if request.method == "POST":
            if request.headers.get(CONTROL_HEADER) != "1" or not request.headers.get(
                "content-type", ""
            ).startswith("application/json"):
                return error(403, "control requests need JSON and the X-Friendsim-Control header")
            try:
                body = json.loads(await request.body())
                action = body["action"]
            except (ValueError, KeyError, TypeError):
                return error(400, 'expected {"action": "pause" | "resume" | "step"}')
            match action:
                case "pause":
                    gate.pause()
                case "resume":
                    gate.resume()
                case "step":
                    gate.step()
                case _:
                    return error(400, f"unknown action {action!r}; use pause, resume or step")
        return JSONResponse(gate.state(), headers=headers())

    async def sweep_info(request: Request) -> Response:
        if target.sweep is None:
            return error(404, "this server shows one run, not a sweep")
        try:
            body = json.loads((target.sweep / SWEEP_FILE).read_text(encoding="utf-8"))
            outcomes = body.get("runs") or []
            rows = [
                await asyncio.to_thread(
                    _sweep_row, i, src, outcomes[i] if i < len(outcomes) else {}
                )
                for i, src in enumerate(target.runs)
            ]
        except (OSError, ValueError, RunDirectoryError, LogReadError) as exc:
            return error(500, f"{target.sweep}: {exc}")
        return JSONResponse(
            {
                "name": (body.get("spec") or {}).get("name") or target.sweep.name,
                "status": body.get("status"),
                "runs": rows,
            },
            headers=headers(),
        )

    async def favicon(request: Request) -> Response:
        return PlainTextResponse("", status_code=204, headers=headers())

    run_routes = [
        Route("/", page),
        Route("/events/stream", stream),
        Route("/api/run", run_info),
        Route("/api/windows", windows),
        Route("/api/control", control, methods=["GET", "POST"]),
        Route("/static/{name}", static),
    ]
    routes = [
        *run_routes,
        Route("/api/sweep", sweep_info),
        Route("/favicon.ico", favicon),
        Mount("/runs/{idx:int}", routes=run_routes),
    ]
    middleware = []
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))

    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for c in target.closers:
                await c.aclose()

    from contextlib import asynccontextmanager

    return Starlette(routes=routes, middleware=middleware, lifespan=asynccontextmanager(lifespan))
