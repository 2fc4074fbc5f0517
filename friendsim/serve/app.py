"""The live view's routes (starlette): the log as Server-Sent Events, JSON digests, the page.

One run (``friendsim serve RUN_DIR``, ``friendsim run --serve``) is served at ``/``; a sweep
directory lists its runs at ``/`` and serves run ``i`` under ``/runs/i/`` with the same routes:

* ``GET events/stream?from=SEQ`` — ``text/event-stream``: one SSE event per log row, ``id`` the
  seq and ``data`` the row's JSONL form (exactly a line of ``friendsim log export``), catching up
  from ``SEQ`` (0 or 1: the whole log) and then following the log live; a ``Last-Event-ID``
  header (a reconnecting browser) resumes after that seq. Comment lines keep idle streams alive.
  ``&batch=1`` (opt-in; what the page reads) sends the same rows as fewer events: each event
  carries the rows read together (at most a page of the log while catching up), one ``data:``
  line per row in seq order, ``id`` the last row's seq, so ``Last-Event-ID`` resumes after the
  event. A JSONL line never holds a newline, so splitting an event's data on ``\\n`` gives its
  rows. Why: a browser's cost per event (parsing, dispatch, a call into the page's script) was
  most of the page's catch-up on a large log (150,381 rows: the page fully rendered after
  7.0-9.5 s with an event per row, 3.4-5.0 s with 301 batched events; BENCHMARKS.md).
* ``GET api/run`` — manifest summary and personas, and whether a process is writing the run
  now (``writing``: a manifest left at ``running`` by a killed run is said to be so);
  ``GET api/status`` — the same without ``agents`` (the personas: megabytes for a large run),
  what the page polls every 2 s;
  ``GET api/windows?from=W`` — per-window digests (:mod:`.digest`), with ``&agent=ID`` each
  window's rewards of that agent only;
  ``GET api/rows?from=SEQ&to=SEQ&limit=N`` — the newest ``N`` (at most 400) rows the page's
  timeline shows between two seqs, with their posts' votes and replies' parents' authors, or
  ``api/rows?agent=ID&to=SEQ`` the rows of that agent's page (:mod:`.rows`: the page keeps only
  the newest rows, so a long log costs it bounded memory); ``GET api/control`` /
  ``POST api/control`` — pause, resume, step (only beside a running experiment; 404 otherwise).
* ``GET /`` — the page; ``GET static/...`` — its script and style, shipped in the package.

Safety: the run directory is only ever read (:mod:`.logfile`); responses carry a
Content-Security-Policy allowing only this origin's script and style (no inline script, so agent
text can never run even if it reached the markup; the page also only ever sets it as text);
``Host`` must be the address served (no DNS rebinding); control requests must be JSON with an
``X-Friendsim-Control`` header, which a cross-site form or image cannot send, and at most
:data:`MAX_CONTROL_BODY` bytes (413 beyond). A ``from`` or ``Last-Event-ID`` that is not an
integer in SQLite's range, or a ``batch`` other than 0 or 1, is a 400 before any stream starts;
a broken run or sweep file is a 500 naming the file. Only a sweep's server has ``/runs/i/`` pages.
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
from friendsim.platform.events import line_utf8
from friendsim.rundir.layout import EVENTS_DB, MANIFEST, SWEEP_FILE
from friendsim.rundir.lock import holder
from friendsim.serve.digest import RunDigest
from friendsim.serve.follow import LogProblem, Notifier, StatWatcher, follow
from friendsim.serve.logfile import LogFile, LogReadError
from friendsim.serve.rows import RECENT, timeline
from friendsim.sweep.aggregate import SweepReadError, read_sweep
from friendsim.sweep.labels import labels_of_record

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
MAX_CONTROL_BODY = 64 * 1024
"""The largest control request body read (bytes); a larger one is answered 413 unread."""


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
            rels = [r["dir"] for r in read_sweep(p)["runs"]]
        except SweepReadError as exc:
            raise RunDirectoryError(str(exc)) from None
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


MAX_SEQ = 2**63 - 1
"""The largest seq SQLite can hold (a signed 64-bit INTEGER): larger numbers never reach it."""


def _count(name: str, raw: str, what: str, *, at_most: int = MAX_SEQ) -> int:
    """``raw`` as a non-negative integer of at most ``at_most`` (ASCII digits only).

    Raises :class:`ValueError` naming ``name`` and the value received, saying what is expected.
    """
    text = raw.strip()
    if text.isascii() and text.isdigit() and len(text) <= len(str(at_most)):
        value = int(text)
        if value <= at_most:
            return value
    raise ValueError(f"{name}={raw!r}: expected a non-negative integer {what} (0 to {at_most})")


def _from_seq(request: Request) -> int:
    """The first seq a stream sends: after a ``Last-Event-ID`` header when one is given (a
    reconnecting browser), else the ``from`` query parameter (default 1; 0 means 1 too).

    Raises :class:`ValueError` naming the header or parameter when it is not an integer in
    0 ... :data:`MAX_SEQ` (so nothing out of SQLite's range is ever queried).
    """
    last = request.headers.get("last-event-id")
    if last is not None and last.strip():
        return _count("Last-Event-ID", last, "seq", at_most=MAX_SEQ - 1) + 1
    return max(1, _count("from", request.query_params.get("from", "1"), "seq"))


async def _sse(
    src: RunSource, start: int, heartbeat: float, *, batch: bool = False
) -> AsyncIterator[bytes]:
    yield b"retry: 1000\n\n"
    async for rows in follow(src.log, src.notifier, from_seq=start, heartbeat=heartbeat):
        if not rows:
            yield b": keep-alive\n\n"
            continue
        if isinstance(rows[0], LogProblem):
            yield f"event: log-error\ndata: {json.dumps(rows[0].message)}\n\n".encode()
            continue
        if batch:
            text = f"id: {rows[-1][0]}\n" + "".join(f"data: {line}\n" for _, line in rows) + "\n"
        else:
            text = "".join(f"id: {seq}\ndata: {line}\n\n" for seq, line in rows)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a row holds a lone surrogate: send that row \u-escaped
            if batch:
                lines = b"".join(b"data: %s\n" % line_utf8(line) for _, line in rows)
                data = b"id: %d\n%s\n" % (rows[-1][0], lines)
            else:
                data = b"".join(_sse_event(seq, line) for seq, line in rows)
        yield data


def _sse_event(seq: int, line: str) -> bytes:
    """One SSE event of a log row, its line as :func:`~friendsim.platform.events.line_utf8`
    encodes it: the bytes ``friendsim log export`` writes for the row."""
    return b"id: %d\ndata: %s\n\n" % (seq, line_utf8(line))


def _batch(request: Request) -> bool:
    """The ``batch`` query parameter: ``1`` for many rows per event, ``0`` (default) one.

    Raises :class:`ValueError` naming the parameter and the value received otherwise.
    """
    raw = request.query_params.get("batch", "0")
    if raw not in ("0", "1"):
        raise ValueError(f"batch={raw!r}: expected 0 (one event per row) or 1 (rows batched)")
    return raw == "1"


async def _body_at_most(request: Request, cap: int) -> bytes | None:
    """The request's body, or ``None`` as soon as it is known to exceed ``cap`` bytes (by its
    ``Content-Length`` or while it streams in): an oversized body is never held in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _sweep_row(
    i: int, src: RunSource, outcome: Mapping[str, Any], labels: Mapping[str, str]
) -> dict[str, Any]:
    """One run of a sweep's list: ``status`` from its manifest (else from ``sweep.json``),
    ``writing`` whether a live process holds its lock now (as :meth:`RunDigest.info`), ``label``
    its cell's label (:func:`~friendsim.sweep.labels.labels_of_record`; ``cell`` stays the
    cell's directory name)."""
    writing = holder(src.run_dir) is not None  # before the manifest, as RunDigest.info
    manifest = run_manifest(src.run_dir) if src.run_dir.is_dir() else None
    totals: Mapping[str, int] = given(manifest, "totals") or {}
    usage: Mapping[str, Any] = given(manifest, "llm_usage") or {}
    row: dict[str, Any] = {
        "index": i,
        "dir": outcome.get("dir"),
        "cell": outcome.get("cell"),
        "label": labels.get(str(outcome.get("cell")), outcome.get("cell")),
        "rep": outcome.get("rep"),
        "seed": outcome.get("seed"),
        "status": given(manifest, "status") or outcome.get("status"),
        "writing": writing,
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
        """The run a request is about: the one run at ``/``, run ``i`` of a sweep under
        ``/runs/i/``; :class:`LookupError` (a 404) for anything else."""
        idx = request.path_params.get("idx")
        if target.sweep is None:
            if idx is not None:
                raise LookupError(f"no run {idx}: this server shows one run, at /")
            return target.runs[0]
        if idx is None:
            raise LookupError("this server shows a sweep: open a run from the list")
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
        if "idx" in request.path_params:
            try:
                source(request)
            except LookupError as exc:
                return error(404, str(exc))
        name = (
            "sweep.html"
            if target.sweep is not None and "idx" not in request.path_params
            else "index.html"
        )
        return Response(_static(name), media_type="text/html; charset=utf-8", headers=headers())

    async def static(request: Request) -> Response:
        if "idx" in request.path_params:
            try:
                source(request)
            except LookupError as exc:
                return error(404, str(exc))
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return error(404, f"no static file {name!r}")
        return Response(_static(name), media_type=STATIC_FILES[name], headers=headers())

    async def stream(request: Request) -> Response:
        try:
            src = source(request)
            start = _from_seq(request)
            batch = _batch(request)
        except (LookupError, ValueError) as exc:
            return error(400 if isinstance(exc, ValueError) else 404, str(exc))
        return StreamingResponse(
            _sse(src, start, heartbeat, batch=batch),
            media_type="text/event-stream",
            headers=headers({"X-Accel-Buffering": "no"}),
        )

    async def run_info(request: Request) -> Response:
        return await _info(request, agents=True)

    async def run_status(request: Request) -> Response:
        return await _info(request, agents=False)

    async def _info(request: Request, *, agents: bool) -> Response:
        try:
            src = source(request)
            info = await asyncio.to_thread(src.digest.info, agents=agents)
        except LookupError as exc:
            return error(404, str(exc))
        except (RunDirectoryError, LogReadError) as exc:
            return error(500, str(exc))
        info["control"] = src.gate is not None
        return JSONResponse(info, headers=headers())

    async def windows(request: Request) -> Response:
        try:
            src = source(request)
            first = _count("from", request.query_params.get("from", "1"), "window number")
        except LookupError as exc:
            return error(404, str(exc))
        except ValueError as exc:
            return error(400, str(exc))
        agent = request.query_params.get("agent")
        try:  # errors from here on are the run directory's, never the client's
            rows = await asyncio.to_thread(src.digest.windows_from, first)
        except (RunDirectoryError, LogReadError) as exc:
            return error(500, str(exc))
        if agent is not None:
            rows = [
                {**w, "rewards": {a: r for a, r in w["rewards"].items() if a == agent}}
                for w in rows
            ]
        return JSONResponse({"windows": rows}, headers=headers())

    async def log_rows(request: Request) -> Response:
        q = request.query_params
        try:
            src = source(request)
            lo = _count("from", q.get("from", "0"), "seq")
            hi = _count("to", q["to"], "seq") if "to" in q else None
            limit = _count("limit", q.get("limit", str(RECENT)), "row count", at_most=RECENT)
        except LookupError as exc:
            return error(404, str(exc))
        except ValueError as exc:
            return error(400, str(exc))
        try:
            body = await asyncio.to_thread(
                timeline, src.log, lo=lo, hi=hi, limit=limit, agent=q.get("agent")
            )
        except LogReadError as exc:
            return error(500, str(exc))
        return JSONResponse(body, headers=headers())

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
            raw = await _body_at_most(request, MAX_CONTROL_BODY)
            if raw is None:
                return error(413, f"control request body over {MAX_CONTROL_BODY} bytes")
            try:
                body = json.loads(raw)
                action = body["action"]
            except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: too deep
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
            body = await asyncio.to_thread(read_sweep, target.sweep)
        except SweepReadError as exc:  # names sweep.json and the key
            return error(500, str(exc))
        outcomes = body["runs"]
        labels = labels_of_record(body["spec"])
        try:
            rows = [
                await asyncio.to_thread(
                    _sweep_row, i, src, outcomes[i] if i < len(outcomes) else {}, labels
                )
                for i, src in enumerate(target.runs)
            ]
        except (OSError, ValueError, LogReadError) as exc:  # ValueError: RunDirectoryError
            return error(500, f"{target.sweep}: {exc}")
        return JSONResponse(
            {
                "name": body["spec"].get("name") or target.sweep.name,
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
        Route("/api/status", run_status),
        Route("/api/windows", windows),
        Route("/api/rows", log_rows),
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
