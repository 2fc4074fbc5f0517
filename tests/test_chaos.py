"""Chaos suite: real runs of the LLM policy over real HTTP against a fault-injecting
OpenAI-compatible server on 127.0.0.1 (``tests/llm_stub_server.py``).

Each case asserts the run's status, exit code and the retry/failure counts in the manifest;
recovered cases also assert an events table identical to the fault-free run. The outcome table
is in ``docs/reliability.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from llm_stub_server import NeverAccepting, StubLLMServer, StubReply, mind_responder
from signal_support import digest as events_digest
from signal_support import manifest

from friendsim.cli import main as cli_main

KEY_ENV = "FRIENDSIM_CHAOS_KEY"
KEY = "chaos-secret-0123456789abcdef"


def config(tmp: Path, urls: str, *, name: str = "chaos", extra: str = "", rounds: int = 2) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        f"""
[experiment]
name = "{name}"
seed = 5
rounds = {rounds}
n_actions = 1
[agents]
count = 4
policy = "llm"
[llm]
provider = "openai:{urls}#m"
retries = 2
timeout_s = 1.0
concurrency = 4
api_key_env = "{KEY_ENV}"
{extra}
"""
    )
    return path


def spawn_run(cfg: Path, run: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``friendsim run CFG --out RUN --quiet`` in a child process (to send it signals)."""
    return subprocess.Popen(
        [sys.executable, "-m", "friendsim", "run", str(cfg), "--out", str(run), "--quiet"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def wait_until_asked(stub: StubLLMServer, proc: subprocess.Popen[str], what: str) -> None:
    """Wait (60 s at most) until ``stub`` has been sent a request by the run in ``proc``; fail
    at once, with the run's stderr, if the run ends before."""
    deadline = time.monotonic() + 60
    while not stub.requests and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    assert stub.requests, f"the run never asked {what}"


def interrupt(proc: subprocess.Popen[str], *, signals: int = 1) -> tuple[str, float]:
    """Send ``proc`` SIGINT ``signals`` times, each after the one before is being acted on (the
    run has printed its "stopping after window W" or "stopping before the first window completed"
    line), not after a pause that a loaded machine can outlast or cut short; its stderr and the
    seconds from the first signal until it ended (``communicate`` gives up after 30 s)."""
    assert proc.stderr is not None
    t0 = time.monotonic()
    proc.send_signal(2)
    seen = ""
    for _ in range(signals - 1):
        while "SIGINT: stopping " not in seen:
            line = proc.stderr.readline()
            assert line, seen  # the run ended without saying it was stopping
            seen += line
        proc.send_signal(2)
    _, err = proc.communicate(timeout=30)
    return seen + err, time.monotonic() - t0


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def note(case: str, code: int, m: dict[str, Any], **extra: Any) -> None:
    """With ``FRIENDSIM_CHAOS_OUTCOMES=FILE`` set, append the case's outcome as a JSON line (the
    table in ``docs/reliability.md`` is made from these)."""
    path = os.environ.get("FRIENDSIM_CHAOS_OUTCOMES")
    if not path:
        return
    total = m["llm_usage"].get("total", {})
    row = {
        "case": case,
        "exit": code,
        "status": m["status"],
        "stop_reason": m.get("stop_reason"),
        "actions": m["totals"].get("actions", 0),
        "lost": m["totals"].get("lost_actions", 0),
        "attempts": total.get("attempts", 0),
        "retries": total.get("retries", {}),
        "failures": total.get("failures", {}),
        "input_tokens": total.get("input_tokens", 0),
        **extra,
    }
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, sort_keys=True) + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture(scope="module")
def fault_free(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("clean")
    with pytest.MonkeyPatch.context() as mp, StubLLMServer(responder=mind_responder()) as stub:
        mp.setenv(KEY_ENV, KEY)
        code = cli_main(
            ["run", str(config(tmp, stub.openai_base_url)), "--out", str(tmp / "r"), "--quiet"]
        )
    assert code == 0
    m = manifest(tmp / "r")
    assert m["status"] == "completed" and m["totals"]["lost_actions"] == 0
    assert m["llm_usage"]["total"]["input_tokens"] > 0
    return events_digest(tmp / "r")


RECOVERED = {
    "429-retry-after": (StubReply(status=429, headers={"retry-after": "0"}), "429"),
    "500": (StubReply(status=500), "5xx"),
    "503": (StubReply(status=503), "5xx"),
    "reset": (StubReply(drop=True), "connection"),
    "hang-past-timeout": (StubReply(delay_s=3.0), "timeout"),
    "malformed-200": (StubReply(body=b'{"id": "x", "object": "chat.completion"}'), "malformed"),
    "truncated-body": (StubReply(body=b'{"id": "chatcmpl", "choices": [{"ind'), "malformed"),
}


@pytest.mark.parametrize("case", sorted(RECOVERED))
def test_recovered_faults_give_the_fault_free_log(
    case: str, tmp_path: Path, fault_free: str, capsys: pytest.CaptureFixture[str]
) -> None:
    reply, cause = RECOVERED[case]
    with StubLLMServer(responder=mind_responder(), fault=reply, fault_every=4) as stub:
        code, _, err = run_cli(
            capsys, "run", str(config(tmp_path, stub.openai_base_url)), "--out",
            str(tmp_path / "r"), "--quiet",
        )  # fmt: skip
    assert code == 0, err
    m = manifest(tmp_path / "r")
    note(case, code, m, identical=events_digest(tmp_path / "r") == fault_free)
    total = m["llm_usage"]["total"]
    assert m["status"] == "completed"
    assert total["retries"].get(cause, 0) > 0, total
    assert total["attempts"] > total["calls"] - total["cache_hits"]
    assert total["failures"] == {} and m["totals"]["lost_actions"] == 0
    assert events_digest(tmp_path / "r") == fault_free


def test_pool_with_one_dead_endpoint_completes(
    tmp_path: Path, fault_free: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with StubLLMServer(responder=mind_responder()) as stub:
        code, _, err = run_cli(
            capsys, "run", str(config(tmp_path, f"{stub.openai_base_url},{dead}")),
            "--out", str(tmp_path / "r"), "--quiet",
        )  # fmt: skip
    assert code == 0, err
    note(
        "pool-one-dead-endpoint",
        code,
        manifest(tmp_path / "r"),
        identical=events_digest(tmp_path / "r") == fault_free,
    )
    assert manifest(tmp_path / "r")["status"] == "completed"
    assert events_digest(tmp_path / "r") == fault_free


def test_500_on_every_call_interrupts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with StubLLMServer(responder=mind_responder(), fault=StubReply(status=500)) as stub:
        code, _, err = run_cli(
            capsys, "run", str(config(tmp_path, stub.openai_base_url)), "--out",
            str(tmp_path / "r"), "--quiet",
        )  # fmt: skip
    assert code == 130
    m = manifest(tmp_path / "r")
    note("500-every-call", code, m)
    assert m["status"] == "interrupted" and m["stop_reason"] == "provider_down"
    total = m["llm_usage"]["total"]
    assert total["retries"]["5xx"] >= 2 * 3  # retries=2 for each of >= 3 calls
    assert total["failures"].get("ServerError", 0) >= 3  # the calls that opened the breaker
    assert m["totals"].get("actions", 0) == 0
    lines = [ln for ln in err.splitlines() if ln.startswith("friendsim run:")]
    assert len(lines) == 1 and "interrupted" in lines[0] and "--resume" in lines[0]


@pytest.mark.parametrize("endpoints", [1, 2], ids=["one-server", "pool"])
def test_an_unreachable_provider_spending_the_failure_budget_interrupts(
    endpoints: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every endpoint refuses connections, and a window loses its decisions before as many calls
    failed in a row as open the breaker: that is the provider's outage, not the agents' failure
    (``interrupted``, ``provider_down``, the endpoints named as unreachable), and once the
    servers are back the run resumes (``degraded``: the window lost to the outage stays lost)."""
    ports = [free_port() for _ in range(endpoints)]
    urls = [f"http://127.0.0.1:{port}/v1" for port in ports]
    cfg = config(tmp_path, ",".join(urls), extra="breaker_failures = 10")
    run = tmp_path / "r"
    code, _, err = run_cli(capsys, "run", str(cfg), "--out", str(run), "--quiet")
    assert code == 130, err
    m = manifest(run)
    note(f"all-endpoints-refused-{endpoints}", code, m)
    assert m["status"] == "interrupted" and m["stop_reason"] == "provider_down"
    assert m["llm_usage"]["total"]["failures"].get("LLMConnectionError", 0) > 0
    lines = [ln for ln in err.splitlines() if ln.startswith("friendsim run:")]
    assert len(lines) == 1 and "interrupted" in lines[0] and "--resume" in lines[0]
    assert "unreachable" in lines[0] and "window 1 lost" in lines[0]
    assert all(url in lines[0] for url in urls)
    stubs = [StubLLMServer(responder=mind_responder(), port=port).start() for port in ports]
    try:
        code, _, err = run_cli(capsys, "run", "--resume", str(run), "--quiet")
    finally:
        for stub in stubs:
            stub.stop()
    assert code == 3, err
    final = manifest(run)
    assert final["status"] == "degraded" and final["windows"] == 2
    assert final["totals"]["lost_actions"] > 0


def test_a_provider_not_accepting_connections_interrupts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server is down without refusing (every connect times out, as against a blackholed
    address): nothing was sent, so it is unreachable as a refused server is, and a window losing
    its decisions to it stops the run ``interrupted`` (``provider_down``), not ``failed`` as if
    the agents had failed; once the server is back the run resumes."""
    run = tmp_path / "r"
    with NeverAccepting() as dead:
        cfg = config(tmp_path, dead.openai_base_url, extra="breaker_failures = 10")
        code, _, err = run_cli(capsys, "run", str(cfg), "--out", str(run), "--quiet")
    assert code == 130, err
    m = manifest(run)
    note("not-accepting-connections", code, m)
    assert m["status"] == "interrupted" and m["stop_reason"] == "provider_down"
    assert m["llm_usage"]["total"]["failures"].get("LLMConnectionError", 0) > 0
    lines = [ln for ln in err.splitlines() if ln.startswith("friendsim run:")]
    assert len(lines) == 1 and "interrupted" in lines[0] and "--resume" in lines[0]
    assert "unreachable" in lines[0] and "no connection within 1 s" in lines[0]
    with StubLLMServer(responder=mind_responder(), port=dead.port):
        code, _, err = run_cli(capsys, "run", "--resume", str(run), "--quiet")
    assert code == 3, err
    final = manifest(run)
    note("not-accepting-connections-resumed", code, final)
    assert final["status"] == "degraded" and final["windows"] == 2


def test_401_fails_at_once_naming_provider_endpoint_and_key_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with StubLLMServer(
        responder=mind_responder(), fault=StubReply(status=401), echo_headers=True
    ) as stub:
        code, out, err = run_cli(
            capsys, "run", str(config(tmp_path, stub.openai_base_url)), "--out",
            str(tmp_path / "r"), "--quiet", "--log-level", "debug",
        )  # fmt: skip
        calls = len(stub.requests)
    note("401-every-call-echoing-headers", code, manifest(tmp_path / "r"), requests=calls)
    assert code == 1
    assert calls <= 4  # the calls already in flight; nothing after the breaker opened
    m = manifest(tmp_path / "r")
    assert m["status"] == "failed" and m["stop_reason"] == "provider_rejected"
    assert m["llm_usage"]["total"]["failures"].get("PermanentLLMError", 0) >= 1
    lines = [ln for ln in err.splitlines() if ln.startswith("friendsim run:")]
    assert len(lines) == 1
    for part in ("provider openai", "model m", stub.openai_base_url, f"${KEY_ENV}", "401"):
        assert part in lines[0], (part, lines[0])
    # the server echoed the Authorization header: the key is nowhere
    assert KEY not in out + err
    for f in (tmp_path / "r").rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f.name


def test_dead_server_then_resume_gives_the_fault_free_log(
    tmp_path: Path, fault_free: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server dies mid-run: interrupted (exit 130, one line); back again, ``--resume``
    completes with the fault-free log, and tokens/cost sum over both segments."""
    port = free_port()
    cfg = config(tmp_path, f"http://127.0.0.1:{port}/v1")
    run = tmp_path / "r"
    with StubLLMServer(
        responder=mind_responder(), port=port, fault=StubReply(drop=True), fault_from=12
    ):
        code, _, err = run_cli(capsys, "run", str(cfg), "--out", str(run), "--quiet")
    assert code == 130, err
    first = manifest(run)
    note("server-dies-mid-run", code, first)
    assert first["status"] == "interrupted"
    assert first["llm_usage"]["total"]["input_tokens"] > 0
    assert first["llm_usage"]["total"]["retries"]["connection"] > 0
    with StubLLMServer(responder=mind_responder(), port=port):
        code, _, err = run_cli(capsys, "run", "--resume", str(run), "--quiet")
    assert code == 0, err
    final = manifest(run)
    note("server-back-then-resume", code, final, identical=events_digest(run) == fault_free)
    assert final["status"] == "completed"
    assert events_digest(run) == fault_free
    segs = final["segments"]
    assert [s["kind"] for s in segs] == ["original", "resume"]
    for key in ("input_tokens", "output_tokens", "cached_input_tokens", "cost_usd"):
        assert final["llm_usage"]["total"][key] == pytest.approx(
            sum(s["llm_usage"][key] for s in segs)
        ), key
    assert segs[1]["llm_usage"]["input_tokens"] > 0
    assert final["config_file"] == str(cfg)
    code, out, _ = run_cli(capsys, "analyze", str(run), "--json")
    assert code == 0
    usage = json.loads(out)["usage"]
    assert usage["segments"] == 2
    assert usage["total"]["input_tokens"] == final["llm_usage"]["total"]["input_tokens"]
    assert usage["total"]["retries"]["connection"] > 0
    code, _, _ = run_cli(capsys, "report", str(run), "--out", str(tmp_path / "report.html"))
    assert code == 0
    page = (tmp_path / "report.html").read_text()
    assert "over 2 segments (the run and its resumes)" in page and "connection " in page


def failing_responder(
    fails: Callable[[dict[str, Any]], bool],
) -> Callable[[str, dict[str, Any]], Any]:
    """A ``mind_responder`` that leaves unanswered every request whose body ``fails``: raising
    in the server's handler makes it close the connection without a reply, as
    ``StubReply(drop=True)`` does, so a fault can follow what is asked, not the order in which
    concurrent requests happen to arrive."""
    mind = mind_responder()

    def answer(api: str, body: dict[str, Any]) -> Any:
        if fails(body):
            raise ConnectionAbortedError("stub: connection dropped")
        return mind(api, body)

    return answer


def plan_window(body: dict[str, Any]) -> tuple[str, int] | None:
    """``(agent, window)`` of a plan request (its prompt starts ``Window N.``), else None."""
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or {}
    if "actions" not in schema.get("properties", {}):
        return None
    msgs = body.get("messages", [])
    system = "".join(m["content"] for m in msgs if m["role"] == "system")
    found = re.search(r'\(user id "(a\d+)"\)', system)
    window = next(
        (re.match(r"Window (\d+)\.", m["content"]) for m in msgs if m["role"] == "user"), None
    )
    assert found is not None and window is not None, body
    return found.group(1), int(window.group(1))


def unfinished_failures(run: Path) -> list[tuple[int, str, dict[str, Any]]]:
    """``(seq, actor, payload)`` of each ``action_failed`` after the log's last ``window_ended``."""
    with sqlite3.connect(f"file:{run / 'events.db'}?mode=ro", uri=True) as con:
        (end,) = con.execute(
            "SELECT coalesce(max(seq), 0) FROM events WHERE kind = 'window_ended'"
        ).fetchone()
        rows = con.execute(
            "SELECT seq, actor, payload FROM events WHERE kind = 'action_failed' AND seq > ?"
            " ORDER BY seq",
            (end,),
        ).fetchall()
    return [(seq, actor, json.loads(payload)) for seq, actor, payload in rows]


def failures_of(run: Path) -> list[tuple[str, int, str, str, str]]:
    """``(actor, window, stage, reason, detail)`` of every ``action_failed`` of the log."""
    with sqlite3.connect(f"file:{run / 'events.db'}?mode=ro", uri=True) as con:
        rows = con.execute(
            "SELECT actor, payload FROM events WHERE kind = 'action_failed' ORDER BY seq"
        ).fetchall()
    out = []
    for actor, payload in rows:
        p = json.loads(payload)
        out.append((actor, p["window"], p["stage"], p["reason"], p["detail"]))
    return out


def test_provider_down_after_failures_in_the_unfinished_window_resumes_to_the_fault_free_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server drops every connection from its 6th request on (3 rounds): the first wake's
    content requests that outlast their retries are committed as ``action_failed`` in the
    unfinished window 1, then the breaker stops the run (``interrupted``, ``provider_down``).
    Resumed once the server is back, that window is re-run live: its failed requests are asked
    again and answered, and the log is the fault-free run's, byte for byte."""
    port = free_port()
    cfg = config(tmp_path, f"http://127.0.0.1:{port}/v1", rounds=3)
    run, clean = tmp_path / "r", tmp_path / "clean"
    drop = StubReply(drop=True)
    with StubLLMServer(responder=mind_responder(), port=port, fault=drop, fault_from=6):
        code, _, err = run_cli(capsys, "run", str(cfg), "--out", str(run), "--quiet")
    assert code == 130, err
    first = manifest(run)
    assert first["status"] == "interrupted" and first["stop_reason"] == "provider_down"
    assert first["windows"] == 0
    tail = unfinished_failures(run)
    assert tail, "the interrupted run committed no failure in its unfinished window"
    assert all(p["reason"] == "llm_error" and "LLMConnectionError" in p["detail"] for *_, p in tail)
    with StubLLMServer(responder=mind_responder(), port=port):
        code, _, err = run_cli(capsys, "run", "--resume", str(run), "--quiet")
        assert code == 0, err
        code, _, err = run_cli(capsys, "run", str(cfg), "--out", str(clean), "--quiet")
        assert code == 0, err
    final = manifest(run)
    assert final["status"] == "completed" and final["windows"] == 3
    assert final["totals"]["lost_actions"] == 0
    assert events_digest(run) == events_digest(clean)
    assert failures_of(run) == []
    assert final["resumed_from"]["recovered_events"] == tail[0][0] - 1
    assert [s["kind"] for s in final["segments"]] == ["original", "resume"]


def test_failures_of_a_complete_window_are_replayed_as_failures_by_a_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Agent a02's plan request of window 1 fails past its retries (recorded as ``action_failed``,
    within ``max_failure_share``) and window 1 completes; from a02's window-2 plan on the server
    drops everything and the run stops ``interrupted``. Resumed against a server that answers
    everything, window 1 is replayed from the recording: a02's request has no recorded answer,
    and its recorded failure is reproduced, not asked. The log is the one of an uninterrupted run
    with that one failure (``degraded``, one lost decision), byte for byte."""
    port = free_port()
    cfg = config(tmp_path, f"http://127.0.0.1:{port}/v1", rounds=3, extra="max_failure_share = 1.0")
    run, expected = tmp_path / "r", tmp_path / "expected"
    retries = 2  # config()'s

    def faults(outage: bool) -> Callable[[dict[str, Any]], bool]:
        """Fail a02's plan request of window 1 (every attempt) and, with ``outage``, every
        request from the first plan request of window 2 on (the provider goes down)."""
        down = threading.Event()

        def fails(body: dict[str, Any]) -> bool:
            plan = plan_window(body)
            if outage and plan is not None and plan[1] >= 2:
                down.set()
            return plan == ("a02", 1) or down.is_set()

        return fails

    with StubLLMServer(responder=failing_responder(faults(outage=True)), port=port) as server:
        code, _, err = run_cli(capsys, "run", str(cfg), "--out", str(run), "--quiet")
        failed_plan = [r.body for r in server.requests if plan_window(r.body) == ("a02", 1)]
    assert code == 130, err
    first = manifest(run)
    assert first["status"] == "interrupted" and first["stop_reason"] == "provider_down"
    assert first["windows"] == 1
    lost = ("a02", 1, "plan", "llm_error")
    assert [f[:4] for f in failures_of(run)] == [lost]
    assert failures_of(run)[0][4].startswith("LLMConnectionError: ")
    with StubLLMServer(responder=mind_responder(), port=port) as healthy:
        code, _, err = run_cli(capsys, "run", "--resume", str(run), "--quiet")
        asked = [r.body for r in healthy.requests]
    assert code == 3, err
    with StubLLMServer(responder=failing_responder(faults(outage=False)), port=port):
        code, _, err = run_cli(capsys, "run", str(cfg), "--out", str(expected), "--quiet")
    assert code == 3, err
    final = manifest(run)
    assert final["status"] == "degraded" and final["windows"] == 3
    assert final["totals"]["lost_actions"] == 1 == manifest(expected)["totals"]["lost_actions"]
    assert events_digest(run) == events_digest(expected)
    assert failures_of(run) == failures_of(expected)
    # the recorded failure was reproduced, not asked again, and not counted as a failed call
    assert len(failed_plan) == 1 + retries  # every attempt failed
    assert failed_plan[0] not in asked
    assert final["segments"][1]["llm_usage"].get("failures", {}) == {}


def test_a_run_stopped_by_its_failure_budget_resumes_past_the_window_that_stopped_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Agent a02's plan request of window 2 fails past its retries: 1 of the window's few
    model-backed decisions, over the default ``max_failure_share`` (5%), so the run stops ``failed``
    (``failure_budget``, exit 1) once window 2 has ended. ``--resume`` against a server that
    answers everything keeps window 2 as recorded, its failure reproduced, not asked, and not
    judged again (it used to stop the resume at the same window end), runs window 3, and ends
    ``degraded`` (exit 3): the log of an uninterrupted run that tolerated the same failure."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    cfg = config(tmp_path, url, rounds=3)
    tolerant_dir = tmp_path / "tolerant"
    tolerant_dir.mkdir()
    tolerant = config(tolerant_dir, url, rounds=3, extra="max_failure_share = 1.0")
    run, expected = tmp_path / "r", tmp_path / "expected"
    lost = ("a02", 2)
    with StubLLMServer(responder=failing_responder(lambda b: plan_window(b) == lost), port=port):
        code, _, err = run_cli(capsys, "run", str(cfg), "--out", str(run), "--quiet")
        assert code == 1, err
        share = re.search(r"window 2: 1 of (\d+) model-backed decisions failed", err)
        assert share is not None and 1 / int(share.group(1)) > 0.05, err
        code, _, err = run_cli(capsys, "run", str(tolerant), "--out", str(expected), "--quiet")
        assert code == 3, err
    first = manifest(run)
    assert first["status"] == "failed" and first["stop_reason"] == "failure_budget"
    with StubLLMServer(responder=mind_responder(), port=port) as healthy:
        code, _, err = run_cli(capsys, "run", "--resume", str(run), "--quiet")
        asked = [plan_window(r.body) for r in healthy.requests]
    assert code == 3, err
    assert lost not in asked and ("a02", 3) in asked
    final = manifest(run)
    assert final["status"] == "degraded" and final["windows"] == 3
    assert "stop_reason" not in final
    assert final["totals"] == manifest(expected)["totals"]
    assert final["totals"]["lost_actions"] == 1
    assert events_digest(run) == events_digest(expected)
    assert [f[:4] for f in failures_of(run)] == [(*lost, "plan", "llm_error")]
    assert [(s["kind"], s["status"]) for s in final["segments"]] == [
        ("original", "failed"),
        ("resume", "degraded"),
    ]


def test_sigint_stops_a_slow_run_within_10s_and_resume_of_a_live_run_is_refused(
    tmp_path: Path,
) -> None:
    """A server taking 30 s per answer: resume of the live run is refused naming the pid; one
    SIGINT ends the process within 10 s, interrupted and resumable."""
    with StubLLMServer(responder=mind_responder(), latency_s=30.0) as stub:
        cfg = config(tmp_path, stub.openai_base_url, extra="").read_text()
        cfg_path = tmp_path / "slow.toml"
        cfg_path.write_text(cfg.replace("timeout_s = 1.0", "timeout_s = 60.0"))
        run = tmp_path / "r"
        env = {**os.environ, KEY_ENV: KEY}
        proc = spawn_run(cfg_path, run, env)
        try:
            wait_until_asked(stub, proc, "the model")
            again = subprocess.run(
                [sys.executable, "-m", "friendsim", "run", "--resume", str(run), "--quiet"],
                capture_output=True, text=True, env=env, timeout=60,
            )  # fmt: skip
            assert again.returncode == 2, again.stderr
            assert f"process {proc.pid}" in again.stderr
            assert not list(tmp_path.glob("r.*"))  # nothing moved aside
            for argv in (
                ["log", "verify", str(run / "events.db")],
                ["replay", str(run), "--verify"],
            ):
                live = subprocess.run(
                    [sys.executable, "-m", "friendsim", *argv],
                    capture_output=True, text=True, env=env, timeout=60,
                )  # fmt: skip
                assert live.returncode == 0, (argv, live.stderr)
                assert f"run in progress (process {proc.pid}), checked up to window" in (
                    live.stdout + live.stderr
                )
            err, elapsed = interrupt(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    note("30s-per-answer-one-sigint", proc.returncode, manifest(run), seconds=round(elapsed, 2))
    assert elapsed < 10, elapsed
    assert proc.returncode == 130, err
    assert "SIGINT: stopping before the first window completed; Ctrl-C again to stop now" in err
    assert manifest(run)["status"] == "interrupted"


def test_sigkill_then_resume_tokens_and_cost_are_the_sum_of_the_segments(tmp_path: Path) -> None:
    """SIGKILL a model-backed run while calls hang, resume it against a healthy server: the final
    manifest's tokens equal what the servers answered over both segments, and its tokens and
    cost equal the sum of its segments (the killed one's usage survives in its manifest)."""
    port = free_port()
    prices = '[llm.prices."openai:m"]\ninput = 1.0\noutput = 2.0\n'
    cfg = config(tmp_path, f"http://127.0.0.1:{port}/v1", extra=prices)
    cfg.write_text(cfg.read_text().replace("timeout_s = 1.0", "timeout_s = 60.0"))
    run = tmp_path / "r"
    env = {**os.environ, KEY_ENV: KEY}
    served_first = kill_once_checkpointed(["run", str(cfg), "--out", str(run)], run, port, 10)
    killed = manifest(run)
    assert killed["status"] == "running"  # SIGKILL: nothing could write the final manifest
    assert served_first["answers"] == 10
    assert killed["llm_usage"]["total"]["input_tokens"] == served_first["input_tokens"]
    with StubLLMServer(responder=mind_responder(), port=port) as second:
        done = subprocess.run(
            [sys.executable, "-m", "friendsim", "run", "--resume", str(run), "--quiet"],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        served_second = dict(second.served)
    assert done.returncode == 0, done.stderr
    final = manifest(run)
    note(
        "sigkill-while-hanging-then-resume",
        done.returncode,
        final,
        served=served_first["input_tokens"] + served_second["input_tokens"],
    )
    total = final["llm_usage"]["total"]
    assert final["status"] == "completed"
    segs = final["segments"]
    assert [s["kind"] for s in segs] == ["original", "resume"]
    for key in ("input_tokens", "output_tokens", "cost_usd"):
        assert total[key] == pytest.approx(sum(s["llm_usage"][key] for s in segs)), key
    assert total["input_tokens"] == served_first["input_tokens"] + served_second["input_tokens"]
    assert total["output_tokens"] == served_first["output_tokens"] + served_second["output_tokens"]
    expected_cost = (total["input_tokens"] * 1.0 + total["output_tokens"] * 2.0) / 1e6
    assert total["cost_usd"] == pytest.approx(expected_cost, rel=1e-6)
    assert segs[0]["llm_usage"]["input_tokens"] == served_first["input_tokens"] > 0


def kill_once_checkpointed(argv: list[str], watch: Path, port: int, answers: int) -> dict[str, int]:
    """Run ``friendsim ARGV`` against a server on ``port`` that answers ``answers`` requests and
    hangs on every later one; SIGKILL it once the manifest in ``watch`` has checkpointed the
    tokens of every answer sent (60 s at most). Returns what the server sent in full."""
    env = {**os.environ, KEY_ENV: KEY}
    hang = StubReply(delay_s=120.0)
    with StubLLMServer(responder=mind_responder(), port=port, fault=hang, fault_from=answers) as s:
        proc = subprocess.Popen(
            [sys.executable, "-m", "friendsim", *argv, "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.communicate()[1][-3000:]
                assert time.monotonic() < deadline, (argv, dict(s.served))
                served = dict(s.served)
                if served.get("answers") == answers and (watch / "manifest.json").is_file():
                    usage = manifest(watch)["llm_usage"].get("total", {})
                    if usage.get("input_tokens") == served["input_tokens"]:
                        break
                time.sleep(0.05)
            proc.kill()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert manifest(watch)["status"] == "running"  # SIGKILL: no final manifest
    return served


@pytest.mark.parametrize("where", ["out", "in-place"])
def test_killed_resumes_of_a_killed_run_each_count_once_in_the_final_accounting(
    tmp_path: Path, fault_free: str, where: str
) -> None:
    """A run SIGKILLed, then two resumes of it SIGKILLed in turn (each into a new directory,
    ``--out``, resumed from the last; or each in place, over the staging folder the one before
    left), then a resume to the end: the final manifest lists the four segments in order, each
    with the tokens the server answered it, and sums them, so nothing spent is lost or counted
    twice; the log is the fault-free run's."""
    port = free_port()
    prices = '[llm.prices."openai:m"]\ninput = 1.0\noutput = 2.0\n'
    cfg = config(tmp_path, f"http://127.0.0.1:{port}/v1", extra=prices)
    cfg.write_text(cfg.read_text().replace("timeout_s = 1.0", "timeout_s = 60.0"))
    run = tmp_path / "a"
    served = [kill_once_checkpointed(["run", str(cfg), "--out", str(run)], run, port, 6)]
    for k in range(2):
        if where == "out":
            new = tmp_path / f"resume{k}"
            argv = ["run", "--resume", str(run), "--out", str(new)]
            served.append(kill_once_checkpointed(argv, new, port, 4))
            run = new
        else:
            staging = tmp_path / "a.resuming"
            served.append(kill_once_checkpointed(["run", "--resume", str(run)], staging, port, 4))
    env = {**os.environ, KEY_ENV: KEY}
    with StubLLMServer(responder=mind_responder(), port=port) as last:
        done = subprocess.run(
            [sys.executable, "-m", "friendsim", "run", "--resume", str(run), "--quiet"],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        served.append(dict(last.served))
    assert done.returncode == 0, done.stderr
    final = manifest(run)
    assert final["status"] == "completed"
    assert events_digest(run) == fault_free
    segs = final["segments"]
    assert [s["kind"] for s in segs] == ["original", "resume", "resume", "resume"]
    assert [s["status"] for s in segs] == ["running", "running", "running", "completed"]
    walls = [s["wall_seconds"] for s in segs]  # a killed one's: as of its last checkpoint
    assert all(isinstance(w, float) and w > 0 for w in walls), walls
    assert final["wall_seconds"] == pytest.approx(sum(walls), abs=0.002)
    for key in ("input_tokens", "output_tokens"):
        assert [s["llm_usage"][key] for s in segs] == [x[key] for x in served], key
        assert final["llm_usage"]["total"][key] == sum(x[key] for x in served), key
    total = final["llm_usage"]["total"]
    assert total["calls"] - total["cache_hits"] == sum(x["answers"] for x in served)
    expected_cost = (total["input_tokens"] * 1.0 + total["output_tokens"] * 2.0) / 1e6
    assert total["cost_usd"] == pytest.approx(expected_cost, rel=1e-6)
    assert final["config_file"] == str(cfg)


def test_a_few_rejected_calls_within_the_failure_budget_give_degraded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 409 on every 7th request (permanent, not fatal): every window runs, the lost decisions
    are recorded as failures, and the run says ``degraded`` with exit 3, never ``completed``."""
    cfg = config(tmp_path, "{url}", extra="max_failure_share = 1.0")
    with StubLLMServer(
        responder=mind_responder(), fault=StubReply(status=409), fault_every=7
    ) as stub:
        cfg.write_text(cfg.read_text().replace("{url}", stub.openai_base_url))
        code, out, err = run_cli(capsys, "run", str(cfg), "--out", str(tmp_path / "r"), "--quiet")
    m = manifest(tmp_path / "r")
    note("409-every-7th-request", code, m)
    assert code == 3, err
    assert m["status"] == "degraded" and m["windows"] == 2 and "stop_reason" not in m
    lost = m["totals"]["lost_actions"]
    assert lost > 0
    assert sum(m["llm_usage"]["total"]["failures"].values()) >= lost
    assert json.loads(out.strip().splitlines()[-1])["status"] == "degraded"
    assert (
        f"degraded: every window ran but {lost} model-backed decisions lost to provider errors"
        in err
    )


@pytest.mark.parametrize("signals", [1, 2])
def test_sigint_while_a_hanging_llm_coach_advises_stops_at_once_and_resumes_to_the_same_log(
    tmp_path: Path, signals: int
) -> None:
    """The coach's model hangs (60 s a call) at the first window's end: one SIGINT (or two,
    the second while the first is being acted on) ends the process within 10 s, interrupted
    with the window's end committed and none of its guidance; ``--resume`` against a coach
    that answers asks for that guidance again, and the log equals an uninterrupted run's."""
    coach_port = free_port()
    with (
        StubLLMServer(responder=mind_responder()) as agents,
        StubLLMServer(responder=mind_responder(), port=coach_port, latency_s=60.0) as coach,
    ):
        extra = f'[coach]\nkind = "llm"\nprovider = "openai:{coach.openai_base_url}#c"\n'
        cfg = config(tmp_path, agents.openai_base_url, extra=extra)
        cfg.write_text(cfg.read_text().replace("timeout_s = 1.0", "timeout_s = 60.0"))
        run = tmp_path / "r"
        env = {**os.environ, KEY_ENV: KEY}
        proc = spawn_run(cfg, run, env)
        try:
            wait_until_asked(coach, proc, "its coach")
            err, elapsed = interrupt(proc, signals=signals)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert elapsed < 10, elapsed
        assert proc.returncode == 130, err
        assert "SIGINT: stopping before the first window completed" in err
        assert manifest(run)["status"] == "interrupted"
        with sqlite3.connect(f"file:{run / 'events.db'}?mode=ro", uri=True) as con:
            kinds = [k for (k,) in con.execute("SELECT kind FROM events ORDER BY seq")]
        assert "window_ended" in kinds and "guidance_issued" not in kinds

        coach.latency_s = 0.0  # the coach's model is back
        again = subprocess.run(
            [sys.executable, "-m", "friendsim", "run", "--resume", str(run), "--quiet"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert manifest(run)["status"] == "completed"
        whole = tmp_path / "whole"
        fresh = subprocess.run(
            [sys.executable, "-m", "friendsim", "run", str(cfg), "--out", str(whole), "--quiet"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert fresh.returncode == 0, fresh.stderr
    assert events_digest(run) == events_digest(whole)
    with sqlite3.connect(f"file:{run / 'events.db'}?mode=ro", uri=True) as con:
        issued = con.execute("SELECT count(*) FROM events WHERE kind = 'guidance_issued'")
        assert issued.fetchone()[0] == 4 * 2  # every agent, both windows


def first_answers_replaced(kind: str, texts: list[str]) -> Callable[[str, dict[str, Any]], Any]:
    """A ``mind_responder`` whose first answers to ``kind`` requests (``plan``: a schema with
    ``actions``; ``content``: no schema, a post to write) are ``texts``, one each, in order."""
    mind = mind_responder()
    left = list(texts)
    lock = threading.Lock()

    def answer(api: str, body: dict[str, Any]) -> Any:
        fmt = body.get("response_format") or {}
        schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema") or {}
        props = schema.get("properties", {})
        if ("actions" in props) if kind == "plan" else not props:
            with lock:
                if left:
                    return left.pop(0)
        return mind(api, body)

    return answer


def test_a_deeply_nested_plan_is_re_asked_and_its_tokens_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan nested past the JSON decoder's limit is an invalid answer like any other: the
    agent is re-asked, no decision is lost, and every paid call is counted."""
    deep = "[" * 200_000 + "]" * 200_000
    with StubLLMServer(responder=first_answers_replaced("plan", [deep])) as stub:
        cfg = config(tmp_path, stub.openai_base_url)
        code, _, err = run_cli(capsys, "run", str(cfg), "--out", str(tmp_path / "r"), "--quiet")
        answers = stub.served["answers"]
    m = manifest(tmp_path / "r")
    assert code == 0, err
    total = m["llm_usage"]["total"]
    assert m["status"] == "completed" and m["totals"].get("failures", 0) == 0
    assert total["attempts"] == total["calls"] == answers and total["failures"] == {}
    assert total["output_tokens"] >= len(deep) // 4  # the deep answer's tokens are counted
    assert "RecursionError" not in err


def test_lone_surrogates_in_answers_are_replaced_and_the_calls_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lone surrogate (the JSON escape \\ud800 in the answer's envelope) in written posts is
    replaced by U+FFFD where the answer is decoded: the text is stored, no decision is lost,
    and every paid call is counted."""
    posts = ["Soil first \ud800 always.", "Compost \udfff wins, friends."] * 4
    with StubLLMServer(responder=first_answers_replaced("content", posts)) as stub:
        cfg = config(tmp_path, stub.openai_base_url)
        code, _, err = run_cli(capsys, "run", str(cfg), "--out", str(tmp_path / "r"), "--quiet")
        answers = stub.served["answers"]
    assert code == 0, err
    m = manifest(tmp_path / "r")
    total = m["llm_usage"]["total"]
    assert m["status"] == "completed" and m["totals"].get("failures", 0) == 0
    assert total["attempts"] == total["calls"] == answers and total["failures"] == {}
    with sqlite3.connect(f"file:{tmp_path / 'r' / 'events.db'}?mode=ro", uri=True) as con:
        texts = [
            p for (p,) in con.execute("SELECT payload FROM events WHERE kind = 'post_created'")
        ]
    stored = [json.loads(p)["text"] for p in texts]
    assert "Soil first \ufffd always." in stored and "Compost \ufffd wins, friends." in stored
    assert "UnicodeEncodeError" not in err


def test_provider_down_with_openai_api_key_set_reads_failed_n_calls_in_a_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop line names the key variable and keeps the words after it; the key is masked."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cfg = config(tmp_path, f"http://127.0.0.1:{free_port()}/v1", extra="max_failure_share = 1.0")
    cfg.write_text(cfg.read_text().replace(KEY_ENV, "OPENAI_API_KEY"))
    code, out, err = run_cli(capsys, "run", str(cfg), "--out", str(tmp_path / "r"), "--quiet")
    assert code == 130, err
    detail = manifest(tmp_path / "r")["stop_detail"]
    for text in (detail, err):
        assert "key from $OPENAI_API_KEY: failed 3 calls in a row after retries" in text, text
    assert KEY not in out + err + (tmp_path / "r" / "manifest.json").read_text()


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path: sha256), the lock file aside."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "run.lock"
    }


def test_a_resume_or_fork_without_the_provider_s_key_is_refused_and_leaves_nothing(
    tmp_path: Path,
    fault_free: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The key of the run's provider missing from the environment is bad input, as it is for
    ``friendsim run``: a ``--resume`` or ``--fork`` without it exited 1 and left a ``failed``
    run in ``RUN.resuming`` or the fork's ``--out``. Now: exit 2 naming the variable, nothing
    created, the run as it was; with the key back, the resume completes to the fault-free log."""
    port = free_port()
    cfg = config(tmp_path, f"http://127.0.0.1:{port}/v1")
    run = tmp_path / "r"
    with StubLLMServer(
        responder=mind_responder(), port=port, fault=StubReply(drop=True), fault_from=12
    ):
        code, _, err = run_cli(capsys, "run", str(cfg), "--out", str(run), "--quiet")
    assert code == 130, err
    assert manifest(run)["windows"] >= 1
    before = _tree(tmp_path)
    monkeypatch.delenv(KEY_ENV)
    code, _, err = run_cli(capsys, "run", "--resume", str(run), "--quiet")
    assert code == 2, err
    assert KEY_ENV in err and "Traceback" not in err
    code, _, err = run_cli(
        capsys, "run", str(cfg), "--fork", str(run), "--at", "1", "--out", str(tmp_path / "f")
    )
    assert code == 2, err
    assert KEY_ENV in err
    assert _tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["chaos.toml", "r"])
    monkeypatch.setenv(KEY_ENV, KEY)
    with StubLLMServer(responder=mind_responder(), port=port):
        code, _, err = run_cli(capsys, "run", "--resume", str(run), "--quiet")
    assert code == 0, err
    assert events_digest(run) == fault_free
