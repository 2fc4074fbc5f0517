"""Bad input the command line met with a Python traceback or an unclear message (an audit of
every command against the mistakes users make): each is now exit status 2, one line naming the
file (and the seq, line or field at fault), no traceback, and the run's files byte-identical.

A hand-edited log: a payload that is JSON but not an object, or a BLOB, or nested too deeply
(``log verify``, ``replay --verify``, ``analyze``, ``log export``); an event the re-drive cannot
decode (``replay --redrive``); a ``t`` that is not a number (every command that checks the
manifest's log hash). A persona file that is not UTF-8 (``analyze``, ``report``). Files the user
may not read, and a folder ``log import`` may not write into. A file given as the run directory.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tree_support import tree

from friendsim.cli import main as cli_main
from friendsim.rundir.log import log_hash

REPO = Path(__file__).resolve().parent.parent
CONFIG = (
    '[experiment]\nname="b"\nseed=7\nrounds=3\nn_actions=2\n'
    '[agents]\ncount=4\npolicy="baseline"\n[coach]\nenabled=true\nkind="rule"\n'
)


def cli(*argv: str | Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli_main([str(a) for a in argv])
    return code, err.getvalue()


def refused(argv: tuple[str | Path, ...], *words: str) -> str:
    """Run ``argv`` in this process: exit 2, a last line holding ``words``, no traceback."""
    code, err = cli(*argv)
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    for word in words:
        assert word in last, (word, last)
    return last


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pristine")
    (tmp / "t.toml").write_text(CONFIG)
    assert cli("run", tmp / "t.toml", "--out", tmp / "run", "--quiet")[0] == 0
    return tmp / "run"


@pytest.fixture()
def run(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(pristine, copy)
    return copy


def _post_seq(run: Path) -> int:
    con = sqlite3.connect(run / "events.db")
    try:
        return int(
            con.execute("SELECT min(seq) FROM events WHERE kind = 'post_created'").fetchone()[0]
        )
    finally:
        con.close()


def _set(run: Path, column: str, value: object) -> int:
    """Store ``value`` in ``column`` of the first post's row (a hand edit); returns its seq."""
    seq = _post_seq(run)
    con = sqlite3.connect(run / "events.db")
    try:
        with con:
            con.execute(f"UPDATE events SET {column} = ? WHERE seq = ?", (value, seq))
    finally:
        con.close()
    return seq


def _rehash(run: Path) -> None:
    """Record the edited log's hash in the manifest, as an editor covering their tracks (or a
    log from elsewhere) would: the commands that check the hash then read the events."""
    con = sqlite3.connect(run / "events.db")
    try:
        digest = log_hash(con)
    finally:
        con.close()
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["log_sha256"] = digest
    (run / "manifest.json").write_text(json.dumps(manifest))


PAYLOADS = {
    "array": ("[1]", "is not a JSON object"),
    "pairs": ('[["text", "a"]]', "is not a JSON object"),
    "blob": (b"{}", "is not JSON text but a BLOB"),
    "deep": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
}


COMMANDS = {
    "log-verify": ("log", "verify", "{run}"),
    "replay-verify": ("replay", "{run}", "--verify"),
    "analyze": ("analyze", "{run}", "--refresh"),
    "report": ("report", "{run}", "--out", "{out}/r.html"),
    "export-rewards": ("log", "export", "{run}", "--table", "rewards", "--out", "{out}/r.jsonl"),
}
CASES = [
    (command, payload)
    for command in COMMANDS
    for payload in PAYLOADS
    # analyze and report already named a JSON payload that is not an object
    if not (command in ("analyze", "report") and payload in ("array", "pairs"))
]


@pytest.mark.parametrize(("command", "payload"), CASES, ids=[f"{c}-{p}" for c, p in CASES])
def test_a_payload_that_is_not_a_json_object_is_named(
    run: Path, tmp_path: Path, command: str, payload: str
) -> None:
    argv, (value, problem) = COMMANDS[command], PAYLOADS[payload]
    seq = _set(run, "payload", value)
    before = tree(run)
    args = tuple(a.format(run=run, out=tmp_path) for a in argv)
    last = refused(args, str(run / "events.db"), f"seq={seq}", problem)
    assert last.count(str(run)) == 1, last  # named once, not "RUN: RUN/events.db: ..."
    assert tree(run) == before


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("kind", "no_such_kind", "unknown kind 'no_such_kind'"),
        ("payload", "[1]", "is not a JSON object"),
    ],
    ids=["kind", "payload"],
)
def test_redrive_names_an_event_it_cannot_decode(
    run: Path, tmp_path: Path, column: str, value: str, problem: str
) -> None:
    seq = _set(run, column, value)
    _rehash(run)
    before = tree(run)
    refused(
        ("replay", run, "--redrive", "--out", tmp_path / "s.json"),
        str(run / "events.db"),
        f"seq={seq}",
        problem,
    )
    assert not (tmp_path / "s.json").exists()
    assert tree(run) == before


def test_redrive_names_a_mistyped_window_not_the_broken_nesting(run: Path, tmp_path: Path) -> None:
    con = sqlite3.connect(run / "events.db")
    with con:
        seq = con.execute("SELECT min(seq) FROM events WHERE kind = 'window_started'").fetchone()[0]
        con.execute(
            "UPDATE events SET payload = json_set(payload, '$.window', 'one') WHERE seq = ?",
            (seq,),
        )
    con.close()
    _rehash(run)
    before = tree(run)
    refused(
        ("replay", run, "--redrive", "--out", tmp_path / "s.json"),
        str(run / "events.db"),
        f"seq={seq}",
        "payload.window",
    )
    assert tree(run) == before


@pytest.mark.parametrize(
    "argv",
    [
        ("replay", "{run}", "--rerun", "--out", "{out}/new"),
        ("replay", "{run}", "--redrive", "--out", "{out}/s.json"),
        ("replay", "{run}", "--fork", "{cfg}", "--at", "1", "--out", "{out}/fork"),
        ("run", "--resume", "{run}", "--out", "{out}/resumed"),
    ],
    ids=["rerun", "redrive", "fork", "resume"],
)
@pytest.mark.parametrize("value", ["abc", b"\x00"], ids=["text", "blob"])
def test_a_time_that_is_not_a_number_is_named(
    run: Path, tmp_path: Path, argv: tuple[str, ...], value: object
) -> None:
    """The log's hash reads every ``t`` as a number: a hand edit there was a ValueError."""
    cfg = tmp_path / "fork.toml"
    cfg.write_text(CONFIG)
    seq = _set(run, "t", value)
    before = tree(run)
    args = tuple(a.format(run=run, out=tmp_path, cfg=cfg) for a in argv)
    refused(args, str(run / "events.db"), f"seq={seq}", "t: expected a number")
    assert tree(run) == before


@pytest.mark.parametrize(
    "argv",
    [("analyze", "{run}", "--refresh"), ("report", "{run}", "--out", "{out}/r.html")],
    ids=["analyze", "report"],
)
def test_a_persona_file_that_is_not_utf8_is_named_with_its_line(
    run: Path, tmp_path: Path, argv: tuple[str, ...]
) -> None:
    personas = run / "personas.jsonl"
    lines = personas.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"name": "', b'"name": "\xff', 1)
    personas.write_bytes(b"\n".join(lines))
    before = tree(run)
    args = tuple(a.format(run=run, out=tmp_path) for a in argv)
    refused(args, f"{personas}, line 3", "not UTF-8")
    assert tree(run) == before


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("run", "--resume", "{file}"), ("{file} is a file, not a run directory",)),
        (("run", "--resume", "{file}", "--out", "{out}"), ("{file} is a file, not a run",)),
        (("replay", "{file}", "--verify"), ("{file} is a file, not a run directory",)),
    ],
    ids=["resume", "resume-out", "verify"],
)
def test_a_file_given_as_the_run_directory_is_called_so(
    tmp_path: Path, argv: tuple[str, ...], words: tuple[str, ...]
) -> None:
    """Not "run directory not found", nor "choose another --out" (the file is not the --out)."""
    file = tmp_path / "notes.txt"
    file.write_text("a run? no\n")
    args = tuple(a.format(file=file, out=tmp_path / "new") for a in argv)
    last = refused(args, *(w.format(file=file) for w in words))
    assert "--out" not in last and "not found" not in last, last
    assert file.read_text() == "a run? no\n"
    assert not (tmp_path / "new").exists()


def test_redrive_names_the_moderator_once(run: Path, tmp_path: Path) -> None:
    last = refused(
        (
            "replay", run, "--redrive", "--moderator", "rule",
            "--moderator-params", "toxicity=abc", "--out", tmp_path / "s.json",
        ),
        "moderator 'rule': parameter toxicity",
    )  # fmt: skip
    assert last.count("moderator 'rule'") == 1, last


# Files this user may not read. Root reads every file whatever its mode (the capabilities
# CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), so as root the command runs without them (setpriv
# drops them from its bounding set): still root, owner of every file and folder here, but held
# to their modes. The run is copied into a folder of its own.


@pytest.fixture()
def shared(pristine: Path) -> Iterator[Path]:
    """A copy of the run (and a scratch folder) in a folder every user may enter."""
    base = Path(tempfile.mkdtemp(prefix="friendsim-perm-"))
    try:
        base.chmod(0o755)
        shutil.copytree(pristine, base / "run")
        for p in [base / "run", *(base / "run").iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        (base / "scratch").mkdir(mode=0o777)
        (base / "scratch").chmod(0o777)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_other_user(base: Path, *argv: str | Path) -> subprocess.CompletedProcess[str]:
    """Run friendsim held to the files' modes (this user; root without the capabilities that
    let it read and write whatever the modes say)."""
    cmd = [sys.executable, "-m", "friendsim", *map(str, argv)]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *cmd]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HOME": str(base / "scratch"),
        "FRIENDSIM_CACHE_DIR": str(base / "scratch" / "cache"),
        "TMPDIR": str(base / "scratch"),
    }
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=base / "scratch")


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("events.db", ("analyze", "{run}", "--refresh")),
        ("events.db", ("replay", "{run}", "--verify")),
        ("manifest.json", ("replay", "{run}", "--verify")),
        ("personas.jsonl", ("analyze", "{run}", "--refresh")),
        ("personas.jsonl", ("replay", "{run}", "--rerun", "--out", "{scratch}/new")),
    ],
    ids=["analyze-log", "verify-log", "verify-manifest", "analyze-personas", "rerun-personas"],
)
def test_a_file_the_user_may_not_read_is_named(
    shared: Path, name: str, argv: tuple[str, ...]
) -> None:
    run = shared / "run"
    (run / name).chmod(0)
    before = tree(run)
    args = [a.format(run=run, scratch=shared / "scratch") for a in argv]
    done = as_other_user(shared, *args)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"{run / name}: cannot read it" in last, last
    assert tree(run) == before
    assert not (shared / "scratch" / "new").exists()


def test_import_into_a_folder_the_user_may_not_write_says_so(shared: Path) -> None:
    jsonl = shared / "scratch" / "events.jsonl"
    assert cli("log", "export", shared / "run", jsonl)[0] == 0
    jsonl.chmod(0o644)
    folder = shared / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    done = as_other_user(shared, "log", "import", jsonl, folder / "copy.db")
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"{folder / 'copy.db'}: cannot create the database" in last, last
    assert f"the folder {folder} is not writable" in last, last
    assert list(folder.iterdir()) == []
