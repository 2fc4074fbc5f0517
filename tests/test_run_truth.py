"""What ``friendsim run`` tells a user: clean one-line errors for bad input (exit 2, no traceback,
nothing written into what already exists), ``auto`` explained, continuous-mode votes counted."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from friendsim.cli import main as cli_main

BASELINE = (
    '[experiment]\nname="t"\nseed=3\nrounds=2\nn_actions=1\n[agents]\ncount=4\npolicy="baseline"\n'
)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_non_utf8_persona_file_names_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    personas = tmp_path / "people.jsonl"
    good = {"id": "a1", "name": "Ann", "stance_score": 0.5}
    personas.write_bytes(json.dumps(good).encode() + b"\n" + b'{"id": "a2", "name": "B\xff\xfe"}\n')
    before = hashlib.sha256(personas.read_bytes()).hexdigest()
    cfg = tmp_path / "c.toml"
    cfg.write_text(BASELINE.replace("count=4", "count=2") + 'personas = "people.jsonl"\n')
    code, out, err = run_cli(capsys, "run", str(cfg), "--out", str(tmp_path / "r"), "--quiet")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(personas) in lines[0] and "line 2" in lines[0] and "UTF-8" in lines[0]
    assert "Traceback" not in err and "manifest.json" not in err and out == ""
    assert hashlib.sha256(personas.read_bytes()).hexdigest() == before
    assert not (tmp_path / "r").exists()  # bad input leaves no half-made run directory behind
    existing = tmp_path / "kept"
    existing.mkdir()
    code, _, _ = run_cli(capsys, "run", str(cfg), "--out", str(existing), "--quiet")
    assert code == 2 and existing.is_dir()  # a directory the user made stays


def test_out_that_is_a_file_is_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(BASELINE)
    target = tmp_path / "notes.txt"
    target.write_text("keep me\n")
    code, _, err = run_cli(capsys, "run", str(cfg), "--out", str(target), "--quiet")
    assert code == 2
    assert str(target) in err and "is a file" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert target.read_text() == "keep me\n"


def test_an_empty_config_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "empty.toml"
    cfg.write_text("# nothing here\n")
    code, _, err = run_cli(capsys, "run", str(cfg), "--out", str(tmp_path / "r"), "--quiet")
    assert code == 2
    assert str(cfg) in err and "empty" in err
    assert not (tmp_path / "r").exists()


def test_auto_says_which_provider_it_chose_and_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from friendsim.commands.run import _say_auto
    from friendsim.runtime.config import parse_config

    auto = parse_config({"agents": {"policy": "llm"}, "llm": {"provider": "auto"}})
    _say_auto(auto)
    err = capsys.readouterr().err
    assert "provider auto -> local:smollm2" in err and "neither OPENAI_API_KEY" in err
    monkeypatch.setenv("ANTHROPIC_API_KEY", "a-key-for-the-test")
    _say_auto(auto)
    err = capsys.readouterr().err
    assert "provider auto -> anthropic:claude-haiku-4-5 (ANTHROPIC_API_KEY is set" in err
    assert "a-key-for-the-test" not in err
    _say_auto(parse_config({"agents": {"policy": "llm"}, "llm": {"provider": "scripted"}}))
    _say_auto(parse_config({"agents": {"policy": "baseline"}}))
    assert capsys.readouterr().err == ""


def test_continuous_summary_counts_the_votes_of_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[experiment]\nname="c"\nseed=2\nmode="continuous"\nrounds=3\nwindow_length=600\n'
        'tick=60\nwake_rate=6\n[agents]\ncount=12\npolicy="baseline"\n'
    )
    code, out, _ = run_cli(capsys, "run", str(cfg), "--out", str(tmp_path / "r"), "--quiet")
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    with sqlite3.connect(tmp_path / "r" / "events.db") as con:
        (votes,) = con.execute(
            "SELECT count(*) FROM events WHERE kind IN ('vote_cast', 'vote_changed')"
        ).fetchone()
    assert votes > 0
    assert summary["votes"] == votes
    assert summary["status"] == "completed" and summary["lost_actions"] == 0
