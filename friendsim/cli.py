"""The ``friendsim`` command line: ``run``, ``analyze``, ``report``, ``sweep``, ``replay``.

A thin dispatcher: each sub-command lives in its component's ``cli_*`` module, which adds its
parser through ``register(subparsers)`` and sets ``handler`` (``args -> exit code``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from friendsim.runtime import cli_run


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="friendsim", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    cli_run.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    return int(args.handler(args))
