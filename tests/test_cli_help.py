"""The command line's help is user documentation: every command and option explained, no developer
notes or markup, ``--version`` prints the installed version, and starting it imports nothing heavy."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from friendsim.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("run", "personas", "analyze", "report", "sweep", "replay", "log", "serve")

# Sphinx roles and literals, doubled percent signs, module paths and notes meant for developers.
LEAKS = re.compile(
    r":(class|func|mod|meth|attr|data|exc):|``|%%|%\(|\bcli_\w+|friendsim\.\w+|"
    r"\bhandler\b|\bdispatcher\b|\bregister\(|TODO|XXX",
)


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under ``parser`` (itself first) with its sub-command path."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


def parsers() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    return list(walk(build_parser()))


def test_every_command_is_reachable() -> None:
    found = {path for path, _ in parsers()}
    assert {(c,) for c in COMMANDS} <= found
    assert {
        ("personas", "generate"),
        ("personas", "validate"),
        ("personas", "infer"),
        ("personas", "ipip"),
        ("log", "verify"),
        ("log", "export"),
        ("log", "import"),
    } <= found


@pytest.mark.parametrize("path", [p for p, _ in parsers()], ids=lambda p: " ".join(p) or "top")
def test_every_option_and_positional_has_help(path: tuple[str, ...]) -> None:
    parser = dict(parsers())[path]
    assert parser.description and parser.description.strip(), f"{path}: no description"
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help and choice.help.strip(), f"{path} {choice.dest}: no help"
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help not in (None, "", argparse.SUPPRESS), f"{path} {name}: no help text"
        assert len(action.help.strip()) >= 10, f"{path} {name}: help too short: {action.help!r}"


@pytest.mark.parametrize("path", [p for p, _ in parsers()], ids=lambda p: " ".join(p) or "top")
def test_rendered_help_has_no_markup_or_developer_notes(path: tuple[str, ...]) -> None:
    text = dict(parsers())[path].format_help()
    leak = LEAKS.search(text)
    assert leak is None, f"friendsim {' '.join(path)} --help shows {leak.group(0)!r}:\n{text}"
    for line in text.splitlines():
        assert len(line) <= 100, f"friendsim {' '.join(path)} --help: line too long: {line!r}"


def test_leak_pattern_catches_what_it_is_meant_to() -> None:
    for bad in (
        "see :func:`x`",
        "``--out``",
        "with 95%% CIs",
        "each sub-command lives in its component's cli_run module",
        "calls friendsim.replay.fork",
    ):
        assert LEAKS.search(bad), bad
    assert LEAKS.search("mean with a 95% confidence interval (default: 0.05)") is None


def test_sweep_help_shows_a_single_percent_sign() -> None:
    out = friendsim_cli("sweep", "--help")
    assert out.returncode == 0
    assert "95% Student-t confidence" in out.stdout and "%%" not in out.stdout
    top = friendsim_cli("--help")
    assert "95% confidence intervals" in top.stdout


@pytest.mark.parametrize("command", ["run", "replay"])
def test_exit_status_lists_every_code_a_run_can_end_with(command: str) -> None:
    """``run`` and ``replay --resume`` / ``--fork`` end with a run's status: their help names
    every exit code a status maps to, and what makes a run degraded (each kind of loss)."""
    from friendsim.runtime.status import EXIT_CODES

    parser = dict(parsers())[(command,)]
    epilog = " ".join((parser.epilog or "").split())
    section = epilog[epilog.index("exit status:") :]
    codes = {int(c) for c in re.findall(r"(?:^|[:,] )(\d+) ", section)}
    assert set(EXIT_CODES.values()) | {2} <= codes, section
    for loss in ("decisions", "guidance", "reviews", "survey answers"):
        assert loss in section, (loss, section)


def test_sweep_help_says_a_degraded_run_is_not_aggregated() -> None:
    """A degraded replication makes ``sweep`` exit 1, is left out of the aggregate and runs
    again when the sweep is run again, as a failed one."""
    parser = dict(parsers())[("sweep",)]
    epilog = " ".join((parser.epilog or "").split())
    section = epilog[epilog.index("exit status:") :]
    assert "degraded" in section and "only the completed runs are aggregated" in section
    assert "degraded" in " ".join((parser.description or "").split())


def friendsim_cli(*args: str, console_script: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = (
        [str(Path(sys.executable).parent / "friendsim")]
        if console_script
        else [sys.executable, "-m", "friendsim"]
    )
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )


def test_version_prints_the_installed_version() -> None:
    import friendsim

    installed = importlib.metadata.version("friendsim")
    assert installed == friendsim.__version__
    for console_script in (False, True):
        out = friendsim_cli("--version", console_script=console_script)
        assert out.returncode == 0, out.stderr
        assert out.stdout == f"friendsim {installed}\n"


def test_top_level_help_lists_every_command() -> None:
    out = friendsim_cli("--help", console_script=True)
    assert out.returncode == 0, out.stderr
    listed = re.findall(r"^    (\w+)\s", out.stdout, flags=re.MULTILINE)
    assert listed == list(COMMANDS)
    missing = friendsim_cli()
    assert missing.returncode == 2 and "COMMAND" in missing.stderr


def test_start_imports_no_component_and_no_heavy_library() -> None:
    """Building the parser (what --help and --version do) leaves the components unimported."""
    code = (
        "import sys, json; from friendsim.cli import build_parser; build_parser(); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    loaded = set(json.loads(out.stdout))
    ours = {m for m in loaded if m.startswith("friendsim.")}
    assert ours <= {"friendsim.cli", "friendsim.commands"} | {
        f"friendsim.commands.{c}" for c in (*COMMANDS, "_help")
    }, sorted(ours)
    heavy = {
        "asyncio",
        "aiosqlite",
        "pydantic",
        "numpy",
        "networkx",
        "scipy",
        "structlog",
        "rich",
        "httpx",
    }
    assert not heavy & loaded, sorted(heavy & loaded)
