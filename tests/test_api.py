"""The Python API end to end: the example tour as a user runs it, its Parquet files read back with
pyarrow against the events table, and the run object's events, rewards and graphs checked against
the analysis that ``friendsim analyze`` shows."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from friendsim import api
from friendsim.analysis.analyze import analyze_run
from friendsim.analysis.parquet import ParquetUnavailable, write_events_parquet
from friendsim.analysis.rewards_cli import rewards_table
from friendsim.cli import main as cli_main
from friendsim.platform.events import Followed, PostCreated, Unfollowed, WindowEnded
from friendsim.runtime.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TOUR = ROOT / "examples" / "api_tour.py"
CONTINUOUS = ROOT / "examples" / "continuous.toml"
SMALL = {"agents.count": 6, "experiment.duration": 3 * 3600.0}


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("tour")
    proc = subprocess.run(
        [sys.executable, str(TOUR), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def db_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT seq, t, kind, actor, payload FROM events ORDER BY seq"
        ).fetchall()


def test_tour_writes_a_completed_run_and_parquet_matching_the_events_table(
    tour: tuple[Path, str],
) -> None:
    out, stdout = tour
    run_dir = out / "run"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["policy"] == "baseline"
    assert f"run directory {run_dir}: status completed" in stdout
    rows = db_rows(run_dir / "events.db")
    assert f"events: {len(rows)}\n" in stdout

    events = pq.read_table(out / "parquet" / "events.parquet")
    assert events.column_names == ["seq", "t", "kind", "actor", "window", "payload"]
    assert events.num_rows == len(rows) > 1000
    cols = events.to_pydict()
    assert (
        list(zip(cols["seq"], cols["t"], cols["kind"], cols["actor"], cols["payload"], strict=True))
        == rows
    )
    # window: the one opened by the last window_started, null outside windows
    window = None
    for kind, payload, w in zip(cols["kind"], cols["payload"], cols["window"], strict=True):
        if kind == "window_started":
            window = json.loads(payload)["window"]
        assert w == window
        if kind == "window_ended":
            assert w == json.loads(payload)["window"]
            window = None
    assert cols["window"][0] is None and cols["kind"][0] == "agent_registered"
    assert set(cols["window"]) - {None} == set(range(1, manifest["windows"] + 1))

    rewards = pq.read_table(out / "parquet" / "rewards.parquet")
    expected = rewards_table(run_dir)
    assert rewards.num_rows == len(expected) == 30 * 12
    assert f"reward rows: {len(expected)} (30 agents)" in stdout
    assert rewards.to_pylist() == expected


def test_open_run_gives_typed_events_and_the_rewards_table(tour: tuple[Path, str]) -> None:
    run = api.open_run(tour[0] / "run")
    assert run.status == "completed" and run.name == "continuous"
    rows = db_rows(run.db)
    events = list(run.events())
    assert [e.seq for e in events] == [r[0] for r in rows]
    posts = list(run.events("post_created"))
    assert posts and all(isinstance(e, PostCreated) for e in posts)
    assert len(posts) == sum(1 for r in rows if r[2] == "post_created")
    assert list(run.events(PostCreated)) == posts
    assert run.event_counts()["post_created"] == len(posts)
    with pytest.raises(api.RunError, match="unknown event kind 'posted'"):
        list(run.events("posted"))

    table = run.rewards()
    assert len(table) == 360 and table.columns[:2] == ("window", "agent")
    assert table[0] == rewards_table(run.path)[0]
    assert sorted(set(table.column("window"))) == list(range(1, 13))
    means = table.window_means()
    first = [r["total"] for r in table if r["window"] == 1]
    assert means[0]["window"] == 1 and means[0]["total"] == pytest.approx(sum(first) / 30)
    assert table.to_arrow().num_rows == 360
    if importlib.util.find_spec("pandas") is None:
        with pytest.raises(api.RunError, match="pip install pandas"):
            table.to_pandas()
    else:
        assert table.to_pandas().shape == (360, 8)


def test_graphs_are_the_networks_the_analysis_measures(tour: tuple[Path, str]) -> None:
    run = api.open_run(tour[0] / "run")
    graphs = run.graphs()
    analysis = analyze_run(run.path)["network"]
    assert graphs.window == 12
    assert sorted(graphs.ties) == [0.01, 0.05, 0.1]
    for theta, g in graphs.ties.items():
        assert g.number_of_nodes() == 30
        assert g.number_of_edges() == analysis["ties"]["final"][f"{theta:g}"]["edges"]
    assert [
        {"source": v, "target": u, "strength": a}
        for (v, u), a in sorted(graphs.tie_strengths.items())
    ] == analysis["ties"]["strengths"]
    weight = sum(w for _, _, w in graphs.interactions.edges(data="weight"))
    assert weight == analysis["interaction"]["final"]["total_weight"] > 0

    follows: set[tuple[str, str]] = set()
    for e in run.events(Followed, Unfollowed):
        edge = (str(e.actor), e.target)
        follows.add(edge) if isinstance(e, Followed) else follows.discard(edge)
    assert set(graphs.follow.edges) == follows and follows

    early = run.graphs(window=2)
    assert early.window == 2
    assert early.interactions.size(weight="weight") < weight
    ended = [e for e in run.events(WindowEnded)]
    assert ended[1].window == 2
    with pytest.raises(api.RunError, match="window 99 never ended"):
        run.graphs(window=99)


def test_cli_exports_the_same_parquet_and_jsonl(tour: tuple[Path, str], tmp_path: Path) -> None:
    run_dir = tour[0] / "run"
    assert (
        cli_main(
            ["log", "export", str(run_dir), "--format", "parquet", "--out", str(tmp_path / "e")]
        )
        == 0
    )
    assert pq.read_table(tmp_path / "e").equals(
        pq.read_table(tour[0] / "parquet" / "events.parquet")
    )
    assert (
        cli_main(
            [
                "log",
                "export",
                str(run_dir),
                "--table",
                "rewards",
                "--out",
                str(tmp_path / "r.parquet"),
            ]
        )
        == 0
    )
    assert pq.read_table(tmp_path / "r.parquet").to_pylist() == rewards_table(run_dir)
    assert cli_main(["log", "export", str(run_dir / "events.db"), str(tmp_path / "e.jsonl")]) == 0
    lines = (tmp_path / "e.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [
        r[0] for r in db_rows(run_dir / "events.db")
    ]


def test_export_errors_are_named_and_leave_nothing_behind(
    tour: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    run_dir = tour[0] / "run"
    before = (run_dir / "events.db").read_bytes()
    assert cli_main(["log", "export", str(tmp_path), "--out", str(tmp_path / "x.parquet")]) == 2
    assert "no events database" in capsys.readouterr().err
    assert (
        cli_main(["log", "export", str(run_dir), str(tmp_path / "a"), "--out", str(tmp_path / "b")])
        == 2
    )
    assert "give the output file once" in capsys.readouterr().err
    assert cli_main(["log", "export", str(run_dir), "--out", str(run_dir / "events.db")]) == 2
    assert "refusing to overwrite the event log" in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ParquetUnavailable, match=r"pip install 'friendsim\[parquet\]'"):
        write_events_parquet(run_dir / "events.db", tmp_path / "y.parquet")
    out = tmp_path / "z.parquet"
    assert cli_main(["log", "export", str(run_dir), "--format", "parquet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "friendsim log export: Parquet files need pyarrow" in err and "friendsim[parquet]" in err
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
    assert (run_dir / "events.db").read_bytes() == before


def test_open_run_rejects_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(api.RunError, match="not a directory"):
        api.open_run(tmp_path / "missing")
    with pytest.raises(api.RunError, match=r"not a run directory \(no events.db\)"):
        api.open_run(tmp_path)
    sqlite3.connect(tmp_path / "events.db").close()
    with pytest.raises(api.RunError, match=r"run manifest not found"):
        api.open_run(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(api.RunError, match="not a valid JSON manifest"):
        api.open_run(tmp_path)


def test_load_config_overrides_are_validated() -> None:
    cfg = api.load_config(CONTINUOUS, overrides={"agents.count": 7, "coach.enabled": False})
    assert cfg.agents.count == 7 and cfg.coach.enabled is False
    assert cfg.feed.ranker == "chrono"  # untouched settings come from the file
    with pytest.raises(ConfigError, match=r"agents\.count|\[agents\]\.count"):
        api.load_config(CONTINUOUS, overrides={"agents.count": 0})
    with pytest.raises(ConfigError, match="nope"):
        api.load_config(CONTINUOUS, overrides={"agents.nope": 1})


def test_run_from_a_config_object_and_inside_an_event_loop(tmp_path: Path) -> None:
    cfg = api.load_config(CONTINUOUS, overrides=SMALL)
    first = api.run(cfg, tmp_path / "a", config_path=CONTINUOUS)
    assert first.status == "completed" and first.manifest.windows == 3

    async def notebook_cell() -> api.Run:
        # Jupyter runs cells inside an event loop: run() must still simply return.
        return api.run(cfg, tmp_path / "b", config_path=CONTINUOUS)

    second = asyncio.run(notebook_cell())
    assert second.status == "completed"
    assert db_rows(first.db) == db_rows(second.db)  # same seed, same log

    small = tmp_path / "small.toml"
    text = CONTINUOUS.read_text().replace("count = 50", "count = 5")
    small.write_text(text.replace("duration = 43200.0", "duration = 7200.0"))

    async def with_run_async() -> api.Run:
        return await api.run_async(small, tmp_path / "c")

    third = asyncio.run(with_run_async())
    assert third.status == "completed" and third.manifest.windows == 2
    assert third.manifest.config_file and len(third.rewards()) == 5 * 2
