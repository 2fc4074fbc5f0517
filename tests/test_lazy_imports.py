"""The command line starts light: heavy dependencies load only where they are used, and the
packages' lazy re-exports resolve to the same objects as their submodules."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

HEAVY = (
    "numpy",
    "networkx",
    "scipy",
    "matplotlib",
    "rich",
    "openai",
    "anthropic",
    "httpx",
    "pydantic",
    "structlog",
    "aiosqlite",
    "igraph",
    "vaderSentiment",
    "asyncio",
)


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(set(sys.modules))))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return {m.split(".")[0] for m in json.loads(out.splitlines()[-1])}


def test_cli_import_and_parser_load_no_heavy_dependency() -> None:
    loaded = _loaded_after("from friendsim.cli import build_parser\nbuild_parser().format_help()")
    assert loaded.isdisjoint(HEAVY), sorted(loaded.intersection(HEAVY))


def test_help_of_every_command_loads_no_heavy_dependency() -> None:
    code = (
        "import contextlib, io\nfrom friendsim.cli import main\n"
        "for cmd in ('run', 'personas', 'analyze', 'report', 'sweep', 'replay', 'log'):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main([cmd, '--help'])\n"
    )
    loaded = _loaded_after(code)
    assert loaded.isdisjoint(HEAVY), sorted(loaded.intersection(HEAVY))


def test_running_a_command_still_loads_what_it_needs() -> None:
    loaded = _loaded_after("import friendsim.runtime.assembly")
    assert {"pydantic", "aiosqlite", "structlog"} <= loaded


@pytest.mark.parametrize("package", ["agents", "coach", "llm", "platform", "rundir", "runtime"])
def test_lazy_reexports_are_the_submodules_objects(package: str) -> None:
    pkg = importlib.import_module(f"friendsim.{package}")
    assert pkg.__all__
    for name in pkg.__all__:
        value = getattr(pkg, name)
        owner = importlib.import_module(getattr(value, "__module__", "") or "builtins")
        if getattr(owner, name, None) is not None:
            assert getattr(owner, name) is value, f"friendsim.{package}.{name}"
    assert not hasattr(pkg, "no_such_name")
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = pkg.no_such_name
