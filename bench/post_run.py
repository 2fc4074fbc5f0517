"""After a big run: wall, CPU and peak RSS of the commands a researcher runs on its directory.

For each size, one rounds run (``bench/scale.py``'s configuration: baseline policy, rule coach,
chrono feed, 3 actions, ``vote_limit = 10``) is written by ``friendsim run``; then, one process at
a time on that directory: ``friendsim report``, ``friendsim log export`` (JSON Lines, Parquet and
``--table rewards``), ``friendsim replay --verify`` and the live view's initial load (``friendsim
serve``; the page, ``api/run``, ``api/windows?from=1`` and the whole log from
``events/stream?from=0&batch=1``, as ``app.js`` loads it). Every figure is the process's own,
from the OS (``os.wait4``: user + system CPU, ``ru_maxrss``); the load average is recorded around
each.
``FRIENDSIM_CACHE_DIR`` points into the work folder, so ``report`` analyses the run from cold.

``view`` is the page itself in headless Debian ``chromium`` (Playwright, when both are
installed): seconds from opening it to fully rendered (every row counted, the network drawn after
the last window) and the page's JS heap then, after a garbage collection (the DevTools protocol's
``Performance.getMetrics``: ``JSHeapUsedSize``), with its DOM node count. ``--view RUN_DIR``
measures only that, on an existing run; ``--serve RUN_DIR [--repeat N]`` only the live view's
initial load over HTTP, N cold starts of the server (``info_and_windows_s``: the page,
``api/run`` and ``api/windows``, which wait for the per-window digest of the whole log).

``<command>_cpu_over_run`` is the command's CPU ÷ the run's (``over_run`` lists those above 1);
``report_cpu_over_run_3000`` is the report's at 3,000 agents (3 rounds; measured on a run of its
own when 3,000 is not among the sizes, as with ``--quick``) and ``report_target_met`` whether it
is ≤ 1, the target for post-run tools;
``<command>_rss_growth`` is the peak-RSS ratio between the two largest sizes, to compare with
``events_ratio`` (memory growing faster than the log grows is flagged in ``superlinear_rss``).
The final line is one JSON object::

    .venv/bin/python bench/post_run.py --quick            # 1,000 agents (+ report at 3,000), < 60 s idle
    .venv/bin/python bench/post_run.py --sizes 3000 10000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from scale import _config, _measure  # bench/ is first on sys.path  # noqa: E402


def _events(run_dir: Path) -> int:
    con = sqlite3.connect(f"{(run_dir / 'events.db').as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        con.close()


def _serve(run_dir: Path, *, batch: int = 1) -> dict[str, Any]:
    """The live view's initial load over a real socket; the server's figures from the OS."""
    import httpx

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    proc, url = _serving(run_dir)
    try:
        t1 = time.perf_counter()
        httpx.get(url, timeout=600).raise_for_status()
        info = httpx.get(f"{url}api/run", timeout=600).json()
        httpx.get(f"{url}api/windows?from=1", timeout=600).raise_for_status()
        windows_s = time.perf_counter() - t1
        last, n = int(info["last_seq"]), 0
        with httpx.stream("GET", f"{url}events/stream?from=0&batch={batch}", timeout=600) as r:
            for ln in r.iter_lines():
                if ln.startswith("data: "):
                    n += 1
                    if json.loads(ln[6:])["seq"] >= last:
                        break
        load_s = time.perf_counter() - t1
    finally:
        proc.send_signal(signal.SIGINT)
    _, _status, ru = os.wait4(proc.pid, 0)
    return {
        "wall_s": round(time.perf_counter() - t0, 2),
        "initial_load_s": round(load_s, 2),
        "info_and_windows_s": round(windows_s, 2),
        "streamed_events": n,
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
        "peak_rss_mib": round(ru.ru_maxrss / 1024, 1),
        "load_before": [round(x, 2) for x in load0],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def _serving(run_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """``friendsim serve RUN_DIR`` on a free port, and the URL it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "friendsim", "serve", str(run_dir), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line[line.index("http://") :].strip()


CHROMIUM = "/usr/bin/chromium"


def _view(run_dir: Path) -> dict[str, Any] | None:
    """The page in headless chromium: time to fully rendered and its JS heap then (``None``
    without Playwright or chromium)."""
    import httpx

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path(CHROMIUM).exists():
        return None
    proc, url = _serving(run_dir)
    try:
        info = httpx.get(f"{url}api/status", timeout=600).json()
        last, windows = int(info["last_seq"]), _windows(run_dir)
        load0 = os.getloadavg()
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable")
                t0 = time.perf_counter()
                page.goto(url)
                page.wait_for_function(
                    f"() => document.querySelector('#counts').textContent"
                    f".startsWith('{last} events') && document.querySelector('#network-caption')"
                    f".textContent.startsWith('after window {windows}:')",
                    timeout=600_000,
                    polling=100,
                )
                rendered = time.perf_counter() - t0
                cdp.send("HeapProfiler.collectGarbage")
                metrics = {
                    m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]
                }
            finally:
                browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait()
    return {
        "rendered_s": round(rendered, 2),
        "js_heap_mib": round(metrics["JSHeapUsedSize"] / 2**20, 1),
        "dom_nodes": int(metrics["Nodes"]),
        "load_before": [round(x, 2) for x in load0],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def _windows(run_dir: Path) -> int:
    con = sqlite3.connect(f"{(run_dir / 'events.db').as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return int(
            con.execute("SELECT count(*) FROM events WHERE kind = 'window_ended'").fetchone()[0]
        )
    finally:
        con.close()


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


REPORT_AGENTS = 3_000
"""The size at which ``friendsim report`` is held to the run's own CPU."""


def report_only(n: int, *, work: Path, rounds: int) -> dict[str, Any]:
    """The run at ``n`` agents and ``friendsim report`` on it (nothing else)."""
    cfg = work / f"report-{n}.toml"
    cfg.write_text(_config("rounds", n, hours=1.0, rounds=rounds))
    run = work / f"report-{n}"
    py = [sys.executable, "-m", "friendsim"]
    row: dict[str, Any] = {"agents": n, "rounds": rounds}
    row["run"] = _measure([*py, "run", str(cfg), "--out", str(run), "--quiet"])
    row["events"] = _events(run)
    row["report"] = _measure([*py, "report", str(run), "--out", str(work / f"report-{n}.html")])
    row["report_cpu_over_run"] = round(row["report"]["cpu_s"] / (row["run"]["cpu_s"] or 1e-9), 3)
    print(json.dumps(row), flush=True)
    return row


def run_size(n: int, *, work: Path, rounds: int) -> dict[str, Any]:
    """The run at ``n`` agents and every post-run command on it."""
    cfg = work / f"rounds-{n}.toml"
    cfg.write_text(_config("rounds", n, hours=1.0, rounds=rounds))
    run = work / f"rounds-{n}"
    out = work / f"out-{n}"
    out.mkdir()
    py = [sys.executable, "-m", "friendsim"]
    row: dict[str, Any] = {"agents": n}
    row["run"] = _measure([*py, "run", str(cfg), "--out", str(run), "--quiet"])
    row["events"] = _events(run)
    commands = {
        "report": ["report", str(run), "--out", str(out / "report.html")],
        "export_jsonl": ["log", "export", str(run), str(out / "events.jsonl")],
        "export_rewards": ["log", "export", str(run), "--table", "rewards", "--out"],
        "replay_verify": ["replay", str(run), "--verify"],
    }
    commands["export_rewards"].append(str(out / "rewards.jsonl"))
    if _has_pyarrow():
        commands["export_parquet"] = ["log", "export", str(run), "--format", "parquet"]
        commands["export_parquet"] += ["--out", str(out / "events.parquet")]
    for name, args in commands.items():
        row[name] = _measure([*py, *args])
    row["serve"] = _serve(run)
    row["view"] = _view(run)
    cpu = row["run"]["cpu_s"] or 1e-9
    for name in (*commands, "serve"):
        row[f"{name}_cpu_over_run"] = round(row[name]["cpu_s"] / cpu, 3)
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 agents, 2 rounds (< 60 s idle)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[3000, 10000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--view", type=Path, metavar="RUN_DIR", help="only the page, on this run")
    ap.add_argument(
        "--serve",
        type=Path,
        metavar="RUN_DIR",
        help="only the live view's initial load over HTTP (cold: a new server each time), on "
        "this run, --repeat times",
    )
    ap.add_argument("--repeat", type=int, default=3, help="with --serve: how many loads")
    args = ap.parse_args(argv)
    if args.view is not None:
        print(json.dumps({"bench": "post_run", "run": str(args.view), "view": _view(args.view)}))
        return 0
    if args.serve is not None:
        loads = [_serve(args.serve) for _ in range(max(1, args.repeat))]
        best = min(loads, key=lambda x: x["info_and_windows_s"])
        print(
            json.dumps(
                {
                    "bench": "post_run",
                    "run": str(args.serve),
                    "info_and_windows_s": [x["info_and_windows_s"] for x in loads],
                    "initial_load_s": [x["initial_load_s"] for x in loads],
                    "serve_cpu_s": [x["cpu_s"] for x in loads],
                    "best": best,
                }
            )
        )
        return 0
    sizes = [1000] if args.quick else sorted(args.sizes)
    rounds = 2 if args.quick else args.rounds
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="friendsim-postrun-") as tmp:
        os.environ["FRIENDSIM_CACHE_DIR"] = str(Path(tmp) / "cache")
        for n in sizes:
            rows.append(run_size(n, work=Path(tmp), rounds=rounds))
        at = next((r for r in rows if r["agents"] == REPORT_AGENTS and rounds == 3), None)
        if at is None:
            at = report_only(REPORT_AGENTS, work=Path(tmp), rounds=3)
    names = [k[: -len("_cpu_over_run")] for k in rows[-1] if k.endswith("_cpu_over_run")]
    summary: dict[str, Any] = {"bench": "post_run", "sizes": rows}
    top = rows[-1]
    summary["over_run"] = [k for k in names if top[f"{k}_cpu_over_run"] > 1.0]
    summary[f"report_cpu_over_run_{REPORT_AGENTS}"] = at["report_cpu_over_run"]
    summary["report_target_met"] = at["report_cpu_over_run"] <= 1.0
    if len(rows) >= 2:
        a, b = rows[-2], rows[-1]
        events_ratio = b["events"] / a["events"]
        summary["events_ratio"] = round(events_ratio, 3)
        growth = {k: round(b[k]["peak_rss_mib"] / a[k]["peak_rss_mib"], 3) for k in names}
        summary.update({f"{k}_rss_growth": v for k, v in growth.items()})
        summary["superlinear_rss"] = [k for k, v in growth.items() if v > events_ratio]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
