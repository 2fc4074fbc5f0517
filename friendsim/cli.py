"""The ``friendsim`` console script (and ``python -m friendsim``): builds the parser from the
modules of :mod:`friendsim.commands` and runs the chosen sub-command's handler.

Only argparse and the command modules are imported here; each handler imports the components it
needs, so ``friendsim --help`` and ``friendsim --version`` start fast.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from friendsim import __version__
from friendsim.commands import analyze, log, personas, replay, report, run, serve, sweep
from friendsim.commands._help import FORMATTER

_COMMANDS = (run, personas, analyze, report, sweep, replay, log, serve)

DESCRIPTION = """\
friendsim: LLM agents on a synthetic social platform. Run experiments described
by TOML files, then analyse, report, sweep and replay the runs they record.
"""

EPILOG = """\
Start with:
  friendsim run examples/continuous.toml --out runs/continuous
  friendsim analyze runs/continuous
  friendsim report runs/continuous

Run "friendsim COMMAND --help" for the options of a command.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(
        prog="friendsim", description=DESCRIPTION, epilog=EPILOG, formatter_class=FORMATTER
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"friendsim {__version__}",
        help="print the version of friendsim and exit",
    )
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands"
    )
    for module in _COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code.

    Every command's diagnostic lines go to stderr through the key redactor
    (:func:`~friendsim.runtime.logs.configure_logging`, at ``--log-level`` where the command
    has it, else ``warning``): structlog's default writes them to stdout, into the JSON that
    ``analyze --json`` and ``replay`` print there."""
    parser = build_parser()
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    handler = vars(args).get("handler")
    if handler is None:
        parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "--help"])
        return 2
    from friendsim._loop import LoopChoiceError, check_loop_choice
    from friendsim.runtime.logs import configure_logging

    try:
        check_loop_choice()
    except LoopChoiceError as exc:
        sys.stderr.write(f"friendsim: {exc}\n")
        return 2
    configure_logging(vars(args).get("log_level") or "warning")
    return int(handler(args))


def console(argv: Sequence[str] | None = None) -> int:
    """The ``friendsim`` program (console script and ``python -m friendsim``): :func:`main`,
    then the process's objects frozen so that its exit does not collect them.

    A run leaves its whole world (platform state, agents, coach; 2.4 GB at 100,000 agents) as
    garbage in reference cycles (an interrupted run's traceback holds its frames). The final
    garbage collection at interpreter exit traversed and freed all of it, seconds after the
    command had finished and said so (a stopped 100,000-agent run took 9–12 s to exit). Frozen
    objects are left to the operating system; exit handlers still run. Only for the program:
    a caller of :func:`main` inside its own process keeps collecting normally.

    A command that wrote a run keeps SIGINT and SIGTERM held until the process ends
    (:mod:`friendsim._signals`): one arriving while it reports its outcome or while the
    interpreter exits ends the process at once with the command's exit code."""
    from friendsim._signals import exit_on_signal, keep

    keep()
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    exit_on_signal(code)
    gc.freeze()
    return code
