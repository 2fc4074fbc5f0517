"""Sweep files: grid expansion, deterministic seeds, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from friendsim.sweep.config import SweepConfigError, derive_seed, load_sweep, parse_sweep

BASE = """
[experiment]
name = "s"
seed = 42
rounds = 2
[agents]
count = 4
policy = "baseline"
"""


def _write(tmp_path: Path, sweep: str) -> Path:
    p = tmp_path / "sweep.toml"
    p.write_text(BASE + sweep, encoding="utf-8")
    return p


def test_grid_cells_seeds_and_overrides(tmp_path: Path) -> None:
    spec = load_sweep(
        _write(
            tmp_path,
            '[sweep]\nreplications = 3\ngrid = { "coach.enabled" = [true, false], '
            'feed = { ranker = ["full", "chrono"] } }\n',
        )
    )
    cells = spec.cells()
    assert [c.name for c in cells] == [
        "coach.enabled-true__feed.ranker-full",
        "coach.enabled-true__feed.ranker-chrono",
        "coach.enabled-false__feed.ranker-full",
        "coach.enabled-false__feed.ranker-chrono",
    ]
    plans = spec.plans()
    assert len(plans) == 12
    assert plans[0].rel_dir == "coach.enabled-true__feed.ranker-full/rep0"
    # replication k has the same seed in every cell; seeds differ between replications
    by_rep = {}
    for p in plans:
        by_rep.setdefault(p.rep, set()).add(p.seed)
        assert p.data["experiment"]["seed"] == p.seed
    assert all(len(s) == 1 for s in by_rep.values())
    assert len({next(iter(s)) for s in by_rep.values()}) == 3
    assert spec.seeds == tuple(derive_seed(42, k) for k in range(3))
    assert derive_seed(42, 0) == derive_seed(42, 0) != derive_seed(43, 0)
    last = plans[-1].data
    assert last["coach"]["enabled"] is False and last["feed"]["ranker"] == "chrono"
    assert last["agents"] == {"count": 4, "policy": "baseline"}
    assert spec.base["experiment"]["seed"] == 42  # the base is not mutated by expansion


def test_explicit_seeds_and_empty_grid(tmp_path: Path) -> None:
    spec = load_sweep(_write(tmp_path, "[sweep]\nreplications = 2\nseeds = [7, 9]\n"))
    assert [c.name for c in spec.cells()] == ["base"]
    assert [p.seed for p in spec.plans()] == [7, 9]


@pytest.mark.parametrize(
    ("sweep", "key", "words"),
    [
        (
            '[sweep]\ngrid = { "ties.method" = ["heuristic", "text"] }\n',
            '[sweep].grid."ties.method"',
            "unknown key",
        ),
        (
            '[sweep]\ngrid = { "feed.ranker" = ["full", "sideways"] }\n',
            '[sweep].grid."feed.ranker"',
            "sideways",
        ),
        (
            '[sweep]\ngrid = { "experiment.seed" = [1, 2] }\n',
            '[sweep].grid."experiment.seed"',
            "cannot be swept",
        ),
        (
            '[sweep]\ngrid = { "coach.enabled" = [] }\n',
            '[sweep].grid."coach.enabled"',
            "non-empty list",
        ),
        (
            '[sweep]\ngrid = { "coach.enabled" = true }\n',
            '[sweep].grid."coach.enabled"',
            "non-empty list",
        ),
        ("[sweep]\nreplications = 0\n", "[sweep].replications", "1..1000"),
        ("[sweep]\nreplications = 2\nseeds = [1]\n", "[sweep].seeds", "2 integers"),
        # the same seed twice is the same run twice: a false replication, a too-narrow interval
        ("[sweep]\nreplications = 3\nseeds = [4, 5, 4]\n", "[sweep].seeds", "seed 4 twice"),
        ("[sweep]\nrepetitions = 2\n", "[sweep].repetitions", "unknown key"),
        ("", "[sweep]", "needs a [sweep] table"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, sweep: str, key: str, words: str) -> None:
    path = _write(tmp_path, sweep)
    with pytest.raises(SweepConfigError) as info:
        load_sweep(path)
    assert info.value.key == key
    assert words in str(info.value)
    assert str(path) in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SweepConfigError, match="not found"):
        load_sweep(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sweep\n")
    with pytest.raises(SweepConfigError, match="not valid TOML"):
        load_sweep(bad)
    with pytest.raises(SweepConfigError, match="must be a table"):
        parse_sweep({"sweep": {"grid": [1, 2]}})


@pytest.mark.parametrize(
    ("grid", "key", "message"),
    [
        ('"ties.xi" = [0.1, nan]', '"ties.xi"', "must be a finite number"),
        (
            '"experiment.name.x" = [1, 2]',
            '"experiment.name.x"',
            "'experiment.name' is 's', not a table",
        ),
    ],
    ids=["non-finite value", "key into a value that is not a table"],
)
def test_a_bad_grid_entry_names_its_grid_key(
    tmp_path: Path, grid: str, key: str, message: str
) -> None:
    path = _write(tmp_path, f"[sweep]\ngrid = {{ {grid} }}\n")
    with pytest.raises(SweepConfigError) as info:
        load_sweep(path)
    assert info.value.key == f"[sweep].grid.{key}"
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("agents", "sweep", "key"),
    [
        ('personas = "nofile.jsonl"\n', '[sweep]\ngrid = { "coach.enabled" = [true, false] }\n',
         "[agents].personas"),
        ("", '[sweep]\ngrid = { "agents.personas" = ["synthetic", "nofile.jsonl"] }\n',
         '[sweep].grid."agents.personas"'),
    ],
    ids=["base", "grid"],
)  # fmt: skip
def test_missing_persona_file_is_found_at_load(
    tmp_path: Path, agents: str, sweep: str, key: str
) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text(BASE + agents + sweep, encoding="utf-8")
    with pytest.raises(SweepConfigError) as info:
        load_sweep(path)
    assert info.value.key == key
    assert f"persona file not found: {tmp_path / 'nofile.jsonl'}" in str(info.value)
    (tmp_path / "nofile.jsonl").write_text("{}\n")  # relative to the sweep file, as runs read it
    assert load_sweep(path).cells()


GRID2 = '[sweep]\ngrid = { "coach.enabled" = [true, false], "feed.ranker" = ["full", "chrono"] }\n'


@pytest.mark.parametrize(
    ("labels", "key", "words"),
    [
        ('{ "feed.limit" = ["a", "b"] }', '[sweep].labels."feed.limit"', "not a grid key"),
        ('{ "coach.enabled" = ["on"] }', '[sweep].labels."coach.enabled"', "list of 2"),
        ('{ "coach.enabled" = ["on", "off", "x"] }', '[sweep].labels."coach.enabled"', "list of 2"),
        ('{ "coach.enabled" = ["on", ""] }', '[sweep].labels."coach.enabled"', "non-empty"),
        ('{ "coach.enabled" = ["on", 2] }', '[sweep].labels."coach.enabled"', "strings"),
        ('{ "coach.enabled" = "on" }', '[sweep].labels."coach.enabled"', "list of 2"),
        ('{ "feed.ranker" = ["same", "same"] }', '[sweep].labels."feed.ranker"', "'same' twice"),
        ('["on", "off"]', "[sweep].labels", "must be a table"),
    ],
)
def test_label_errors_name_the_key(tmp_path: Path, labels: str, key: str, words: str) -> None:
    path = _write(tmp_path, f"{GRID2}labels = {labels}\n")
    with pytest.raises(SweepConfigError) as info:
        load_sweep(path)
    assert info.value.key == key
    assert words in str(info.value) and str(path) in str(info.value)


def test_a_bad_label_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from friendsim.cli import main

    path = _write(tmp_path, f'{GRID2}labels = {{ "coach.enabled" = ["on"] }}\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert '[sweep].labels."coach.enabled"' in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cell_labels_given_or_made_from_the_values(tmp_path: Path) -> None:
    """Given labels join per key (``key=label`` with several keys); without them a scalar reads
    ``key=value`` and a table only the entries that differ between its key's values. Directory
    names do not change with labels."""
    plain = load_sweep(_write(tmp_path, GRID2))
    labelled = load_sweep(
        _write(tmp_path, f'{GRID2}labels = {{ coach = {{ enabled = ["on", "off"] }} }}\n')
    )
    assert [c.name for c in labelled.cells()] == [c.name for c in plain.cells()]
    assert [c.label for c in plain.cells()] == [
        "coach.enabled=true, feed.ranker=full",
        "coach.enabled=true, feed.ranker=chrono",
        "coach.enabled=false, feed.ranker=full",
        "coach.enabled=false, feed.ranker=chrono",
    ]
    assert [c.label for c in labelled.cells()] == [
        "coach.enabled=on, feed.ranker=full",
        "coach.enabled=on, feed.ranker=chrono",
        "coach.enabled=off, feed.ranker=full",
        "coach.enabled=off, feed.ranker=chrono",
    ]
    record = labelled.to_json()
    assert [c["label"] for c in record["cells"]] == [c.label for c in labelled.cells()]
    assert record["labels"] == {"coach.enabled": ["on", "off"]}

    one = load_sweep(
        _write(
            tmp_path,
            '[sweep]\ngrid = { "moderation.params" = [\n'
            '  { false_action = "none", toxic_action = "none" },\n'
            '  { false_action = "label", toxicity = 0.8, keywords = ["idiot", "liar"] },\n'
            '  { false_action = "remove", toxicity = 0.8, keywords = ["idiot", "liar"] },\n'
            "] }\n",
        )
    )
    assert [c.label for c in one.cells()] == [
        "false_action=none, toxic_action=none",
        "false_action=label, toxicity=0.8, keywords=[idiot, liar]",
        "false_action=remove, toxicity=0.8, keywords=[idiot, liar]",
    ]
    named = load_sweep(
        _write(
            tmp_path,
            '[sweep]\ngrid = { "feed.ranker" = ["full", "chrono"] }\n'
            'labels = { "feed.ranker" = ["ranked", "by time"] }\n',
        )
    )
    assert [c.label for c in named.cells()] == ["ranked", "by time"]


def test_the_examples_label_their_cells() -> None:
    root = Path(__file__).resolve().parents[1] / "examples"
    labels = {
        "misinformation_sweep.toml": ["none", "label", "remove"],
        "paper_sweep.toml": ["coach on", "coach off"],
    }
    for name, expected in labels.items():
        assert [c.label for c in load_sweep(root / name).cells()] == expected, name
