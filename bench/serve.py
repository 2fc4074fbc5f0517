"""Live-view benchmark: SSE catch-up rate against ``friendsim log export``, the digest, and the
server's memory, end to end over a real socket.

A baseline run (the paper's setup with ``policy = "baseline"``: 30 agents x 15 rounds, ~20k
events; ``--quick``: 12 agents x 6 rounds) is written by ``friendsim run``; then
``friendsim serve`` is started on it; the first ``/api/run`` builds the per-window digest of the
whole log (rewards and ties of every window), the whole log is read from
``/events/stream?from=0``, ``/api/windows`` is fetched (every window's digest), and the same log is
exported with ``friendsim log export`` for comparison. Peak RSS of the server from
``/proc/PID/status`` (VmHWM).

    .venv/bin/python bench/serve.py [--quick]

Prints, as its final line, one JSON object of its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "friendsim", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"friendsim {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def _vm_hwm_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) if m else -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    text = (ROOT / "examples" / "paper.toml").read_text(encoding="utf-8")
    text = re.sub(r'(?m)^policy = "llm"', 'policy = "baseline"', text)
    if args.quick:
        text = re.sub(r"(?m)^rounds = \d+", "rounds = 6", text)
        text = re.sub(r"(?m)^count = \d+", "count = 12", text)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.toml"
        cfg.write_text(text, encoding="utf-8")
        run = Path(tmp) / "run"
        run_s = _cli("run", str(cfg), "--out", str(run), "--quiet")
        server = subprocess.Popen(
            [sys.executable, "-m", "friendsim", "serve", str(run), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            url = line[line.index("http://") :].strip()
            t0 = time.perf_counter()
            last = httpx.get(f"{url}api/run", timeout=600).json()["last_seq"]
            first_info_s = time.perf_counter() - t0  # scores the whole log once (the digest)
            t0 = time.perf_counter()
            n = 0
            with httpx.stream("GET", f"{url}events/stream?from=0", timeout=120) as r:
                for ln in r.iter_lines():
                    if ln.startswith("data: "):
                        n += 1
                        if n == last:
                            break
            sse_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            windows = httpx.get(f"{url}api/windows", timeout=600).json()["windows"]
            windows_s = time.perf_counter() - t0
            rss_kib = _vm_hwm_kib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
        export_s = _cli("log", "export", str(run / "events.db"), str(Path(tmp) / "export.jsonl"))
    load = os.getloadavg()
    print(
        json.dumps(
            {
                "events": last,
                "windows": len(windows),
                "run_s": round(run_s, 3),
                "sse_catchup_s": round(sse_s, 3),
                "sse_events_per_s": round(last / sse_s),
                "log_export_s_incl_startup": round(export_s, 3),
                "digest_whole_log_s": round(first_info_s, 3),
                "api_windows_after_digest_s": round(windows_s, 3),
                "server_peak_rss_mib": round(rss_kib / 1024, 1),
                "loadavg_1m": round(load[0], 2),
                "quick": args.quick,
            }
        )
    )


if __name__ == "__main__":
    main()
