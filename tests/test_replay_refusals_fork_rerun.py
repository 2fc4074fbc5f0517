"""A fork or a re-run refused by its re-execution before it recorded anything (here: the
population does not fit this machine's memory) leaves no ``--out`` folder behind, as a refused
resume does: an ``--out`` it created is removed, an empty one it was given is left empty, one
that was not empty is never touched; the source run is untouched."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from test_replay_support import checksums, config, make_run, mind_factory

from friendsim.replay.fork import fork
from friendsim.replay.rerun import rerun
from friendsim.rundir.errors import RunInputError
from friendsim.runtime import assembly
from friendsim.runtime.config import ConfigError


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("refusals") / "run"
    asyncio.run(make_run(run, config(rounds=3)))
    return run


def re_execute(how: str, source: Path, out: Path) -> None:
    if how == "fork":
        asyncio.run(
            fork(source, config(rounds=4), at_window=2, out_dir=out, llm_factory=mind_factory)
        )
    else:
        asyncio.run(rerun(source, out, llm_factory=mind_factory))


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("how", ["fork", "rerun"])
@pytest.mark.parametrize("out", ["new", "new/deep/out", "empty"])
def test_a_refused_fork_or_rerun_leaves_its_out_folder_as_it_found_it(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, out: str
) -> None:
    original = checksums(source)
    if out == "empty":
        (tmp_path / out).mkdir()
    before = names(tmp_path)
    monkeypatch.setattr(assembly, "machine_memory", lambda: 1024)
    with pytest.raises(ConfigError, match="agents need about"):
        re_execute(how, source, tmp_path / out)
    assert names(tmp_path) == before
    if out == "empty":
        assert names(tmp_path / out) == []
    assert checksums(source) == original


@pytest.mark.parametrize("how", ["fork", "rerun"])
def test_a_refused_fork_or_rerun_never_empties_a_folder_it_did_not_fill(
    source: Path, tmp_path: Path, how: str
) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("someone else's")
    with pytest.raises(RunInputError, match="not an empty directory"):
        re_execute(how, source, out)
    assert names(out) == ["notes.txt"]
    assert (
        hashlib.sha256((out / "notes.txt").read_bytes()).hexdigest()
        == hashlib.sha256(b"someone else's").hexdigest()
    )
