"""``friendsim serve`` and ``friendsim run --serve`` over real HTTP on 127.0.0.1: the SSE stream
equals ``friendsim log export`` row for row (finished and live runs), a reconnect resumes after
``Last-Event-ID``, the run directory is never written, bad input gets a clear error, and the
pause gate holds a run between windows without changing its log."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from serve_support import (
    background,
    control,
    count_rows,
    events_digest,
    export_lines,
    finished_run,
    run_cli,
    snapshot,
    sse_lines,
    stop,
    wait_for,
    write_config,
)

pytest.importorskip("starlette", reason="the serve extra is part of the test install")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return finished_run(tmp_path_factory.mktemp("serve"), rounds=3, agents=6)


def test_sse_from_zero_equals_log_export_and_run_dir_untouched(
    run_dir: Path, tmp_path: Path
) -> None:
    before = snapshot(run_dir)
    assert not (run_dir / "events.db-wal").exists()
    with background("serve", str(run_dir), "--port", "0") as (_, url):
        assert url.startswith("http://127.0.0.1:")
        info = httpx.get(f"{url}api/run", timeout=30).json()
        last = info["last_seq"]
        assert info["status"] == "completed" and last > 50
        got = sse_lines(url, from_seq=0, last_seq=last)
        again = sse_lines(url, from_seq=1, last_seq=last)
        resumed = sse_lines(url, last_seq=last, headers={"Last-Event-ID": "40"})
        tail = sse_lines(url, from_seq=last - 4, last_seq=last)
        windows = httpx.get(f"{url}api/windows", params={"from": 2}, timeout=30).json()["windows"]
        bad = httpx.get(f"{url}events/stream", params={"from": "x"}, timeout=30)
        no_control = httpx.get(f"{url}api/control", timeout=30)
        page = httpx.get(url, timeout=30)
        rebinding = httpx.get(url, headers={"Host": "evil.example"}, timeout=30)
    assert snapshot(run_dir) == before  # nothing created, nothing modified
    exported = export_lines(run_dir, tmp_path / "export.jsonl")
    assert [line for _, line in got] == exported
    assert [seq for seq, _ in got] == list(range(1, len(exported) + 1))
    assert again == got
    assert resumed == got[40:]
    assert tail == got[last - 5 :]
    assert [w["window"] for w in windows] == [2, 3]
    assert all(
        set(r) == {"SOC", "INF", "PRE", "COORD", "EMO", "total"}
        for r in windows[0]["rewards"].values()
    )
    assert len(windows[0]["rewards"]) == 6
    assert bad.status_code == 400 and "from=" in bad.json()["error"]
    assert no_control.status_code == 404
    assert (
        page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    )
    assert '<script src="static/app.js"' in page.text
    assert rebinding.status_code == 400


def test_sse_follows_a_run_written_by_another_process(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "live.toml", rounds=6, agents=8, name="live")
    run = tmp_path / "run"
    run.mkdir()
    with background("serve", str(run), "--port", "0") as (_, url):
        writer = __import__("subprocess").Popen(
            [
                __import__("sys").executable,
                "-m",
                "friendsim",
                "run",
                str(cfg),
                "--out",
                str(run),
                "--quiet",
            ],
        )
        try:
            wait_for(lambda: (run / "events.db").exists(), what="the run to start")
            first = sse_lines(url, from_seq=0, last_seq=1)  # connected while the run is young
            assert writer.wait(timeout=300) == 0
        finally:
            stop(writer)  # type: ignore[arg-type]
        last = httpx.get(f"{url}api/run", timeout=30).json()["last_seq"]
        got = sse_lines(url, from_seq=0, last_seq=last)
    assert first[0][0] == 1
    assert [line for _, line in got] == export_lines(run, tmp_path / "export.jsonl")


def test_live_stream_sees_rows_while_they_are_written(tmp_path: Path) -> None:
    """One SSE connection opened before the run: it receives rows while the run is still going
    (120 rounds: two seconds of writing, so the stream's first rows come well before the end)."""
    import asyncio
    import subprocess
    import sys

    cfg = write_config(tmp_path / "live.toml", rounds=120, agents=10, name="live2")
    run = tmp_path / "run"
    run.mkdir()
    with background("serve", str(run), "--port", "0") as (_, url):
        writer = subprocess.Popen(
            [sys.executable, "-m", "friendsim", "run", str(cfg), "--out", str(run), "--quiet"]
        )

        async def watch() -> tuple[int, int, list[str]]:
            seen: list[str] = []
            during = 0
            try:
                async with httpx.AsyncClient(timeout=httpx.Timeout(300)) as client:
                    async with client.stream("GET", f"{url}events/stream?from=0") as r:
                        async for line in r.aiter_lines():
                            if line.startswith("data: "):
                                seen.append(line[6:])
                                if writer.poll() is None:
                                    during += 1
                                if '"kind":"window_ended"' in line and '"window":120' in line:
                                    break
                return await asyncio.to_thread(writer.wait, 300), during, seen
            finally:
                await asyncio.to_thread(stop, writer)  # type: ignore[arg-type]

        rc, during, seen = asyncio.run(watch())
    assert rc == 0
    assert during > 0  # rows arrived while the writer was still running
    exported = export_lines(run, tmp_path / "export.jsonl")
    assert seen == exported[: len(seen)]


def test_serve_rejects_a_non_run_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a run")
    proc = run_cli("serve", str(tmp_path), "--port", "0", timeout=120)
    assert proc.returncode == 2
    assert "not a run directory" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("serve", str(tmp_path / "missing"), "--port", "0", timeout=120)
    assert proc.returncode == 2 and "no such directory" in proc.stderr


def test_pause_holds_the_run_and_changes_nothing_in_the_log(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "gate.toml", rounds=4, agents=6, name="gate", seed=9)
    plain = tmp_path / "plain"
    assert run_cli("run", str(cfg), "--out", str(plain), "--quiet").returncode == 0
    served = tmp_path / "served"
    with background(
        "run", str(cfg), "--out", str(served), "--quiet", "--serve", "0", "--paused"
    ) as (proc, url):
        assert control(url)["paused"] is True
        wait_for(lambda: control(url)["waiting_before"] == 1, what="the gate to hold")
        held = 1
        started = count_rows(served, "window_started")
        assert started == 0 and count_rows(served, "agent_registered") == 6
        time.sleep(1.5)
        assert count_rows(served, "window_started") == started  # still held
        assert control(url, "pause")["paused"] is True  # pausing a held run keeps it held
        control(url, "step")
        wait_for(lambda: control(url)["waiting_before"] == held + 1, what="one window to run")
        assert count_rows(served, "window_started") == started + 1
        assert count_rows(served, "window_ended") == started + 1
        control(url, "resume")
        wait_for(lambda: count_rows(served, "window_ended") == 4, what="the run to finish")
        wait_for(lambda: '"completed"' in (served / "manifest.json").read_text(), what="manifest")
        rc = stop(proc)
    assert rc == 0
    assert events_digest(served) == events_digest(plain)


def test_run_serve_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    cfg = write_config(tmp_path / "c.toml")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_cli(
            "run", str(cfg), "--out", str(tmp_path / "r"), "--quiet", "--serve", str(port)
        )
    assert proc.returncode == 2
    assert "cannot listen" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()  # nothing started, nothing written


def test_serve_options_that_cannot_work_are_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml")
    proc = run_cli("run", str(cfg), "--out", str(tmp_path / "r"), "--quiet", "--paused")
    assert proc.returncode == 2 and "--paused needs --serve" in proc.stderr
    proc = run_cli("run", "--resume", str(tmp_path / "r"), "--serve", "0")
    assert proc.returncode == 2 and "--serve works with a new run" in proc.stderr
    proc = run_cli("serve", str(tmp_path), "--port", "70000")
    assert proc.returncode == 2 and "argument --port: 70000: expected 0..65535" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_rows_and_an_agents_windows(run_dir: Path) -> None:
    """``api/rows`` answers a bounded number of rows and refuses a larger ``limit`` or a bad
    seq with a 400 naming it; ``api/windows?agent=`` carries only that agent's rewards."""
    with background("serve", str(run_dir), "--port", "0") as (_, url):
        full = httpx.get(f"{url}api/windows", timeout=30).json()["windows"]
        mine = httpx.get(f"{url}api/windows", params={"agent": "a01"}, timeout=30).json()
        rows = httpx.get(f"{url}api/rows", params={"limit": 5, "to": 40}, timeout=30).json()
        too_many = httpx.get(f"{url}api/rows", params={"limit": 401}, timeout=30)
        bad_to = httpx.get(f"{url}api/rows", params={"to": "x"}, timeout=30)
    assert [w["rewards"] for w in mine["windows"]] == [{"a01": w["rewards"]["a01"]} for w in full]
    assert {k: v for k, v in mine["windows"][0].items() if k != "rewards"} == {
        k: v for k, v in full[0].items() if k != "rewards"
    }
    seqs = [r["seq"] for r in rows["rows"]]
    assert len(seqs) == 5 and seqs == sorted(seqs, reverse=True) and seqs[0] <= 40
    assert too_many.status_code == 400 and "limit='401'" in too_many.json()["error"]
    assert bad_to.status_code == 400 and "to='x'" in bad_to.json()["error"]
