"""``friendsim log export --table ties|follows|interactions``: the networks of a run as tables
(JSON Lines, Parquet) and one window as GraphML, every number the one ``friendsim.api``'s
``Run.graphs(window=w)`` computes; bad input exits 2 and writes nothing."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from tree_support import tree

from friendsim import api
from friendsim.analysis.graphs import INTERACTION_KINDS, interaction_graphs_by_window
from friendsim.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = (
    '[experiment]\nname="n"\nseed=7\nrounds=3\nn_actions=4\n[agents]\ncount=5\npolicy="baseline"\n'
)


def cli(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A rounds run (votes, comments, DMs: ties and interactions) and a continuous one (follows
    and an unfollow), both with the baseline policy."""
    tmp = tmp_path_factory.mktemp("networks")
    (tmp / "rounds.toml").write_text(ROUNDS)
    assert cli("run", tmp / "rounds.toml", "--out", tmp / "rounds", "--quiet")[0] == 0
    cfg = api.load_config(
        ROOT / "examples" / "continuous.toml",
        overrides={"agents.count": 8, "experiment.duration": 3 * 3600.0, "experiment.seed": 2},
    )
    api.run(cfg, tmp / "continuous")
    return {"rounds": tmp / "rounds", "continuous": tmp / "continuous"}


def export(run: Path, table: str, out: Path, *extra: object) -> list[dict[str, Any]]:
    code, stdout, err = cli("log", "export", run, "--table", table, "--out", out, *extra)
    assert code == 0, err
    assert str(out) in stdout
    return [json.loads(line) for line in out.read_text().splitlines()]


def ended(run: api.Run) -> list[int]:
    return [e.window for e in run.events("window_ended")]


def by_window(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["window"]].append(r)
    return out


@pytest.mark.parametrize("name", ["rounds", "continuous"])
def test_tie_rows_are_the_api_tie_strengths_of_every_window(
    runs: dict[str, Path], name: str, tmp_path: Path
) -> None:
    run = api.open_run(runs[name])
    before = tree(runs[name])
    rows = export(runs[name], "ties", tmp_path / "ties.jsonl")
    assert tree(runs[name]) == before
    assert rows and all(list(r) == ["window", "source", "target", "strength"] for r in rows)
    got = by_window(rows)
    windows = ended(run)
    assert len(windows) == 3 and set(got) <= set(windows)
    for w in windows:
        strengths = {(r["source"], r["target"]): r["strength"] for r in got.get(w, [])}
        assert strengths == dict(run.graphs(window=w).tie_strengths), w
        assert all(s > 0 for s in strengths.values())
    assert len({w for w in got if got[w]}) >= 2


def test_follow_rows_are_the_follow_graph_at_each_window_end(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run = api.open_run(runs["continuous"])
    assert run.event_counts().get("unfollowed", 0) >= 1
    rows = export(runs["continuous"], "follows", tmp_path / "follows.jsonl")
    got = by_window(rows)
    assert rows and all(list(r) == ["window", "source", "target"] for r in rows)
    for w in ended(run):
        edges = {(r["source"], r["target"]) for r in got.get(w, [])}
        assert edges == set(run.graphs(window=w).follow.edges()), w
    assert export(runs["rounds"], "follows", tmp_path / "none.jsonl") == []


@pytest.mark.parametrize("name", ["rounds", "continuous"])
def test_interaction_rows_count_each_window_and_add_up_to_the_api_graph(
    runs: dict[str, Path], name: str, tmp_path: Path
) -> None:
    run = api.open_run(runs[name])
    rows = export(runs[name], "interactions", tmp_path / "inter.jsonl")
    assert rows and all(list(r) == ["window", "source", "target", "kind", "count"] for r in rows)
    assert {r["kind"] for r in rows} <= set(INTERACTION_KINDS)
    got = by_window(rows)
    per_window = dict(interaction_graphs_by_window(list(run.events())))
    total: Counter[tuple[str, str, str]] = Counter()
    for w in ended(run):
        mine = {(r["source"], r["target"], r["kind"]): r["count"] for r in got.get(w, [])}
        g = per_window[w]
        assert mine == {
            (s, t, k): d[k] for s, t, d in g.edges(data=True) for k in INTERACTION_KINDS if d[k]
        }, w
        total.update(mine)
        api_graph = run.graphs(window=w).interactions
        assert dict(total) == {
            (s, t, k): d[k]
            for s, t, d in api_graph.edges(data=True)
            for k in INTERACTION_KINDS
            if d[k]
        }, w


@pytest.mark.parametrize("table", ["ties", "follows", "interactions"])
def test_parquet_holds_the_same_rows_with_typed_columns(
    runs: dict[str, Path], table: str, tmp_path: Path
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    jsonl = export(runs["continuous"], table, tmp_path / "t.jsonl")
    code, _, err = cli(
        "log", "export", runs["continuous"], "--table", table, "--out", tmp_path / "t.parquet"
    )
    assert code == 0, err
    t = pq.read_table(tmp_path / "t.parquet")
    assert t.to_pylist() == jsonl
    types = {f.name: str(f.type) for f in t.schema}
    assert types["window"] == "int64" and types["source"] == "string"
    assert types.get("strength", "double") == "double"
    assert types.get("count", "int64") == "int64"


def test_window_selects_one_window(runs: dict[str, Path], tmp_path: Path) -> None:
    run = api.open_run(runs["rounds"])
    every = export(runs["rounds"], "ties", tmp_path / "all.jsonl")
    one = export(runs["rounds"], "ties", tmp_path / "w2.jsonl", "--window", 2)
    assert one and one == [r for r in every if r["window"] == 2]
    assert {(r["source"], r["target"]) for r in one} == set(run.graphs(window=2).tie_strengths)


def test_graphml_writes_one_windows_network_with_every_agent(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run = api.open_run(runs["rounds"])
    out = tmp_path / "ties.graphml"
    code, stdout, err = cli("log", "export", runs["rounds"], "--table", "ties", "--out", out)
    assert code == 0, err
    assert "window 3" in stdout
    g = nx.read_graphml(out)
    graphs = run.graphs(window=3)
    assert g.is_directed() and set(g.nodes) == set(graphs.follow.nodes)
    assert {(s, t): d["strength"] for s, t, d in g.edges(data=True)} == dict(graphs.tie_strengths)
    out2 = tmp_path / "inter.graphml"
    code, _, err = cli(
        "log", "export", runs["rounds"], "--table", "interactions", "--format", "graphml",
        "--window", 1, "--out", out2,
    )  # fmt: skip
    assert code == 0, err
    h = nx.read_graphml(out2)
    per_window = dict(interaction_graphs_by_window(list(run.events())))
    assert {(s, t): d["weight"] for s, t, d in h.edges(data=True)} == {
        (s, t): d["weight"] for s, t, d in per_window[1].edges(data=True)
    }


def test_graphml_at_theta_is_the_tie_network_analyze_measures(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """``--theta T`` writes window W's undirected tie network binarised at T: node for node and
    edge for edge ``Run.graphs(window=W).ties[T]``, with the density ``friendsim analyze``
    reports for W at T (without it, the directed strengths, every pair with one)."""
    from friendsim.analysis.analyze import tie_params_from_manifest
    from friendsim.analysis.summary import theta_key

    dropped = isolated = 0
    for path in runs.values():
        run = api.open_run(path)
        _, thetas = tie_params_from_manifest(run.manifest)
        code, stdout, err = cli("analyze", path, "--json")
        assert code == 0, err
        ties = json.loads(stdout)["network"]["ties"]
        reported = {row["window"]: row["thetas"] for row in ties["per_window"]}
        before = tree(path)
        for w in ended(run):
            graphs = run.graphs(window=w)
            for th in thetas:
                out = tmp_path / f"{path.name}-{w}-{th}.graphml"
                code, stdout, err = cli(
                    "log", "export", path, "--table", "ties", "--format", "graphml",
                    "--window", w, "--theta", th, "--out", out,
                )  # fmt: skip
                assert code == 0, err
                assert f"window {w} at theta={th:g}" in stdout and "thresholds" not in stdout
                g, want = nx.read_graphml(out), graphs.ties[th]
                assert not g.is_directed()
                assert {k: g.graph[k] for k in ("window", "table", "theta")} == {
                    "window": w, "table": "ties", "theta": th,
                }  # fmt: skip
                assert sorted(g.nodes) == sorted(want.nodes) == sorted(graphs.follow.nodes)
                assert {frozenset(e): d for *e, d in g.edges(data=True)} == {
                    frozenset(e): d for *e, d in want.edges(data=True)
                }, (path.name, w, th)
                metrics = reported[w][theta_key(th)]
                assert (metrics["nodes"], metrics["edges"]) == (len(g), g.number_of_edges())
                assert nx.density(g) == pytest.approx(metrics["density"], abs=1e-12)
                directed = {frozenset(pair) for pair in graphs.tie_strengths}
                dropped += len(directed) - g.number_of_edges()
                isolated += nx.number_of_isolates(g)
        assert tree(path) == before
    assert dropped > 0 and isolated > 0  # the threshold and the isolated agents were exercised


def test_graphml_at_a_theta_the_run_does_not_report_says_so(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    from friendsim.analysis.ties import tie_graph

    run = api.open_run(runs["continuous"])
    graphs = run.graphs(window=3)
    out = tmp_path / "ties.graphml"
    code, stdout, err = cli(
        "log", "export", runs["continuous"], "--table", "ties", "--theta", 0.15, "--out", out
    )
    assert code == 0, err
    assert "theta=0.15 is not one of the run's [ties] thresholds (0.01, 0.05, 0.1)" in stdout
    g = nx.read_graphml(out)
    want = tie_graph(graphs.tie_strengths, theta=0.15, nodes=graphs.follow.nodes)
    assert 0 < g.number_of_edges() < graphs.ties[0.1].number_of_edges()
    assert set(g.nodes) == set(want.nodes)
    assert {frozenset(e): d for *e, d in g.edges(data=True)} == {
        frozenset(e): d for *e, d in want.edges(data=True)
    }


def test_theta_out_of_range_or_without_ties_graphml_exits_2_and_writes_nothing(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run = runs["rounds"]
    g = tmp_path / "t.graphml"
    for bad in ("0", "-0.1", "1.5", "nan"):
        refused("log", "export", run, "--table", "ties", "--theta", bad, "--out", g,
                words=("--theta", "(0, 1]"), out=g)  # fmt: skip
    for table in ("follows", "interactions"):
        refused("log", "export", run, "--table", table, "--theta", 0.1, "--out", g,
                words=("--theta", "--table ties", f"not --table {table}"), out=g)  # fmt: skip
    for table in ("events", "rewards"):
        out = tmp_path / "t.jsonl"
        refused("log", "export", run, "--table", table, "--theta", 0.1, "--out", out,
                words=("--theta", "--table ties"), out=out)  # fmt: skip
    for fmt in ("jsonl", "parquet"):
        out = tmp_path / f"t.{fmt}"
        out.write_text("old\n")
        refused("log", "export", run, "--table", "ties", "--format", fmt, "--theta", 0.1,
                "--out", out, words=("--theta", "--format graphml", f"not {fmt}"),
                out=out)  # fmt: skip


def refused(*argv: object, words: tuple[str, ...], out: Path) -> None:
    code, stdout, err = cli(*argv)
    assert code == 2 and stdout == "", (argv, code, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    assert not out.exists() or out.read_text() == "old\n"
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []


def test_bad_input_exits_2_and_writes_nothing(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["rounds"]
    out = tmp_path / "t.jsonl"
    refused("log", "export", run, "--table", "ties", "--window", 9, "--out", out,
            words=("window 9 never ended", "1..3"), out=out)  # fmt: skip
    out.write_text("old\n")
    refused("log", "export", run, "--table", "follows", "--window", 0, "--out", out,
            words=("window 0 never ended",), out=out)  # fmt: skip
    out.unlink()
    refused("log", "export", tmp_path, "--table", "ties", "--out", out,
            words=("no events database",), out=out)  # fmt: skip
    refused("log", "export", run, "--format", "graphml", "--out", out,
            words=("--table ties, follows or interactions",), out=out)  # fmt: skip
    refused("log", "export", run, "--table", "rewards", "--window", 1, "--out", out,
            words=("--window",), out=out)  # fmt: skip
    g = tmp_path / "t.graphml"
    refused("log", "export", run, "--table", "ties", "--window", 7, "--out", g,
            words=("window 7 never ended",), out=g)  # fmt: skip


def test_parquet_without_pyarrow_names_the_extra(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    out = tmp_path / "t.parquet"
    refused("log", "export", runs["rounds"], "--table", "ties", "--out", out,
            words=("friendsim[parquet]",), out=out)  # fmt: skip


def _as_text_run(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["ties"]["evidence"] = "text"
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def test_text_evidence_needs_its_stored_scores(runs: dict[str, Path], tmp_path: Path) -> None:
    """Ties of a text-evidence run come from ``tie_scores.json`` when it belongs to the log,
    as ``friendsim analyze`` reads them; without it, a one-line exit 2 and no file."""
    from friendsim.analysis.analyze import tie_params_from_manifest
    from friendsim.analysis.tie_evidence import (
        TextEvidence,
        log_stamp,
        stored_tie_scores,
        write_tie_scores,
    )
    from friendsim.analysis.ties import tie_windows

    run_dir = _as_text_run(runs["rounds"], tmp_path / "text")
    out = tmp_path / "ties.jsonl"
    refused("log", "export", run_dir, "--table", "ties", "--out", out,
            words=("tie_scores.json", "friendsim analyze"), out=out)  # fmt: skip
    assert export(run_dir, "follows", tmp_path / "f.jsonl") == []  # no ties needed

    run = api.open_run(run_dir)
    params, _ = tie_params_from_manifest(run.manifest)
    assert params.method == "text"
    events = list(run.events())
    active = {
        tw.window: sorted(tw.active)
        for tw in tie_windows(events, params=dataclasses.replace(params, method="signals"))
    }
    scores = {w: dict.fromkeys(pairs[:2], 0.2) for w, pairs in active.items()}
    first_w = min(w for w, pairs in scores.items() if pairs)
    evidence = TextEvidence(per_window=scores)
    stamp = log_stamp(run.db)
    write_tie_scores(
        run_dir, stored_tie_scores(log=stamp, params=params, model="m", evidence=evidence)
    )
    rows = export(run_dir, "ties", out)
    expected = [
        {"window": tw.window, "source": v, "target": u, "strength": a}
        for tw in tie_windows(events, params=params, text_evidence=scores)
        for (v, u), a in sorted(tw.strengths.items())
    ]
    assert rows == expected
    first = {(r["source"], r["target"]): r["strength"] for r in rows if r["window"] == first_w}
    assert first == dict.fromkeys(scores[first_w], pytest.approx(0.2 - params.xi))


def with_outside_dms(run: Path, tmp_path: Path) -> Path:
    """``run``'s log imported with two DMs added: one between windows 1 and 2, one in a window 2
    started again before it ended (the rewards count neither in any window)."""
    src = tmp_path / "events.jsonl"
    assert cli("log", "export", run, src)[0] == 0
    lines = [json.loads(x) for x in src.read_text(encoding="utf-8").splitlines()]

    def dm(dm_id: int, t: float, actor: str, to: str) -> dict[str, Any]:
        payload = {"dm_id": dm_id, "recipient": to, "text": "hi", "v": 1}
        return {"actor": actor, "kind": "dm_sent", "payload": payload, "seq": 0, "t": t}

    end1 = next(i for i, x in enumerate(lines) if x["kind"] == "window_ended")
    start2 = next(i for i, x in enumerate(lines) if x["kind"] == "window_started" and i > end1)
    t2 = lines[start2]["t"]
    edited = [
        *lines[: end1 + 1],
        dm(0, lines[end1]["t"], "a00", "a01"),  # between windows 1 and 2
        dict(lines[start2]),
        dm(0, t2, "a02", "a03"),  # abandoned: window 2 starts again
        *lines[start2:],
    ]
    n_dms, renumber = 0, {}  # DM ids count up in log order: number them again
    for i, x in enumerate(edited):
        x["seq"] = i + 1
        if x["kind"] == "dm_sent":
            n_dms += 1
            p = x["payload"] = dict(x["payload"])
            if p["dm_id"]:  # one of the run's DMs (the two added have id 0)
                renumber[p["dm_id"]] = n_dms
            p["dm_id"] = n_dms
            if p.get("reply_to") is not None:
                p["reply_to"] = renumber[p["reply_to"]]
    src.write_text("".join(json.dumps(x) + "\n" for x in edited), encoding="utf-8")
    db = tmp_path / "imported.db"
    code, _, err = cli("log", "import", src, db)
    assert code == 0, err
    return db


def test_interactions_outside_windows_are_in_no_row_and_the_export_says_so(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """A DM between two windows and one in a window started again before it ended (a log
    imported with ``log import``) count towards no window in the rewards and the ties; the
    interactions table holds them in no row either, and the command now says how many it left
    out (it said nothing, so the rows summed to less than the log's interactions silently)."""
    from friendsim.analysis.graphs import interaction_graph
    from friendsim.analysis.rewards_cli import iter_events

    db = with_outside_dms(runs["rounds"], tmp_path)
    out = tmp_path / "inter.jsonl"
    code, stdout, err = cli("log", "export", db, "--table", "interactions", "--out", out)
    assert code == 0, err
    assert "2 interactions up to the end of window 3 were outside any window" in stdout, stdout
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert rows == export(runs["rounds"], "interactions", tmp_path / "run.jsonl")
    whole = interaction_graph(iter_events(db))
    assert sum(r["count"] for r in rows) + 2 == sum(d["weight"] for *_, d in whole.edges(data=True))
    code, stdout, err = cli(
        "log", "export", db, "--table", "interactions", "--window", 1, "--out", tmp_path / "1.jsonl"
    )
    assert code == 0 and "outside any window" not in stdout, (stdout, err)
    code, stdout, err = cli(
        "log", "export", db, "--table", "interactions", "--format", "graphml", "--window", 2,
        "--out", tmp_path / "2.graphml",
    )  # fmt: skip
    assert code == 0, err
    assert "2 interactions up to the end of window 2 were outside any window" in stdout, stdout


def test_events_parquet_puts_a_window_started_again_where_the_rewards_count_it(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """The events file's ``window`` column gave the events after an abandoned ``window_started``
    that window's number, so a count per window (docs/api.md's DuckDB example) held events the
    rewards count in no window; they are null now, and each window holds what the run's did."""
    pq = pytest.importorskip("pyarrow.parquet")
    db = with_outside_dms(runs["rounds"], tmp_path)

    def per_window(log: Path, out: Path) -> dict[int | None, Counter[str]]:
        code, _, err = cli("log", "export", log, "--format", "parquet", "--out", out)
        assert code == 0, err
        got: dict[int | None, Counter[str]] = defaultdict(Counter)
        for row in pq.read_table(out).to_pylist():
            got[row["window"]][row["kind"]] += 1
        return got

    edited = per_window(db, tmp_path / "edited.parquet")
    original = per_window(runs["rounds"], tmp_path / "original.parquet")
    assert {w: c for w, c in edited.items() if w is not None} == {
        w: c for w, c in original.items() if w is not None
    }
    assert edited[None] - original[None] == Counter({"dm_sent": 2, "window_started": 1})
