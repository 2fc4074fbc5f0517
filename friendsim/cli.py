"""The ``friendsim`` console script: builds the parser from :mod:`friendsim.commands` and runs the
chosen sub-command's handler."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from friendsim.commands import analyze, log, personas, replay, report, run, sweep

_COMMANDS = (run, personas, analyze, report, sweep, replay, log)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="friendsim")
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
