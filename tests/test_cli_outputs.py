"""What the commands write, and where: never over a run's own files, never into a bad path, and
a run that a command only reads stays byte-for-byte as it was (its lock file included)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import pytest
from tree_support import tree

from friendsim.cli import main as cli_main

RUN_FILES = (
    "events.db",
    "manifest.json",
    "personas.jsonl",
    "run.lock",
    "llm_batches.db",
    "llm_batches.db-wal",
    "tie_scores.json",
)
"""A run's own files; the batch journal's name is refused whether or not the run has one (a
resume of a batch run polls the batches it lists instead of paying for them again), and so are
the stored text-based tie scores' (scoring them again asks a model again)."""
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


@pytest.mark.parametrize(
    "argv",
    [
        ("log", "export", "{run}", "{out}/events.jsonl"),
        ("log", "export", "{run}/events.db", "{out}/events.parquet"),
        ("log", "export", "{run}", "--table", "rewards", "--out", "{out}/rewards.jsonl"),
        ("log", "verify", "{run}/events.db"),
        ("analyze", "{run}"),
        ("report", "{run}", "--out", "{out}/report.html"),
        ("replay", "{run}", "--verify"),
        ("replay", "{run}", "--redrive", "--out", "{out}/scores.json"),
    ],
    ids=[
        "export",
        "export-parquet",
        "export-rewards",
        "verify",
        "analyze",
        "report",
        "replay",
        "redrive",
    ],
)
def test_reading_commands_leave_the_run_byte_for_byte_unchanged(
    run: Path, tmp_path: Path, argv: tuple[str, ...]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    before = tree(run)
    code, _, err = cli(*(a.format(run=run, out=out) for a in argv))
    assert code == 0, err
    assert tree(run) == before  # no events.db-wal / -shm left beside the log


def _truncated(db: Path) -> None:
    db.write_bytes(db.read_bytes()[:100])


def _emptied(db: Path) -> None:
    db.write_bytes(b"")


def _dropped(db: Path) -> None:
    import sqlite3

    con = sqlite3.connect(db)
    with con:
        con.execute("DROP TABLE events")
    con.close()


@pytest.mark.parametrize("damage", [_truncated, _emptied, _dropped])
@pytest.mark.parametrize("name", ["x.jsonl", "x.parquet"])
def test_export_of_a_damaged_log_is_a_clean_error(
    run: Path, tmp_path: Path, damage: object, name: str
) -> None:
    damage(run / "events.db")  # type: ignore[operator]
    before = tree(run)
    refused(("log", "export", run, tmp_path / name), "events.db")
    assert tree(run) == before
    assert not (tmp_path / name).exists()


SWEEP = CONFIG + '[sweep]\nreplications = 1\ngrid = { "coach.enabled" = [true, false] }\n'


def test_a_sweep_is_not_written_into_a_run_or_a_file(run: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP)
    before = tree(run)
    refused(("sweep", cfg, "--out", run, "--jobs", "1"), str(run), "already holds a run")
    assert tree(run) == before
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused(("sweep", cfg, "--out", afile, "--jobs", "1"), str(afile), "not a directory")
    refused(("sweep", cfg, "--out", afile / "sub", "--jobs", "1"), str(afile / "sub"))
    assert afile.read_text() == "x"


@pytest.mark.parametrize(
    "argv",
    [
        ("run", "{cfg}", "--out", "{afile}/sub", "--quiet"),
        ("run", "{cfg}", "--out", "/proc/friendsim-x", "--quiet"),
        ("report", "{run}", "--out", "{somedir}"),
        ("report", "{run}", "--out", "/proc/friendsim-x.html"),
        ("log", "export", "{run}", "{somedir}"),
        ("log", "export", "{run}", "/proc/friendsim-x.jsonl"),
        ("log", "import", "{jsonl}", "{tmp}/nodir/x.db"),
        ("log", "import", "{somedir}", "{tmp}/y.db"),
        ("replay", "{run}", "--redrive", "--out", "/proc/friendsim-x.json"),
        ("replay", "{run}", "--redrive", "--out", "{tmp}/nodir/x.json"),
        ("personas", "generate", "--n", "5", "--out", "{tmp}/nodir/x.jsonl"),
        ("personas", "generate", "--n", "5", "--out", "{somedir}"),
        ("personas", "generate", "--n", "5", "--out", "/proc/friendsim-x.jsonl"),
    ],
)
def test_an_unusable_output_path_is_one_line_and_exit_2(
    run: Path, tmp_path: Path, argv: tuple[str, ...]
) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(CONFIG)
    (tmp_path / "afile").write_text("x")
    somedir = tmp_path / "somedir"
    somedir.mkdir()
    jsonl = tmp_path / "events.jsonl"
    assert cli("log", "export", run, jsonl)[0] == 0
    before = tree(tmp_path)
    args = tuple(
        a.format(
            cfg=cfg, afile=tmp_path / "afile", run=run, somedir=somedir, jsonl=jsonl, tmp=tmp_path
        )
        for a in argv
    )
    refused(args)
    assert tree(tmp_path) == before  # nothing written: no stray .tmp, no figures/
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "afile",
        "events.jsonl",
        "run",
        "somedir",
        "t.toml",
    ]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("run", "{cfg}", "--at", "1", "--out", "{tmp}/x"), ("--at", "--fork")),
        (("run", "{cfg}", "--resume", "{run}"), ("--resume", "CONFIG")),
        (("run", "--resume", "{run}", "--fork", "{run}"), ("--resume", "--fork")),
        (("run", "{cfg}", "--host", "0.0.0.0", "--out", "{tmp}/x"), ("--host needs --serve",)),
    ],
    ids=["at-without-fork", "resume-with-config", "resume-with-fork", "host-without-serve"],
)
def test_run_refuses_options_it_would_ignore(
    run: Path, tmp_path: Path, argv: tuple[str, ...], words: tuple[str, ...]
) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(CONFIG)
    before = tree(tmp_path)
    refused(tuple(a.format(cfg=cfg, run=run, tmp=tmp_path) for a in argv), *words)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.parametrize("name", ["../escaped_run", "{tmp}/absolute_run", "..", "a/b", "x/../../y"])
def test_an_experiment_name_used_as_the_run_directory_must_be_plain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, command: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = work / "t.toml"
    text = CONFIG if command == "run" else SWEEP
    cfg.write_text(text.replace('name="o"', f'name="{name.format(tmp=tmp_path)}"'))
    refused((command, cfg, "--quiet") if command == "run" else (command, cfg, "--jobs", "1"),
            "[experiment].name", "--out")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert sorted(p.name for p in work.iterdir()) == ["t.toml"]


def _stopped(run: Path) -> Path:
    """``run`` made to look killed (manifest status running): resumable."""
    import json

    manifest = json.loads((run / "manifest.json").read_text())
    manifest["status"] = "running"
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (("run", "{cfg}", "--out", "{run}", "--quiet"), 2),  # already holds a run
        (("replay", "{run}", "--resume"), 2),  # already completed
        (("run", "--resume", "{stopped}", "--out", "{afile}"), 2),
        (("run", "--resume", "{stopped}", "--out", "{tmp}/new"), 0),
        (("replay", "{stopped}", "--resume", "--out", "{tmp}/new"), 0),
    ],
    ids=["run-refused", "resume-completed", "resume-into-file", "resume-out", "replay-resume"],
)
def test_a_command_that_does_not_write_a_run_leaves_its_lock_file_as_it_was(
    run: Path, tmp_path: Path, argv: tuple[str, ...], code: int
) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(CONFIG)
    (tmp_path / "afile").write_text("x")
    if "{stopped}" in argv:
        _stopped(run)
    lock = run / "run.lock"
    lock.write_text("12345\n")  # the pid of the process that wrote the run
    os.utime(lock, ns=(1_000_000_000, 2_000_000_000))
    before = tree(run)
    args = (
        a.format(cfg=cfg, run=run, stopped=run, afile=tmp_path / "afile", tmp=tmp_path)
        for a in argv
    )
    got, _, err = cli(*args)
    assert got == code, err
    assert tree(run) == before
    assert lock.stat().st_mtime_ns == 2_000_000_000


def test_run_resume_and_fork_errors_are_prefixed_friendsim_run(run: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(CONFIG)
    err = refused(("run", "--resume", run), "already completed")
    assert err.startswith("friendsim run: "), err
    err = refused(("run", cfg, "--fork", run, "--at", "9", "--out", tmp_path / "f"), "window 9")
    assert err.startswith("friendsim run: "), err
    assert refused(("replay", run, "--resume")).startswith("friendsim replay: ")


def test_rerun_of_a_run_being_written_says_so(run: Path, tmp_path: Path) -> None:
    from friendsim.rundir.lock import RunLock

    _stopped(run)
    with RunLock(run):  # a writer holds the run
        err = refused(("replay", run, "--rerun", "--out", tmp_path / "again"), "being written")
    assert "killed" not in err and "--resume" not in err, err


def test_analyze_and_report_of_a_run_being_written_say_so_and_write_nothing_into_it(
    run: Path, tmp_path: Path
) -> None:
    """A run whose lock another writer holds: ``analyze`` and ``report --out`` say on stderr
    that it is in progress (naming the process) and work on what is committed; ``report``
    without ``--out`` would write into the run being written: refused, nothing written."""
    from friendsim.rundir.lock import RunLock

    lock = RunLock(run).acquire()
    try:
        before = tree(run)
        code, out, err = cli("analyze", run, "--json")
        assert code == 0 and '"status"' in out
        assert f"run in progress (process {os.getpid()})" in err
        refused(("report", run), "run in progress", "--out")
        assert not (run / "report.html").exists()
        code, out, err = cli("report", run, "--out", tmp_path / "live.html")
        assert code == 0 and (tmp_path / "live.html").is_file()
        assert f"run in progress (process {os.getpid()})" in err
        assert tree(run) == before
    finally:
        lock.release(restore=True)
    code, _, err = cli("analyze", run, "--json")
    assert code == 0 and "in progress" not in err


def test_a_new_run_or_sweep_never_writes_over_someone_s_files(tmp_path: Path) -> None:
    """``run --out`` into a folder holding its own ``personas.jsonl`` or ``manifest.json`` (but
    no run) replaced them with the run's, exit 0; a sweep into a folder holding an
    ``aggregate.md`` did the same; ``--out ""`` wrote into the current folder. Each is refused
    now, exit 2, with every file as it was; a folder with other files still takes a run."""
    cfg = tmp_path / "t.toml"
    cfg.write_text(CONFIG)
    mine = tmp_path / "mydata"
    mine.mkdir()
    (mine / "personas.jsonl").write_text('{"mine": 1}\n')
    (mine / "manifest.json").write_text('{"x": 1}\n')
    before = tree(mine)
    refused(("run", cfg, "--out", mine, "--quiet"), str(mine), "manifest.json, personas.jsonl",
            "no run", "choose another --out")  # fmt: skip
    assert tree(mine) == before
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited, contextlib.redirect_stderr(err):
        cli_main(["run", str(cfg), "--out", "", "--quiet"])
    assert exited.value.code == 2 and "argument --out: an empty path" in err.getvalue()

    sweep = tmp_path / "s.toml"
    sweep.write_text(SWEEP)
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "aggregate.md").write_text("my table\n")
    refused(("sweep", sweep, "--out", tables, "--jobs", "1"), "aggregate.md", "no sweep.json")
    assert sorted(tree(tables)) == ["aggregate.md"]
    assert (tables / "aggregate.md").read_text() == "my table\n"

    other = tmp_path / "notes"
    other.mkdir()
    (other / "README.txt").write_text("my notes\n")
    assert cli("run", cfg, "--out", other, "--quiet")[0] == 0
    assert (other / "README.txt").read_text() == "my notes\n" and (other / "events.db").is_file()


def test_a_sweep_record_that_is_not_one_is_refused_not_a_traceback(tmp_path: Path) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text(SWEEP)
    out = tmp_path / "sw"
    out.mkdir()
    for text in ("[]", '{"spec": 5}', "[" * 100_000 + "]" * 100_000):
        (out / "sweep.json").write_text(text)
        refused(("sweep", sweep, "--out", out, "--jobs", "1"), str(out / "sweep.json"))
        assert (out / "sweep.json").read_text() == text


def test_a_manifest_nested_past_the_decoder_s_limit_is_a_clean_error(run: Path) -> None:
    """A ``manifest.json`` of 100,000 nested brackets gave a RecursionError traceback (exit 1)
    in analyze, report and replay; it is a manifest that is not valid JSON, exit 2."""
    (run / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    before = tree(run)
    for argv in (("analyze", run), ("report", run, "--out", run.parent / "r.html"),
                 ("replay", run, "--verify")):  # fmt: skip
        refused(argv, "manifest.json", "nested too deeply")
    assert tree(run) == before


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_port_out_of_range_is_refused_before_anything_starts(tmp_path: Path, port: str) -> None:
    """``run --serve 70000`` raised an OverflowError traceback after the run had begun."""
    cfg = tmp_path / "t.toml"
    cfg.write_text(CONFIG)
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited, contextlib.redirect_stderr(err):
        cli_main(["run", str(cfg), "--out", str(tmp_path / "r"), "--serve", port, "--quiet"])
    assert exited.value.code == 2 and "argument --serve:" in err.getvalue()
    assert "Traceback" not in err.getvalue() and not (tmp_path / "r").exists()


def test_a_manifest_that_is_a_folder_is_an_error_not_no_manifest(run: Path) -> None:
    """analyze and report read a folder named ``manifest.json`` as no manifest and went on with
    default parameters, exit 0; it is a broken run directory, as replay said already."""
    (run / "manifest.json").unlink()
    (run / "manifest.json").mkdir()
    for argv in (("analyze", run), ("report", run, "--out", run.parent / "r.html"),
                 ("replay", run, "--verify")):  # fmt: skip
        refused(argv, "manifest.json")
    assert not (run.parent / "r.html").exists()


def test_a_command_s_warnings_go_to_stderr_not_into_its_json_on_stdout(
    run: Path, tmp_path: Path
) -> None:
    """Only ``run``, ``serve`` and ``sweep`` set up logging; every other command logged with
    structlog's default, to stdout and past the key redactor, so ``analyze --json`` whose
    analysis could not be cached printed a warning line before its JSON. Every command now
    logs to stderr: stdout is the JSON alone (the program, as a user runs it)."""
    import json
    import subprocess
    import sys

    not_a_folder = tmp_path / "cache-is-a-file"
    not_a_folder.write_text("")
    env = {**os.environ, "FRIENDSIM_CACHE_DIR": str(not_a_folder)}
    done = subprocess.run(
        [sys.executable, "-m", "friendsim", "analyze", str(run), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["run_dir"] == str(run)
    assert "analysis_cache_not_written" in done.stderr
    assert "analysis_cache_not_written" not in done.stdout


def test_log_verify_of_a_run_holds_its_manifest_to_its_log(run: Path) -> None:
    """``log verify RUN`` rebuilt the tables from the log alone: a log cut after its last
    table effect (the coach's last guidance, the closing ``window_ended``) still "matched". Given a run directory it now
    first checks that the manifest describes the log (exit 2, naming where it ends); given the
    ``events.db`` file alone it checks the log against its tables, as its help says."""
    import sqlite3

    with sqlite3.connect(run / "events.db") as con:
        last = con.execute("SELECT seq, kind FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        assert last[1] in ("guidance_issued", "window_ended")  # no table holds it
        con.execute("DELETE FROM events WHERE seq = ?", (last[0],))
    code, out, err = cli("log", "verify", run)
    assert code == 2, (out, err)
    assert f"manifest end_seq={last[0]}" in err and f"ends at seq {last[0] - 1}" in err
    code, out, _ = cli("log", "verify", run / "events.db")
    assert code == 0 and "replay matches the live tables" in out
