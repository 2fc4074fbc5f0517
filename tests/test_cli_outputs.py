"""What the commands write, and where: never over a run's own files, never into a bad path, and
a run that a command only reads stays byte-for-byte as it was (its lock file included)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
from pathlib import Path

import pytest

from friendsim.cli import main as cli_main

RUN_FILES = ("events.db", "manifest.json", "personas.jsonl", "run.lock")
CONFIG = (
    '[experiment]\nname="o"\nseed=7\nrounds=3\nn_actions=2\n'
    '[agents]\ncount=4\npolicy="baseline"\n[coach]\nenabled=true\nkind="rule"\n'
)


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pristine")
    cfg = tmp / "t.toml"
    cfg.write_text(CONFIG)
    assert cli("run", cfg, "--out", tmp / "run", "--quiet")[0] == 0
    return tmp / "run"


@pytest.fixture()
def run(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(pristine, copy)
    return copy


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the sha256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def refused(argv: tuple[str | Path, ...], *words: str) -> str:
    code, _, err = cli(*argv)
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)
    return err


@pytest.mark.parametrize("name", RUN_FILES)
@pytest.mark.parametrize(
    "argv",
    [
        ("report", "{run}", "--out", "{target}"),
        ("log", "export", "{run}", "{target}"),
        ("log", "export", "{run}", "--table", "rewards", "--out", "{target}"),
        ("log", "import", "{jsonl}", "{target}"),
        ("replay", "{run}", "--redrive", "--out", "{target}"),
        ("personas", "generate", "--n", "3", "--out", "{target}"),
    ],
    ids=["report", "export", "export-rewards", "import", "redrive", "personas"],
)
def test_no_command_writes_over_a_file_of_a_run(
    run: Path, tmp_path: Path, argv: tuple[str, ...], name: str
) -> None:
    jsonl = tmp_path / "events.jsonl"
    assert cli("log", "export", run, jsonl)[0] == 0
    before = tree(run)
    args = tuple(a.format(run=run, target=run / name, jsonl=jsonl) for a in argv)
    refused(args, name)
    assert tree(run) == before


def test_a_link_to_a_file_of_a_run_is_that_file(run: Path, tmp_path: Path) -> None:
    link = tmp_path / "innocent.html"
    link.symlink_to(run / "manifest.json")
    before = tree(run)
    refused(("report", run, "--out", link), "manifest.json")
    assert tree(run) == before
