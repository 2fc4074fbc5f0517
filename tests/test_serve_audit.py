"""The live view against hostile or broken input, over real HTTP on 127.0.0.1: sequence numbers
beyond SQLite's range, a log row UTF-8 cannot encode, a broken ``manifest.json`` or
``sweep.json``, a run killed with SIGKILL, oversized or too deep control requests, an empty
``--host`` and ``/runs/i/`` on a single-run server. Every error is a JSON answer, never a
traceback on the server's stderr."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_support import (
    background,
    count_rows,
    export_lines,
    finished_run,
    sse_lines,
    stop,
    wait_for,
    write_config,
)

pytest.importorskip("starlette", reason="the serve extra is part of the test install")
pytestmark = pytest.mark.slow

TOO_BIG = str(2**63)
"""One past the largest integer SQLite stores (a seq can never be this large)."""

CONTROL = {"X-Friendsim-Control": "1", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return finished_run(tmp_path_factory.mktemp("audit"), rounds=2, agents=4)


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def _status(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    """(status, content type, JSON body or None) of a GET that may start a never-ending stream:
    only a non-200 answer's body is read."""
    with httpx.stream("GET", url, headers=headers or {}, timeout=30) as r:
        if r.status_code == 200:
            return r.status_code, r.headers["content-type"], None
        r.read()
        return r.status_code, r.headers["content-type"], r.json()


def _no_traceback(proc: subprocess.Popen[str]) -> str:
    """Stop a background server; returns its stderr, which must hold no traceback."""
    stop(proc)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "Traceback" not in err and "Exception in ASGI application" not in err, err[-3000:]
    return err


def test_seq_beyond_sqlite_range_is_a_400_before_the_stream(run_dir: Path) -> None:
    with background("serve", str(run_dir), "--port", "0") as (proc, url):
        big = _status(f"{url}events/stream?from={TOO_BIG}")
        last_big = _status(f"{url}events/stream", {"Last-Event-ID": str(2**63 - 1)})
        last_bad = _status(f"{url}events/stream", {"Last-Event-ID": "x"})
        at_max = _status(f"{url}events/stream?from={2**63 - 1}")  # the largest seq: no rows
        win_big = _status(f"{url}api/windows?from={TOO_BIG}")
        win_abc = _status(f"{url}api/windows?from=abc")
        win_neg = _status(f"{url}api/windows?from=-1")
        ok = httpx.get(f"{url}api/windows?from=2", timeout=30)
        _no_traceback(proc)
    for code, ctype, body in (big, win_big, win_abc, win_neg):
        assert code == 400 and ctype.startswith("application/json"), (code, body)
        assert "from=" in body["error"] and "expected a non-negative integer" in body["error"]
    assert TOO_BIG in big[2]["error"] and TOO_BIG in win_big[2]["error"]
    assert "invalid literal" not in win_abc[2]["error"] and "'abc'" in win_abc[2]["error"]
    for code, _, body in (last_big, last_bad):
        assert code == 400 and body["error"].startswith("Last-Event-ID=")
    assert at_max[0] == 200
    assert ok.status_code == 200 and [w["window"] for w in ok.json()["windows"]] == [2]


def test_a_row_with_a_lone_surrogate_is_sent_and_the_rest_stream(
    run_dir: Path, tmp_path: Path
) -> None:
    exported = export_lines(run_dir, tmp_path / "export.jsonl")
    run = _copy(run_dir, tmp_path / "run")
    con = sqlite3.connect(run / "events.db")
    try:
        seq, payload = con.execute(
            "SELECT seq, payload FROM events WHERE kind = 'post_created' ORDER BY seq LIMIT 1"
        ).fetchone()
        assert '"text":"' in payload
        # the JSON escape of a lone surrogate, as a hand edit would leave it
        con.execute(
            "UPDATE events SET payload = ? WHERE seq = ?",
            (payload.replace('"text":"', '"text":"bad \\ud800 ', 1), seq),
        )
        con.commit()
    finally:
        con.close()
    with background("serve", str(run), "--port", "0") as (proc, url):
        got = sse_lines(url, from_seq=0, last_seq=len(exported), timeout=60)
        _no_traceback(proc)
    assert [s for s, _ in got] == list(range(1, len(exported) + 1))
    bad = json.loads(got[seq - 1][1])  # valid JSON, the surrogate kept as the escape said
    assert bad["payload"]["text"].startswith("bad \ud800 ")
    assert [line for s, line in got if s != seq] == [
        line for i, line in enumerate(exported, 1) if i != seq
    ]


def test_broken_manifest_is_a_500_naming_it_not_the_clients_from(
    run_dir: Path, tmp_path: Path
) -> None:
    run = _copy(run_dir, tmp_path / "run")
    (run / "manifest.json").write_text('{"status": ', encoding="utf-8")
    with background("serve", str(run), "--port", "0") as (proc, url):
        windows = httpx.get(f"{url}api/windows", timeout=30)
        info = httpx.get(f"{url}api/run", timeout=30)
        _no_traceback(proc)
    for r in (windows, info):
        assert r.status_code == 500, r.text
        assert "manifest.json" in r.json()["error"] and "from" not in r.json()["error"]


def killed_run(tmp: Path, *, url_seen: list[dict[str, Any]] | None = None) -> Path:
    """A run directory whose ``friendsim run`` was killed with SIGKILL after its first window
    (its manifest still says running; the kernel released its lock). While it runs, when
    ``url_seen`` is given, ``api/run`` of a server started on it is recorded there."""
    cfg = write_config(tmp / "long.toml", rounds=2000, agents=8, name="killed")
    run = tmp / "run"
    writer = subprocess.Popen(
        [sys.executable, "-m", "friendsim", "run", str(cfg), "--out", str(run), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: (run / "events.db").exists() and count_rows(run, "window_ended") >= 1,
            what="the first window",
        )
        if url_seen is not None:
            with background("serve", str(run), "--port", "0") as (proc, url):
                url_seen.append(httpx.get(f"{url}api/run", timeout=30).json())
                assert writer.poll() is None, "the run ended before it was killed"
                writer.send_signal(signal.SIGKILL)
                writer.wait(timeout=60)
                url_seen.append(httpx.get(f"{url}api/run", timeout=30).json())
                _no_traceback(proc)
        else:
            assert writer.poll() is None, "the run ended before it was killed"
            writer.send_signal(signal.SIGKILL)
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    return run


def test_a_killed_run_is_not_shown_as_running(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    run = killed_run(tmp_path, url_seen=seen)
    live, dead = seen
    assert live["status"] == "running" and live["writing"] is True
    assert not any("killed" in n for n in live["notes"])
    assert dead["status"] == "running"  # the manifest's word, verbatim
    assert dead["writing"] is False
    assert "killed" in dead["notes"][0] and "friendsim run --resume" in dead["notes"][0]
    assert '"running"' in (run / "manifest.json").read_text()  # the run directory is as left


def test_control_body_too_deep_or_too_large(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", rounds=2, agents=4, name="ctl")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap holds while it streams
        for _ in range(64):
            yield b" " * (1 << 20)

    with background(
        "run", str(cfg), "--out", str(tmp_path / "r"), "--quiet", "--serve", "0", "--paused"
    ) as (proc, url):
        deep = httpx.post(
            f"{url}api/control", content="[" * 30_000 + "]" * 30_000, headers=CONTROL, timeout=30
        )
        big = httpx.post(f"{url}api/control", content=b" " * 70_000, headers=CONTROL, timeout=30)
        streamed = httpx.post(f"{url}api/control", content=chunks(), headers=CONTROL, timeout=60)
        ok = httpx.post(f"{url}api/control", json={"action": "pause"}, headers=CONTROL, timeout=30)
        _no_traceback(proc)
    assert deep.status_code == 400 and "action" in deep.json()["error"]
    for r in (big, streamed):
        assert r.status_code == 413 and "65536 bytes" in r.json()["error"]
    assert ok.status_code == 200 and ok.json()["paused"] is True


def test_empty_host_announces_a_usable_url_and_runs_paths_404_on_one_run(run_dir: Path) -> None:
    with background("serve", str(run_dir), "--host", "", "--port", "0") as (proc, url):
        assert url.startswith("http://0.0.0.0:"), url
        port = url.rsplit(":", 1)[1].rstrip("/")
        page = httpx.get(url, timeout=30)
        local = f"http://127.0.0.1:{port}/"
        api = httpx.get(f"{local}api/run", timeout=30)
        others = [
            httpx.get(f"{local}runs/{i}/{p}", timeout=30)
            for i in (0, 1, 7)
            for p in ("", "api/run", "api/windows", "static/app.js")
        ]
        stream = _status(f"{local}runs/0/events/stream")
        _no_traceback(proc)
    assert page.status_code == 200 and api.status_code == 200
    for r in others:
        assert r.status_code == 404 and "one run" in r.json()["error"], (r.url, r.text)
    assert stream[0] == 404


MALFORMED_FOR_SERVE = [
    ('{"spec": "x", "runs": [{"dir": "r0"}]}', "'spec'"),
    ("[1, 2]", "missing 'spec' and 'runs'"),
    ('{"runs": 5}', "missing 'spec'"),
    ('{"spec": {}, "runs": 5}', "'runs'"),
    ('{"spec": {}, "runs": ["x"]}', "'runs[0]'"),
    ('{"spec": {}, "runs": [{"cell": "a"}]}', "missing key 'dir'"),
    ('{"spec": {"name": 5}, "runs": []}', "'spec.name'"),
    ("{", "cannot read it"),
]


def test_broken_sweep_file_is_a_json_500_naming_it(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    (sweep / "r0").mkdir(parents=True)
    path = sweep / "sweep.json"
    path.write_text('{"spec": {"name": "s"}, "runs": [{"dir": "r0"}]}', encoding="utf-8")
    answers = []
    with background("serve", str(sweep), "--port", "0") as (proc, url):
        assert httpx.get(f"{url}api/sweep", timeout=30).json()["name"] == "s"
        for body, _ in MALFORMED_FOR_SERVE:  # the sweep's writer replaces the file as it goes
            path.write_text(body, encoding="utf-8")
            answers.append(httpx.get(f"{url}api/sweep", timeout=30))
        _no_traceback(proc)
    for r, (body, key) in zip(answers, MALFORMED_FOR_SERVE, strict=True):
        assert r.status_code == 500 and r.headers["content-type"].startswith("application/json")
        assert str(path) in r.json()["error"] and key in r.json()["error"], (body, r.text)


def test_serve_refuses_a_broken_sweep_file_at_start(tmp_path: Path) -> None:
    from serve_support import run_cli

    (tmp_path / "sweep.json").write_text('{"spec": "x", "runs": [{"dir": "r0"}]}')
    proc = run_cli("serve", str(tmp_path), "--port", "0", timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{tmp_path / 'sweep.json'}: key 'spec'" in proc.stderr
