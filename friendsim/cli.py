"""The ``friendsim`` command line: ``run``, ``personas``, ``analyze``, ``report``, ``sweep``,
``replay``, ``log``, ``serve``.

A thin dispatcher: each sub-command lives in its component's ``cli_*`` module, which adds its
parser through ``register(subparsers)`` and sets ``handler`` (``args -> exit code``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from friendsim.agents import cli_personas
from friendsim.analysis import cli_analyze
from friendsim.platform import cli_platform
from friendsim.replay import cli_replay
from friendsim.report import cli_report
from friendsim.runtime import cli_run
from friendsim.serve import cli_serve
from friendsim.sweep import cli_sweep

_COMMANDS = (
    cli_run,
    cli_personas,
    cli_analyze,
    cli_report,
    cli_sweep,
    cli_replay,
    cli_platform,
    cli_serve,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="friendsim", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in _COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    handler = vars(args).get("handler")
    if handler is None:
        parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "--help"])
        return 2
    return int(handler(args))
