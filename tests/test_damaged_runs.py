"""Damage a run directory at random (truncate, flip bytes, delete files, edit rows) and run every
command that reads a run: each ends with success or a clean error (exit 1/2, a message, no
traceback), and leaves every input byte-identical."""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from friendsim.cli import main as cli_main

FILES = ("events.db", "manifest.json", "personas.jsonl")
OUTPUTS = {"report.html", "figures", "run.lock"}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pristine")
    cfg = tmp / "t.toml"
    cfg.write_text(
        '[experiment]\nname="d"\nseed=1\nrounds=2\nn_actions=1\n'
        '[agents]\ncount=5\npolicy="baseline"\n'
    )
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["run", str(cfg), "--out", str(tmp / "run"), "--quiet"]) == 0
    return tmp / "run"


def _truncate(path: Path, frac: float, _: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * frac)])


def _flip(path: Path, frac: float, n: int) -> None:
    data = bytearray(path.read_bytes())
    if data:
        start = int(len(data) * frac) % len(data)
        for i in range(start, min(len(data), start + n)):
            data[i] ^= 0xA5
    path.write_bytes(bytes(data))


def _delete(path: Path, _frac: float, _n: int) -> None:
    path.unlink(missing_ok=True)


def _edit_row(path: Path, frac: float, n: int) -> None:
    if path.name != "events.db":
        return _flip(path, frac, n)
    con = sqlite3.connect(path)
    try:
        with contextlib.suppress(sqlite3.DatabaseError), con:
            last = con.execute("SELECT max(seq) FROM events").fetchone()[0] or 1
            seq = max(1, int(last * frac))
            match n % 3:
                case 0:
                    con.execute("UPDATE events SET payload = '{not json' WHERE seq = ?", (seq,))
                case 1:
                    con.execute("UPDATE events SET kind = 'no_such_kind' WHERE seq = ?", (seq,))
                case _:
                    con.execute("DELETE FROM events WHERE seq = ?", (seq,))
    finally:
        con.close()  # checkpoints: the damage is in events.db before the readers run
    return None


DAMAGE = {"truncate": _truncate, "flip": _flip, "delete": _delete, "edit": _edit_row}
damage = st.tuples(
    st.sampled_from(sorted(DAMAGE)),
    st.sampled_from(FILES),
    st.floats(0.0, 0.999),
    st.integers(1, 400),
)


def _digests(run: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in run.iterdir()
        if p.is_file() and p.name not in OUTPUTS
    }


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(damages=st.lists(damage, min_size=1, max_size=2))
def test_every_reader_fails_cleanly_on_a_damaged_run(
    pristine: Path, tmp_path_factory: pytest.TempPathFactory, damages: list
) -> None:
    run = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(pristine, run)
    for kind, name, frac, n in damages:
        target = run / name
        if target.exists():
            DAMAGE[kind](target, frac, n)
    before = _digests(run)
    for argv in (
        ["log", "verify", str(run / "events.db")],
        ["analyze", str(run)],
        ["report", str(run)],
        ["replay", str(run), "--verify"],
    ):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(argv)  # an exception here is the failure under test
        assert code in (0, 1, 2), (argv, code)
        assert "Traceback" not in err.getvalue(), (argv, err.getvalue())
        if code == 2:
            assert err.getvalue().strip(), argv  # a message says what is wrong
        assert _digests(run) == before, argv
