"""The user documentation's snippets work as written: every TOML block of README.md and docs/*.md
parses and, merged into a small experiment, is a valid config; every ``friendsim`` command line of
their shell blocks and of the commands' ``--help`` examples is accepted by the command line's
parser; the plug-in ranker of docs/extending.md runs a small experiment through its own test."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from friendsim import api
from friendsim.cli import build_parser
from friendsim.platform.feeds import RANKERS

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(lang: str) -> list[tuple[str, str]]:
    """``(FILE:LINE, text)`` of every fenced block of language ``lang`` in the docs."""
    out = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            if m.group(1) == lang:
                line = text.count("\n", 0, m.start()) + 1
                out.append((f"{path.relative_to(ROOT)}:{line}", m.group(2)))
    return out


def merged(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merged(base[key], value)
        else:
            base[key] = value
    return base


@pytest.fixture
def doc_ranker() -> Iterator[dict[str, Any]]:
    """The names docs/extending.md's first Python block defines, its ``recent-first`` ranker
    registered for the test."""
    (_, code), *_ = _extending_python()
    names: dict[str, Any] = {}
    exec(compile(code, "docs/extending.md", "exec"), names)
    RANKERS.register("recent-first", names["recent_first"].factory, params=names["Params"])
    try:
        yield names
    finally:
        RANKERS.unregister("recent-first")


def _extending_python() -> list[tuple[str, str]]:
    return [(w, c) for w, c in blocks("python") if w.startswith("docs/extending.md")]


TOML = blocks("toml")


def test_the_docs_have_toml_snippets() -> None:
    assert len(TOML) >= 10


@pytest.mark.parametrize(("where", "text"), TOML, ids=[w for w, _ in TOML])
def test_toml_snippet_is_a_valid_config(where: str, text: str, doc_ranker: dict[str, Any]) -> None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{where}: not TOML: {exc}")
    if "project" in data:  # a plug-in package's pyproject.toml
        return
    base = {
        "experiment": {"name": "docs", "mode": "rounds", "rounds": 6},
        "agents": {"count": 4, "policy": "baseline"},
    }
    api.parse_config(merged(base, data))


def command_lines() -> list[tuple[str, str]]:
    """Every ``friendsim ...`` line of the docs' shell blocks and of the ``--help`` texts."""
    out = []
    for where, text in blocks("bash"):
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip()
            if "friendsim " in line and not line.startswith(("pip ", "python")):
                cmd = line[line.index("friendsim ") :]
                if cmd.startswith("friendsim ") and not cmd.startswith("friendsim["):
                    out.append((where, cmd))

    def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)

    for parser in walk(build_parser()):
        for line in f"{parser.description}\n{parser.epilog}".splitlines():
            if line.strip().startswith("friendsim "):
                out.append((f"{parser.prog} --help", line.strip()))
    return out


COMMANDS = command_lines()


def test_the_docs_have_command_lines() -> None:
    assert len(COMMANDS) >= 40


@pytest.mark.parametrize(("where", "line"), COMMANDS, ids=[f"{w}: {c}" for w, c in COMMANDS])
def test_command_line_is_accepted(where: str, line: str) -> None:
    args = shlex.split(re.split(r"\s[>|&]", line)[0])[1:]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(args)
    except SystemExit as exc:
        assert exc.code == 0, f"{where}: {line!r}: {err.getvalue().strip()}"


def test_extending_plugin_ranker_runs_its_documented_test(
    tmp_path: Path, doc_ranker: dict[str, Any]
) -> None:
    (_, test_code), *_ = [(w, c) for w, c in _extending_python() if "def test_my_ranker(" in c]
    names = dict(doc_ranker)
    exec(compile(test_code, "docs/extending.md", "exec"), names)
    names["test_my_ranker"](tmp_path)
