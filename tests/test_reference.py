"""Reference networks: shipped data, live karate club, range flags, user edge lists."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

from friendsim.analysis.reference import (
    REFERENCE_METRICS,
    EdgeListError,
    compare_homophily,
    compare_to_reference,
    format_table,
    karate_metrics,
    load_edge_list,
    load_reference,
    reference_metrics,
    side_by_side,
)


def test_shipped_data_mean_and_range_consistent() -> None:
    ref = load_reference()
    assert len(ref.networks) == 8
    for m in REFERENCE_METRICS:
        values = [float(n[m]) for n in ref.networks]
        assert ref.mean[m] == pytest.approx(sum(values) / 8, abs=6e-4)
        assert ref.ranges[m] == (min(values), max(values))
    assert ref.mean["density"] == 0.1975 and ref.mean["modularity"] == 0.376
    assert ref.homophily["religion"] == (1.63, 2.08)
    assert ref.homophily["political"] == (1.40, 1.40)


def test_karate_recomputed_live_matches_table() -> None:
    live = karate_metrics(seed=0)
    row = next(n for n in load_reference().networks if n["name"] == "Zachary karate club")
    assert live["nodes"] == row["n"] == 34
    assert live["density"] == pytest.approx(0.1390, abs=5e-5)
    assert live["clustering"] == pytest.approx(0.5706, abs=5e-5)
    assert live["lcc"] == 1.0
    assert live["path_ln"] == pytest.approx(0.6829, abs=5e-5)
    assert live["modularity"] == pytest.approx(0.415, abs=0.02)
    for m in ("density", "clustering", "lcc", "path_ln"):
        assert live[m] == pytest.approx(row[m], abs=5e-5)


def test_compare_flags_inside_and_outside() -> None:
    out = compare_to_reference(
        {"density": 0.5, "clustering": 0.3, "lcc": 0.95, "path_ln": None, "modularity": 0.2}
    )
    assert out["density"]["inside"] is False  # above max 0.4688
    assert out["clustering"]["inside"] is True
    assert out["lcc"]["inside"] is True
    assert out["path_ln"]["inside"] is None
    assert out["modularity"]["inside"] is False  # below min 0.202
    assert out["density"]["min"] == 0.0642 and out["density"]["mean"] == 0.1975


def test_compare_homophily_with_aliases() -> None:
    out = compare_homophily({"Sex": 1.1, "ethnicity": 2.5, "hobby": 1.3, "political": 1.40})
    assert out["Sex"] == {
        "value": 1.1,
        "literature": "gender",
        "range": [0.96, 1.19],
        "inside": True,
    }
    assert out["ethnicity"]["inside"] is False
    assert out["hobby"]["range"] is None and out["hobby"]["inside"] is None
    assert out["political"]["inside"] is True


def test_edge_list_whitespace_csv_comments_header(tmp_path: Path) -> None:
    p = tmp_path / "net.csv"
    p.write_text("source,target\n# comment\na,b\nb , c , 2.5\n\nc\td  # trailing\na b\n")
    g = load_edge_list(p)
    assert set(g.nodes) == {"a", "b", "c", "d"}
    assert {frozenset(e) for e in g.edges} == {frozenset("ab"), frozenset("bc"), frozenset("cd")}
    m = reference_metrics(g)
    assert m["density"] == pytest.approx(0.5)  # path a-b-c-d: 3 of 6
    assert m["avg_path"] == pytest.approx(10 / 6)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a b\nc\n", "line 2: expected 'u v'"),
        ("a b\nc d e f\n", "line 2: .*4 field"),
        ("a b\n\nb c heavy\n", "line 3: third field 'heavy'"),
        ("a b\nx x\n", "line 2: self-loop"),
        ("# only comments\n\n", "no edges"),
    ],
)
def test_edge_list_errors_name_the_line(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(EdgeListError, match=match) as info:
        load_edge_list(p)
    assert str(p) in str(info.value)


def test_missing_file_is_typed_error(tmp_path: Path) -> None:
    with pytest.raises(EdgeListError, match="cannot read"):
        load_edge_list(tmp_path / "nope.txt")


def test_side_by_side_table(tmp_path: Path) -> None:
    p = tmp_path / "user.txt"
    p.write_text("\n".join(f"{u} {v}" for u, v in nx.cycle_graph(6).edges()))
    run = {"nodes": 30, "density": 0.2, "clustering": 0.4, "lcc": 1.0, "path_ln": 0.6,
           "modularity": 0.3}  # fmt: skip
    rows = side_by_side({"run θ=0.05": run}, user_networks={"ring": load_edge_list(p)})
    kinds = [r["kind"] for r in rows]
    assert kinds == ["run", "user", "live"] + ["reference"] * 8 + ["mean"]
    ring = rows[1]
    assert ring["n"] == 6 and ring["density"] == pytest.approx(0.4)
    assert ring["clustering"] == 0.0 and ring["lcc"] == 1.0
    table = format_table(rows)
    assert "| run θ=0.05 | run | 30 | 0.2000 | 0.4000 | 1.0000 | 0.6000 | 0.3000 |" in table
    assert "| reference mean | mean | — | 0.1975 |" in table
    assert table.count("\n") == len(rows) + 1
