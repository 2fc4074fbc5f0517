"""Two ``friendsim run`` with the same ``--out`` at once: exactly one proceeds, the other fails at
once (exit 2) without touching the winner's files; ``replay --verify`` passes on every survivor.

The pairs are real processes (forked, so each pair starts within microseconds of each other)
running the real CLI entry point.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from pathlib import Path

from friendsim.cli import main as cli_main

PAIRS = 20


def _child(argv: list[str], start: multiprocessing.synchronize.Event, result: Path) -> None:
    sys.stderr = open(result.with_suffix(".err"), "w")
    sys.stdout = open(os.devnull, "w")
    start.wait()
    try:
        code = cli_main(argv)
    except BaseException as exc:  # a traceback would be the bug under test
        sys.stderr.write(f"CRASH {exc!r}\n")
        code = 99
    result.write_text(str(code))
    sys.stderr.flush()
    os._exit(0)


def test_same_out_races(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        '[experiment]\nname="race"\nseed=1\nrounds=2\nn_actions=1\n'
        '[agents]\ncount=6\npolicy="baseline"\n'
    )
    ctx = multiprocessing.get_context("fork")
    for i in range(PAIRS):
        out = tmp_path / f"run{i}"
        start = ctx.Event()
        results = [tmp_path / f"r{i}-{k}.code" for k in range(2)]
        procs = [
            ctx.Process(
                target=_child,
                args=(["run", str(cfg), "--out", str(out), "--quiet"], start, results[k]),
            )
            for k in range(2)
        ]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        codes = sorted(int(r.read_text()) for r in results)
        errs = [r.with_suffix(".err").read_text() for r in results]
        assert codes == [0, 2], (i, codes, errs)
        loser = errs[[int(r.read_text()) for r in results].index(2)]
        assert "Traceback" not in loser and "CRASH" not in loser
        assert "being written by process" in loser or "already holds a run" in loser, loser
        m = json.loads((out / "manifest.json").read_text())
        assert m["status"] == "completed"
        before = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in out.iterdir()}
        assert cli_main(["replay", str(out), "--verify"]) == 0
        if i == 0:
            assert cli_main(["analyze", str(out)]) == 0  # reads only: no cache in the run
        after = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in out.iterdir()}
        assert before == after
