"""Helpers of the live-view tests: real runs and real servers in subprocesses, SSE over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from friendsim.vocabulary import Tip

BASELINE = """
[experiment]
name = "{name}"
seed = {seed}
rounds = {rounds}
n_actions = 2
[agents]
count = {agents}
policy = "baseline"
[coach]
enabled = true
[ties]
thresholds = [0.05, 0.1]
"""


def write_config(
    path: Path, *, name: str = "live", seed: int = 3, rounds: int = 3, agents: int = 6
) -> Path:
    path.write_text(BASELINE.format(name=name, seed=seed, rounds=rounds, agents=agents))
    return path


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "friendsim", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def finished_run(tmp: Path, **kw: Any) -> Path:
    """A completed baseline run directory (written by ``friendsim run``)."""
    cfg = write_config(tmp / "cfg.toml", **kw)
    run = tmp / "run"
    proc = run_cli("run", str(cfg), "--out", str(run), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def _read_url(proc: subprocess.Popen[str], timeout: float = 90) -> str:
    """The URL a server announces on its first stdout line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "http://" in line:
            return line[line.index("http://") :].strip()
        if not line and proc.poll() is not None:
            break
    err = proc.stderr.read() if proc.stderr is not None else ""
    raise AssertionError(f"server did not announce a URL (rc={proc.poll()}): {err[-2000:]}")


@contextmanager
def background(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m friendsim ARGS`` in the background; yields (process, announced URL); ends it
    with SIGTERM (then SIGKILL) on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "friendsim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc, _read_url(proc)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str], timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def sse_lines(
    url: str,
    *,
    last_seq: int,
    from_seq: int = 0,
    headers: dict[str, str] | None = None,
    timeout: float = 120,
) -> list[tuple[int, str]]:
    """(id, data) of the SSE stream at ``url`` from ``from_seq`` until the event ``last_seq``."""

    async def go() -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout)) as client:
            async with client.stream(
                "GET", f"{url}events/stream", params={"from": from_seq}, headers=headers or {}
            ) as r:
                assert r.status_code == 200, await r.aread()
                assert r.headers["content-type"].startswith("text/event-stream")
                ident: int | None = None
                async for line in r.aiter_lines():
                    if line.startswith("id: "):
                        ident = int(line[4:])
                    elif line.startswith("data: "):
                        assert ident is not None
                        out.append((ident, line[6:]))
                        if ident >= last_seq:
                            return out
        return out

    return asyncio.run(asyncio.wait_for(go(), timeout))


def export_lines(run: Path, out: Path) -> list[str]:
    """``friendsim log export`` of the run (into ``out``, outside the run directory)."""
    proc = run_cli("log", "export", str(run / "events.db"), str(out))
    assert proc.returncode == 0, proc.stderr
    return out.read_text(encoding="utf-8").splitlines()


def snapshot(directory: Path) -> dict[str, tuple[int, int, str]]:
    """name -> (size, mtime_ns, sha256) of every file in ``directory``."""
    out = {}
    for p in sorted(directory.iterdir()):
        st = p.stat()
        out[p.name] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def events_digest(run: Path) -> str:
    """sha256 over the run's ``events`` rows (read-only, immutable: the run is finished)."""
    import sqlite3

    con = sqlite3.connect(
        f"{(run / 'events.db').absolute().as_uri()}?mode=ro&immutable=1", uri=True
    )
    try:
        h = hashlib.sha256()
        for row in con.execute("SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"):
            h.update(json.dumps(row).encode())
        return h.hexdigest()
    finally:
        con.close()


def control(url: str, action: str | None = None) -> dict[str, Any]:
    if action is None:
        return httpx.get(f"{url}api/control", timeout=30).json()
    r = httpx.post(
        f"{url}api/control",
        json={"action": action},
        headers={"X-Friendsim-Control": "1"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()


def count_rows(run: Path, kind: str) -> int:
    """Rows of ``kind`` committed so far in a run another process is writing (read-only)."""
    from friendsim.serve.logfile import LogFile

    log = LogFile(run / "events.db")
    return sum(1 for e in log.read_events(1, 10**9) if e.kind == kind)


def wait_for(predicate: Any, *, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


ARTIFACTS = Path(os.environ.get("FRIENDSIM_TEST_ARTIFACTS", "tmp/artifacts"))
"""Where browser tests save screenshots (relative to the working directory)."""


def tip(action: str, target: str | None) -> Tip:
    """A neutral coach tip to ``action`` ``target`` on topic ``t``."""
    return Tip.from_dict(
        {
            "action": action,
            "target": target,
            "topic": "t",
            "invite_mention": False,
            "tone": "neutral",
            "text": f"{action} {target}",
        }
    )
