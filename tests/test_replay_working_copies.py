"""Where ``run --resume`` and ``run --fork`` keep their copies of the old run, and that none is
left behind: not in the system's temporary directory (``TMPDIR`` points each child process at
a folder of the test's own, listed here), not beside the run once the command is done, and,
for a process killed with SIGKILL, only beside the run, where the next resume or fork removes
it. A working folder a live process holds is never removed by another."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_replay_support import config, make_run, mind_factory, rows

from friendsim.replay.fork import fork
from friendsim.rundir.errors import DivergenceError, RunLockedError
from friendsim.rundir.lock import RunLock
from friendsim.rundir.scratch import (
    NEW_PREFIX,
    NEW_STALE_S,
    WORK_LOCK,
    remove_stale,
    working_folder,
)

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

CHILD = """
import asyncio, json, sys, time
sys.path.insert(0, {tests!r})
from test_replay_support import config, mind_factory
import friendsim.replay.fork as fork_module
import friendsim.replay.resume as resume_module
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.engine import RunListener

spec = json.loads(sys.argv[2])
hold_at = spec.get("hold", {{}})

def hold(where):
    print("held", where, flush=True)
    if spec.get("wait") == "stdin":
        sys.stdin.readline()  # the parent has looked; go on
    else:
        time.sleep(600)  # held here until the parent kills the process

class Hold(RunListener):
    def window_ended(self, tally):
        if tally.window == hold_at.get("window_ended"):
            hold(tally.window)

def held_checks(real):
    def check(*args, **kwargs):
        hold("checks")
        return real(*args, **kwargs)
    return check

if hold_at.get("checks"):  # while the copies of the old run exist
    resume_module.check_answers_kept = held_checks(resume_module.check_answers_kept)
    fork_module.check_answers_kept = held_checks(fork_module.check_answers_kept)

if spec["do"] == "run":
    job = run_experiment(config(**spec["config"]), out_dir=sys.argv[1], llm_factory=mind_factory,
                         listener=Hold())
elif spec["do"] == "resume":
    job = resume_module.resume(sys.argv[1], llm_factory=mind_factory, listener=Hold())
else:
    job = fork_module.fork(spec["parent"], config(**spec["config"]), at_window=spec["at"],
                           out_dir=sys.argv[1], llm_factory=mind_factory, listener=Hold())
asyncio.run(job)
print("done", flush=True)
"""

RUN = {"rounds": 4, "agents": 4}
FORK = {"rounds": 5, "agents": 4, "coach": False}


class Child:
    """A child process doing ``spec`` on ``run`` with ``TMPDIR`` at ``tmpdir``."""

    def __init__(self, run: Path, spec: dict[str, Any], tmpdir: Path) -> None:
        tmpdir.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD.format(tests=str(TESTS)), str(run), json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env={**os.environ, "TMPDIR": str(tmpdir)},
        )

    def next_line(self) -> str:
        """The child's next ``held``/``done`` line (log lines may come first); "" at its end."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(("held", "done")):
                return line.strip()
        return ""

    def held(self) -> None:
        line = self.next_line()
        if not line.startswith("held"):
            self.kill()
            pytest.fail(f"the child did not reach its hold point ({line or 'it ended'})")

    def go_on(self) -> None:
        """Let a child held with ``wait = stdin`` finish; it must end well."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()
        assert self.next_line() == "done"
        assert self.proc.wait(timeout=120) == 0

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        assert self.proc.returncode == -signal.SIGKILL


def killed_at(run: Path, spec: dict[str, Any], tmpdir: Path) -> None:
    child = Child(run, spec, tmpdir)
    child.held()
    child.kill()


def working_folders(*folders: Path) -> list[Path]:
    """The working folders (friendsim's hidden ``.friendsim-*``) in ``folders``."""
    return sorted(p for f in folders for p in f.iterdir() if p.name.startswith(".friendsim-"))


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    run = tmp_path_factory.mktemp("full") / "run"
    asyncio.run(make_run(run, config(**RUN)))
    return rows(run / "events.db")


def test_a_resume_holds_no_copy_while_it_runs_and_leaves_none_when_done(
    tmp_path: Path, uninterrupted: list[Any]
) -> None:
    runs, tmpdir = tmp_path / "runs", tmp_path / "tmp"
    run = runs / "run"
    killed_at(run, {"do": "run", "config": RUN, "hold": {"window_ended": 1}}, tmpdir)
    resuming = Child(run, {"do": "resume", "hold": {"window_ended": 3}, "wait": "stdin"}, tmpdir)
    resuming.held()  # past the re-derived prefix, the run going on
    assert entries(tmpdir) == []  # the log copy was in TMPDIR for the whole run
    assert working_folders(runs) == []  # released before the run began
    resuming.go_on()
    assert entries(tmpdir) == []
    assert working_folders(runs) == []
    assert rows(run / "events.db") == uninterrupted


def test_a_fork_holds_no_copy_while_it_runs_and_leaves_none_when_done(tmp_path: Path) -> None:
    parent, tmpdir = tmp_path / "runs" / "parent", tmp_path / "tmp"
    asyncio.run(make_run(parent, config(**RUN)))
    out = tmp_path / "forks" / "fork"
    spec = {"do": "fork", "parent": str(parent), "at": 2, "config": FORK}
    forking = Child(out, {**spec, "hold": {"window_ended": 4}, "wait": "stdin"}, tmpdir)
    forking.held()
    assert entries(tmpdir) == []
    assert working_folders(parent.parent, out.parent) == []
    forking.go_on()
    assert entries(tmpdir) == []
    assert working_folders(parent.parent, out.parent) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    prefix = manifest["fork"]["prefix_last_seq"]
    assert rows(out / "events.db")[:prefix] == rows(parent / "events.db")[:prefix]


def test_a_killed_resume_leaves_its_copy_only_beside_the_run_and_the_next_removes_it(
    tmp_path: Path, uninterrupted: list[Any]
) -> None:
    """Killed while it checks the run (its copies exist), a resume leaves them beside the run,
    never in TMPDIR; the next resume removes them, and killed mid-run holds none; the last
    resume ends with the uninterrupted log and nothing left anywhere."""
    runs, tmpdir = tmp_path / "runs", tmp_path / "tmp"
    run = runs / "run"
    killed_at(run, {"do": "run", "config": RUN, "hold": {"window_ended": 1}}, tmpdir)

    killed_at(run, {"do": "resume", "hold": {"checks": True}}, tmpdir)
    assert entries(tmpdir) == []
    [stale] = working_folders(runs)
    assert stale.name.startswith(".friendsim-work-resume-")
    assert "old-events.db" in entries(stale)

    killed_at(run, {"do": "resume", "hold": {"window_ended": 3}}, tmpdir)
    assert entries(tmpdir) == []
    assert working_folders(runs) == []  # the stale one removed; its own released before the run

    resuming = Child(run, {"do": "resume"}, tmpdir)
    assert resuming.next_line() == "done"
    assert resuming.proc.wait(timeout=120) == 0
    assert entries(tmpdir) == []
    assert working_folders(runs) == []
    assert rows(run / "events.db") == uninterrupted
    assert [s["kind"] for s in json.loads((run / "manifest.json").read_text())["segments"]] == [
        "original",
        "resume",
        "resume",
    ]


def test_a_fork_never_removes_the_copy_of_a_live_one_and_removes_a_killed_ones(
    tmp_path: Path,
) -> None:
    parent, tmpdir = tmp_path / "runs" / "parent", tmp_path / "tmp"
    asyncio.run(make_run(parent, config(**RUN)))
    spec = {"do": "fork", "parent": str(parent), "at": 2, "config": FORK}
    first = Child(tmp_path / "first", {**spec, "hold": {"checks": True}}, tmpdir)
    first.held()
    [live] = working_folders(parent.parent)
    assert "old-events.db" in entries(live)

    report = asyncio.run(
        fork(
            parent,
            config(**FORK),
            at_window=2,
            out_dir=tmp_path / "second",
            llm_factory=mind_factory,
        )
    )
    assert report.status == "completed"
    assert working_folders(parent.parent) == [live]  # in use: kept, with its copy
    assert "old-events.db" in entries(live)

    first.kill()
    assert working_folders(parent.parent) == [live]
    retried = Child(tmp_path / "first", spec, tmpdir)  # the same command again
    assert retried.next_line() == "done"
    assert retried.proc.wait(timeout=120) == 0
    assert working_folders(parent.parent) == []
    assert entries(tmpdir) == []
    assert rows(tmp_path / "first" / "events.db") == rows(tmp_path / "second" / "events.db")


def test_stale_working_folders_go_and_live_ones_and_others_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    stale = tmp_path / ".friendsim-work-resume-dead"
    stale.mkdir()
    (stale / WORK_LOCK).write_text("999999\n")  # its process is gone: nobody holds the lock
    (stale / "old-events.db").write_bytes(b"x" * 1000)
    others = [".friendsim-other", "run.resuming", ".friendsim-work-file"]
    for name in others[:2]:
        (tmp_path / name).mkdir()
    (tmp_path / others[2]).write_text("not a folder")

    with working_folder(run, what="resume") as live:
        assert live.parent == tmp_path and live.name.startswith(".friendsim-work-resume-")
        assert not stale.exists()
        with pytest.raises(RunLockedError):
            RunLock(live, name=WORK_LOCK).acquire(create=False)
        assert remove_stale(tmp_path) == []
        assert live.is_dir()
        (live / "copy.db").write_bytes(b"y")
    assert not live.exists()
    assert entries(tmp_path) == sorted(others)

    # a run whose parent directory cannot take a folder: the system's temporary directory
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    with working_folder(tmp_path / "missing" / "run", what="fork") as work:
        assert work.parent == temp and work.name.startswith(".friendsim-work-fork-")
    assert entries(temp) == []


def test_a_fork_whose_prefix_diverges_names_the_first_differing_seq(tmp_path: Path) -> None:
    """The prefix is checked by its digest, taken at the start; a difference reads the parent's
    log again to name the seq (a guard of that path: the old code named it from its copy)."""
    parent = tmp_path / "runs" / "parent"
    asyncio.run(make_run(parent, config(**RUN)))
    manifest = json.loads((parent / "manifest.json").read_text())
    manifest["status"] = "running"  # as if killed: its log hash is not checked up front
    (parent / "manifest.json").write_text(json.dumps(manifest))
    conn = sqlite3.connect(parent / "events.db", isolation_level=None)
    first = conn.execute("SELECT min(seq) FROM events WHERE kind = 'post_created'").fetchone()[0]
    conn.execute(
        "UPDATE events SET payload = json_set(payload, '$.text', 'tampered') WHERE seq = ?",
        (first,),
    )
    conn.close()
    with pytest.raises(DivergenceError, match=f"differs at seq {first}, column payload"):
        asyncio.run(
            fork(
                parent,
                config(**FORK),
                at_window=2,
                out_dir=tmp_path / "fork",
                llm_factory=mind_factory,
            )
        )
    assert working_folders(parent.parent, tmp_path) == []


def test_a_half_made_working_folder_goes_once_old_and_unlocked(tmp_path: Path) -> None:
    """A process killed between making ``.friendsim-new-*`` and locking it left the folder for
    good (nothing removed it); the next working folder beside it now removes it once it is
    older than NEW_STALE_S and unlocked, and leaves a young one (another process's, about to
    lock it) and an old one whose lock is held."""

    def half_made(name: str, age: float) -> Path:
        folder = tmp_path / f"{NEW_PREFIX}{name}"
        folder.mkdir()
        (folder / WORK_LOCK).write_text("")
        then = time.time() - age
        os.utime(folder, (then, then))
        return folder

    dead = half_made("dead", NEW_STALE_S + 60)
    young = half_made("young", 1)
    held = half_made("held", NEW_STALE_S + 60)
    lock = RunLock(held, name=WORK_LOCK).acquire(create=False)
    try:
        with working_folder(tmp_path / "run", what="resume"):
            assert not dead.exists()
            assert young.is_dir() and held.is_dir()
        assert remove_stale(tmp_path) == []
    finally:
        lock.release()
    os.utime(young, (time.time() - NEW_STALE_S - 1,) * 2)
    assert sorted(remove_stale(tmp_path)) == sorted([young, held])
    assert not young.exists() and not held.exists()
