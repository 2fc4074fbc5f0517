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


@pytest.mark.parametrize("weight", ["0.1", "0.19", "1.5", "nan"])
def test_generate_refuses_a_dominant_weight_that_is_not_the_largest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], weight: str
) -> None:
    out = tmp_path / "a.jsonl"
    argv = ["personas", "generate", "--n", "5", "--dominant-weight", weight, "--out", str(out)]
    assert _main(argv) == 2
    err = capsys.readouterr().err
    assert f"--dominant-weight {weight}" in err and "must be in [0.2, 1]" in err
    assert not out.exists()


def test_generate_at_the_least_dominant_weight_writes_valid_personas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a.jsonl"
    argv = ["personas", "generate", "--n", "5", "--dominant-weight", "0.2", "--out", str(out)]
    assert _main(argv) == 0
    assert _main(["personas", "validate", str(out)]) == 0
    capsys.readouterr()
