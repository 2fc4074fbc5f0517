"""What every sub-command's parser shares: the help layout, the ``--log-level`` option and the
parsing of path arguments."""

from __future__ import annotations

import argparse
from pathlib import Path
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


def path_arg(text: str) -> Path:
    """A path argument: an empty one (``--out ""``) is an error, exit 2, not the current
    folder, which ``Path("")`` would silently be."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a file or folder name")
    return Path(text)


def port_arg(text: str) -> int:
    """A TCP port argument, 0 to 65535 (0: a free one): another number is an error, exit 2,
    before anything starts."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port}: expected 0..65535 (0: a free port)")
    return port
