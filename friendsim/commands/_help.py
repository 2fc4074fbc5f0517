"""What every sub-command's parser shares: the help layout and the ``--log-level`` option."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction

FORMATTER = argparse.RawDescriptionHelpFormatter
"""Descriptions and epilogs are written for the terminal (line breaks and example blocks kept)."""


def add_log_level(p: argparse.ArgumentParser) -> None:
    """``--log-level``: the detail of the diagnostic log lines written to stderr."""
    p.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="how much diagnostic logging to write to stderr (default: %(default)s)",
    )
