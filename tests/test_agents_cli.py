"""``friendsim personas`` sub-commands (wired through their own parser here)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from friendsim.agents import generate_personas
from friendsim.agents.ipip import MINI_IPIP, survey
from friendsim.commands.personas import register
from friendsim.llm import ScriptedLLM


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="friendsim")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_generate_then_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.csv"
    assert _main(["personas", "generate", "--n", "10", "--seed", "3", "--out", str(out)]) == 0
    gen = json.loads(capsys.readouterr().out)
    assert gen["n"] == 10 and sorted(gen["dominant"].values()) == [2, 2, 2, 2, 2]
    assert _main(["personas", "validate", str(out)]) == 0
    val = json.loads(capsys.readouterr().out)
    assert val["valid"] and val["dominant"] == gen["dominant"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "name": "X", "big5": {}, "lambdas": {"SOC": 1}}\n')
    assert _main(["personas", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 1" in err and "big5" in err


async def test_survey_summarises_agreement() -> None:
    personas = generate_personas(6, seed=8)

    def answer(req: object) -> dict[str, list[int]]:
        return {"answers": [3 if not it.reverse else 2 for it in MINI_IPIP]}

    results, summary = await survey(personas, ScriptedLLM(answer), theme="t")
    assert summary["n"] == 6 and summary["failed"] == 0
    # E: 3, 6-2=4, 3, 4 -> 3.5 -> 0.625 in [0,1] for everyone
    assert all(r.scores01 is not None and r.scores01["E"] == 0.625 for r in results)
    assert summary["mae"] == pytest.approx(
        sum(r.agreement.mae for r in results if r.agreement) / 6, abs=1e-4
    )
    assert all(
        v is None for v in summary["trait_correlation_across_agents"].values()
    )  # no variance


def test_generate_is_prefix_stable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--n 10 --seed 1`` and ``--n 5 --seed 1`` write the same first five people."""
    ten, five = tmp_path / "ten.jsonl", tmp_path / "five.jsonl"
    assert _main(["personas", "generate", "--n", "10", "--seed", "1", "--out", str(ten)]) == 0
    assert _main(["personas", "generate", "--n", "5", "--seed", "1", "--out", str(five)]) == 0
    capsys.readouterr()
    assert ten.read_text().splitlines()[:5] == five.read_text().splitlines()


@pytest.mark.parametrize(
    ("weight", "why"),
    [
        ("0.1", "below 0.2"),
        ("0.19", "below 0.2"),
        ("1.5", "share of weights that sum to 1"),
        ("nan", "not a number"),
    ],
)
def test_generate_refuses_a_dominant_weight_that_is_not_the_largest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], weight: str, why: str
) -> None:
    out = tmp_path / "a.jsonl"
    argv = ["personas", "generate", "--n", "5", "--dominant-weight", weight, "--out", str(out)]
    assert _main(argv) == 2
    err = capsys.readouterr().err
    assert f"--dominant-weight {weight}" in err and "must be in [0.2, 1]" in err
    assert why in err
    assert not out.exists()


def test_generate_at_the_least_dominant_weight_writes_valid_personas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a.jsonl"
    argv = ["personas", "generate", "--n", "5", "--dominant-weight", "0.2", "--out", str(out)]
    assert _main(argv) == 0
    assert _main(["personas", "validate", str(out)]) == 0
    capsys.readouterr()


def _deep(path: Path) -> Path:
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    return path


def test_deeply_nested_json_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 and the file's line, not a RecursionError, from every reader of persona files."""
    deep = _deep(tmp_path / "deep.jsonl")
    expected = f"{deep}, line 1, field '<json>': invalid JSON: nested too deeply"
    for argv in (["validate", str(deep)], ["ipip", str(deep), "--llm", "scripted:x"]):
        assert _main(["personas", *argv]) == 2
        captured = capsys.readouterr()
        assert captured.err == f"friendsim personas: {expected}\n" and captured.out == ""


def test_a_run_refuses_a_deeply_nested_persona_file(tmp_path: Path) -> None:
    import contextlib
    import io

    from friendsim.cli import main as cli_main

    deep = _deep(tmp_path / "deep.jsonl")
    cfg = tmp_path / "x.toml"
    cfg.write_text(f'[experiment]\nrounds = 1\n[agents]\ncount = 2\npersonas = "{deep}"\n')
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli_main(["run", str(cfg), "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 2 and "line 1, field '<json>': invalid JSON: nested too deeply" in err.getvalue()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("action", ["infer", "ipip"])
def test_a_bad_llm_spec_is_refused_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    """Exit 2 with the registry's reason after ``--llm SPEC``, before any file is read."""
    out = tmp_path / "out.jsonl"
    argv = [action, str(tmp_path / "missing.csv"), "--llm", "nosuch:x", "--out", str(out)]
    assert _main(["personas", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "friendsim personas: --llm nosuch:x: unknown LLM provider 'nosuch' in spec 'nosuch:x'; "
        "known: "
    )
    assert "\n" not in err.rstrip("\n") and not out.exists()
    argv[3] = "openai:"
    assert _main(["personas", *argv]) == 2
    assert "--llm openai:: spec 'openai:' names no model" in capsys.readouterr().err


def test_infer_refuses_a_corpus_that_is_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "g.csv"
    corpus.write_bytes(b"user_id,text\nu1,hello\nu2,\xfd\xfe\n")
    out = tmp_path / "i.jsonl"
    argv = ["personas", "infer", str(corpus), "--llm", "scripted:x", "--out", str(out)]
    assert _main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"friendsim personas: {corpus}, line 3: not UTF-8 text (invalid start byte)\n"
    assert not out.exists()
    _deep(corpus)  # JSON is no CSV: the csv module's refusal, with the line
    assert _main(argv) == 2
    assert f"{corpus}, line 1: not CSV: field larger than field limit" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["a.txt", "a.json", "personas"])
def test_commands_writing_persona_files_refuse_a_suffix_no_reader_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """``generate`` and ``infer`` write only what ``validate`` and ``run`` read back, and say
    so before any work (``infer``'s corpus is not even opened)."""
    out = tmp_path / name
    reason = "no suffix" if "." not in name else f"unsupported suffix {out.suffix!r}"
    expected = f"friendsim personas: --out {out}: {reason}; use .jsonl or .csv\n"
    assert _main(["personas", "generate", "--n", "3", "--out", str(out)]) == 2
    assert capsys.readouterr().err == expected
    missing = str(tmp_path / "missing.csv")
    assert _main(["personas", "infer", missing, "--llm", "scripted:x", "--out", str(out)]) == 2
    assert capsys.readouterr().err == expected
    assert not out.exists()


def test_generate_writes_every_suffix_validate_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.jsonl", "b.ndjson", "c.CSV"):
        out = tmp_path / name
        assert _main(["personas", "generate", "--n", "3", "--out", str(out)]) == 0
        assert _main(["personas", "validate", str(out)]) == 0
    capsys.readouterr()


def test_generate_refuses_a_theme_too_long_for_the_personas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a.jsonl"
    assert _main(["personas", "generate", "--theme", "y" * 450, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "friendsim personas: --theme (450 characters): too long for the personas' stance "
        "(String should have at most 500 characters)\n"
    )
    assert not out.exists()
