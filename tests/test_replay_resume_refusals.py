"""A refused resume leaves nothing behind: the staging folder (``RUN.resuming``) or the ``--out``
folder it made is removed when the resume is refused before it recorded anything, an empty
``--out`` given to it is left empty, an earlier interrupted resume's staging folder (its paid-for
answers and its accounting) is left for the next resume, and the original run is untouched."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_replay_support import checksums, config, mind_factory

from friendsim.replay.resume import STAGING_SUFFIX, resume
from friendsim.rundir.errors import RunInputError
from friendsim.runtime import assembly
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import ConfigError
from friendsim.runtime.engine import RunInterrupted
from friendsim.testing import stop_after_window


async def _interrupted_run(run: Path) -> None:
    """A run of 3 windows stopped after its first: resumable."""
    stop, listener = stop_after_window(1)
    with pytest.raises(RunInterrupted):
        await run_experiment(
            config(rounds=3), out_dir=run, llm_factory=mind_factory, stop=stop, listener=listener
        )


def _tree(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` (relative), a file's sha256 or ``"/"`` for a folder."""
    return {
        str(p.relative_to(folder)): "/"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.name != "run.lock"
    }


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _refuse_for_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The re-execution's own check (the population against this machine's memory) refuses."""
    monkeypatch.setattr(assembly, "machine_memory", lambda: 1024)


@pytest.mark.parametrize("out", [None, "resumed", "new/deep/resumed"])
async def test_a_resume_refused_before_it_ran_leaves_no_staging_or_out_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str | None
) -> None:
    run = tmp_path / "run"
    await _interrupted_run(run)
    before, original = _names(tmp_path), checksums(run)
    _refuse_for_memory(monkeypatch)

    with pytest.raises(ConfigError, match="agents need about"):
        await resume(run, out_dir=None if out is None else tmp_path / out, llm_factory=mind_factory)

    assert _names(tmp_path) == before == ["run"]
    assert checksums(run) == original


async def test_an_empty_out_folder_given_to_a_refused_resume_is_left_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, out = tmp_path / "run", tmp_path / "resumed"
    await _interrupted_run(run)
    out.mkdir()
    _refuse_for_memory(monkeypatch)
    with pytest.raises(ConfigError):
        await resume(run, out_dir=out, llm_factory=mind_factory)
    assert out.is_dir() and _names(out) == []


async def test_a_refused_resume_never_empties_an_out_folder_it_did_not_fill(
    tmp_path: Path,
) -> None:
    run, out = tmp_path / "run", tmp_path / "taken"
    await _interrupted_run(run)
    out.mkdir()
    (out / "notes.txt").write_text("someone else's")
    with pytest.raises(RunInputError, match="not an empty directory"):
        await resume(run, out_dir=out, llm_factory=mind_factory)
    assert _tree(out) == {"notes.txt": hashlib.sha256(b"someone else's").hexdigest()}


async def _interrupted_resume(run: Path) -> Path:
    """``run`` resumed in place and stopped again: its staging folder stays for the next resume
    (its LLM cache and its manifest, what it spent)."""
    await _interrupted_run(run)
    stop, listener = stop_after_window(2)
    with pytest.raises(RunInterrupted):
        await resume(run, llm_factory=mind_factory, stop=stop, listener=listener)
    staging = run.with_name(run.name + STAGING_SUFFIX)
    assert (staging / "manifest.json").is_file() and (staging / "llm_cache.db").is_file()
    return staging


def _answers(cache: Path) -> set[str]:
    conn = sqlite3.connect(cache)
    try:
        return {row[0] for row in conn.execute("SELECT key FROM llm_cache")}
    finally:
        conn.close()


async def test_a_resume_refused_early_leaves_an_earlier_resumes_staging_folder_as_it_was(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    staging = await _interrupted_resume(run)
    before = _tree(tmp_path)
    (run / "personas.jsonl").unlink()  # the run cannot be re-executed: refused at its input
    with pytest.raises(RunInputError, match="persona file"):
        await resume(run, llm_factory=mind_factory)
    after = _tree(tmp_path)
    assert after == {k: v for k, v in before.items() if k != "run/personas.jsonl"}
    assert staging.is_dir()


async def test_a_resume_refused_by_its_re_execution_hands_on_an_earlier_resumes_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused once the earlier staging folder was taken over: its manifest (what it spent) and
    its answers are back in the staging folder, for the next resume to count and reuse."""
    run = tmp_path / "run"
    staging = await _interrupted_resume(run)
    manifest, answers = (staging / "manifest.json").read_bytes(), _answers(staging / "llm_cache.db")
    listing, original = _names(tmp_path), checksums(run)
    with monkeypatch.context() as patch:
        _refuse_for_memory(patch)
        with pytest.raises(ConfigError):
            await resume(run, llm_factory=mind_factory)

    assert _names(tmp_path) == listing == ["run", "run.resuming"]
    assert (staging / "manifest.json").read_bytes() == manifest
    assert _answers(staging / "llm_cache.db") >= answers
    assert checksums(run) == original

    report = await resume(run, llm_factory=mind_factory)  # the next resume counts it
    assert report.status == "completed"
    segments = json.loads((run / "manifest.json").read_text())["segments"]
    assert [s["kind"] for s in segments] == ["original", "resume", "resume"]
    assert [s["status"] for s in segments] == ["interrupted", "interrupted", "completed"]


REFUSING_CLI = """
import sys
from friendsim.runtime import assembly
assembly.machine_memory = lambda: 1024  # the re-execution's own check refuses
from friendsim.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("out", [None, "resumed"])
def test_friendsim_run_resume_refused_exits_2_with_one_line_and_leaves_nothing(
    tmp_path: Path, out: str | None
) -> None:
    """The command a user types: ``friendsim run --resume RUN [--out DIR]`` refused by the
    re-execution's memory check exits 2 with one line naming the setting, no traceback, and
    leaves no staging or ``--out`` folder; the run is untouched and still resumable."""
    run = tmp_path / "run"
    asyncio.run(_interrupted_run(run))
    original = checksums(run)
    argv = ["run", "--resume", str(run), "--quiet"]
    if out is not None:
        argv += ["--out", str(tmp_path / out)]
    done = subprocess.run(
        [sys.executable, "-c", REFUSING_CLI, *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("friendsim run: "), done.stderr
    assert "[agents].count: 4 agents need about" in lines[0]
    assert _names(tmp_path) == ["run"] and checksums(run) == original
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
