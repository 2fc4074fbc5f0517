"""``friendsim analyze DIR [--json]`` through its argparse registration, in-process and as a
separate process (stdout must be exactly one JSON object: no log lines mixed in)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from json_values import json_values
from test_analyze_fixture import build_run_dir

from friendsim.analysis.analyze import analysis_cache_path
from friendsim.commands import analyze as cli_analyze

ENTRY = (
    "import argparse, sys\n"
    "from friendsim.commands import analyze as cli_analyze\n"
    "p = argparse.ArgumentParser(prog='friendsim')\n"
    "sp = p.add_subparsers(dest='command', required=True)\n"
    "cli_analyze.register(sp)\n"
    "a = p.parse_args(sys.argv[1:])\n"
    "sys.exit(a.handler(a))\n"
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="friendsim")
    sp = p.add_subparsers(dest="command", required=True)
    cli_analyze.register(sp)
    return p


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return int(args.handler(args))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run_dir(tmp_path_factory.mktemp("cli") / "run", seed=5, windows=3, n_agents=6)


def test_json_output_parses_and_has_per_window_rewards(run_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", ENTRY, "analyze", str(run_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # the whole stdout is one JSON document
    windows = sorted({r["window"] for r in data["rewards"]["per_agent"]})
    assert windows == [1, 2, 3]
    agents = {r["agent"] for r in data["rewards"]["per_agent"]}
    assert len(agents) == 6
    for r in data["rewards"]["per_agent"]:
        assert 0.0 <= r["total"] <= 1.0
        assert set(r) >= {"SOC", "INF", "PRE", "COORD", "EMO", "total"}
    assert [w["window"] for w in data["rewards"]["window_means"]] == [1, 2, 3]
    assert data["network"]["thetas"] == ["0.05", "0.1"]
    assert data["usage"]["total"]["cost_usd"] == pytest.approx(0.0123)


def test_human_output_shows_tables(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["analyze", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "mean total reward per window" in out
    assert "final tie network" in out
    assert "cost=$0.0123" in out


def test_json_in_process_matches_the_cached_analysis(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _main(["analyze", str(run_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert not (run_dir / "analysis.json").exists()  # the cache never goes into the run
    cached = json.loads(analysis_cache_path(run_dir).read_text())["analysis"]
    assert data == cached


def test_not_a_run_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["analyze", str(tmp_path / "nope"), "--json"]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert _main(["analyze", str(tmp_path)]) == 2
    assert "no events.db" in capsys.readouterr().err
    (tmp_path / "exp.toml").write_text("")
    assert _main(["analyze", str(tmp_path / "exp.toml")]) == 2
    assert "exp.toml: not a directory (a run directory is expected)" in capsys.readouterr().err


def test_log_verify_takes_a_run_directory_or_its_log(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from friendsim.cli import main

    for target in (run_dir, run_dir / "events.db"):
        assert main(["log", "verify", str(target)]) == 0
        out = capsys.readouterr().out
        assert out.strip().endswith(f"{run_dir / 'events.db'}: replay matches the live tables")


def test_sweep_directory_prints_the_aggregate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_sweep_aggregate import build_sweep_dir

    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2)
    assert _main(["analyze", str(sd), "--json"]) == 0
    agg = json.loads(capsys.readouterr().out)
    assert agg["kind"] == "sweep" and len(agg["cells"]) == 2
    assert agg["cells"][0]["metrics"]["reward.all.total.mean"]["n"] == 2
    assert _main(["analyze", str(sd)]) == 0
    out = capsys.readouterr().out
    assert "paired difference vs coach.enabled=true" in out
    assert "reward.all.total.mean" in out


def test_the_command_loads_igraph_without_pyplot_and_leaves_matplotlib_importable(
    run_dir: Path,
) -> None:
    """igraph imports matplotlib.pyplot when it loads (0.4-0.6 s, for plotting friendsim never
    asks of it); the command hides matplotlib while igraph loads, and only then."""
    probe = ENTRY.replace(
        "sys.exit(a.handler(a))\n",
        "code = a.handler(a)\n"
        "seen = {m: m in sys.modules for m in ('igraph', 'matplotlib', 'matplotlib.pyplot')}\n"
        "import matplotlib\n"
        "seen['importable_after'] = bool(matplotlib.__version__)\n"
        "sys.stderr.write(json.dumps(seen))\n"
        "sys.exit(code)\n",
    ).replace("import argparse, sys\n", "import argparse, json, sys\n")
    proc = subprocess.run(
        [sys.executable, "-c", probe, "analyze", str(run_dir), "--json", "--refresh"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rewards"]["per_agent"]
    seen = json.loads(proc.stderr.strip().splitlines()[-1])
    assert seen == {
        "igraph": True,
        "matplotlib": False,
        "matplotlib.pyplot": False,
        "importable_after": True,
    }


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), json_values(int_bits=70), max_size=6))
def test_the_analysis_cache_holds_the_stdlibs_json_value(data: dict) -> None:
    """The cache is written through orjson (integers beyond 64 bits through the stdlib) and
    read by ``json.loads``: the value read back is the one the stdlib would have written,
    floats to the bit."""
    from friendsim.analysis.analyze import json_bytes

    got = json.loads(json_bytes(data).decode("utf-8"))
    want = json.loads(json.dumps(data, sort_keys=True))
    assert repr(got) == repr(want)
    assert list(got) == sorted(got)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), json_values(int_bits=70), max_size=6))
def test_analyze_json_output_is_ascii_and_the_stdlibs_value(data: dict) -> None:
    """``analyze --json`` writes through orjson, then escapes what is beyond ASCII as the
    stdlib does by default: ASCII text (any console encoding), the stdlib's JSON value."""
    from friendsim.analysis.analyze import json_bytes
    from friendsim.commands.analyze import ascii_json

    text = ascii_json(json_bytes(data).decode("utf-8"))
    assert text.isascii()
    assert repr(json.loads(text)) == repr(json.loads(json.dumps(data, sort_keys=True)))


def test_analyze_json_output_escapes_like_the_stdlib() -> None:
    """Accents, an emoji beyond the basic plane (a surrogate pair) and a quote: the same
    escapes ``json.dumps`` writes, not-a-number as null (strict JSON)."""
    from friendsim.analysis.analyze import json_bytes
    from friendsim.commands.analyze import ascii_json

    data = {"name": 'Zoë "🙂" Ålund', "x": float("nan")}
    text = ascii_json(json_bytes(data).decode("utf-8"))
    assert '"Zo\\u00eb \\"\\ud83d\\ude42\\" \\u00c5lund"' in text
    assert json.loads(text) == {"name": 'Zoë "🙂" Ålund', "x": None}


def test_a_broken_log_is_named_once_and_a_sweeps_by_its_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The message names the file at fault once: a log that is not a database is not named
    after its run directory again, and a bad event of a sweep's replication names that
    replication's log (not only the sweep)."""
    import sqlite3

    from test_sweep_aggregate import build_sweep_dir

    run = build_run_dir(tmp_path / "run", seed=1, windows=2, n_agents=4)
    (run / "events.db").write_bytes(b"not a database at all" * 10)
    assert _main(["analyze", str(run)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"friendsim analyze: {run / 'events.db'}: cannot read the events table: "
        "file is not a database\n"
    )

    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2)
    log = sd / "coach.enabled-false" / "rep1" / "events.db"
    con = sqlite3.connect(log)
    with con:
        seq = con.execute("SELECT min(seq) FROM events WHERE kind = 'window_ended'").fetchone()[0]
        con.execute("UPDATE events SET kind = 'bogus' WHERE seq = ?", (seq,))
    con.close()
    assert _main(["analyze", str(sd), "--refresh"]) == 2
    err = capsys.readouterr().err
    assert err == f"friendsim analyze: {log}: event seq={seq}: unknown kind 'bogus'\n"


def test_the_network_table_names_every_metric_whole_in_80_columns(
    run_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In an 80-column terminal (or piped) the network table read ``cluster…``, ``modular…``
    and ``median`` over a cut ``deg``: its eight columns now fit with every name whole."""
    monkeypatch.setenv("COLUMNS", "80")
    assert _main(["analyze", str(run_dir)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "final tie network" in line)
    table = lines[start : start + 6]
    assert all(len(line) <= 80 for line in table), table
    cells = {c.strip() for line in table if "┃" in line for c in line.split("┃")}
    for name in ("θ", "edges", "density", "clustering", "lcc", "path_ln", "modularity"):
        assert name in cells, (name, cells)
    assert {"median", "degree"} <= cells and not any("…" in c for c in cells)


def test_the_network_table_is_followed_by_the_real_networks_ranges(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ✗ said a metric fell outside the eight real networks' range without saying which
    range; the line after the table gives each metric's min–max from the analysis."""
    assert _main(["analyze", str(run_dir), "--json"]) == 0
    final = json.loads(capsys.readouterr().out)["network"]["ties"]["final"]
    ref = next(iter(final.values()))["reference"]
    assert _main(["analyze", str(run_dir)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    want = ", ".join(
        f"{k} {ref[k]['min']:.3f}–{ref[k]['max']:.3f}"
        for k in ("density", "clustering", "lcc", "path_ln", "modularity")
    )
    assert f"range of the eight real networks: {want}" in out
