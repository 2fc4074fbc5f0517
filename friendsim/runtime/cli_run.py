"""``friendsim run CONFIG [--out DIR]``: run one experiment file into a run directory.

``friendsim run --resume RUN_DIR`` and ``friendsim run CONFIG --fork RUN_DIR --at W`` are handed
to :func:`friendsim.replay.cli_replay.handle_run_option`.

Exit codes: 0 done, 2 bad config or run directory (the message names the file and key), 1 the
run failed (the run directory keeps everything recorded so far and a manifest saying so).
Logging (structlog) is configured here, at the entry point, never at import; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from friendsim.runtime.assembly import RunResult


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``run`` sub-command to the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "run",
        help="run an experiment (TOML config) into a run directory",
        description="Run an experiment described by a TOML file; see examples/*.toml.",
    )
    p.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=None,
        help="experiment TOML file (not with --resume)",
    )
    p.add_argument(
        "--resume", type=Path, default=None, metavar="RUN_DIR", help="continue a killed run"
    )
    p.add_argument(
        "--fork",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="new run with CONFIG sharing RUN_DIR's first --at windows",
    )
    p.add_argument("--at", type=int, default=None, metavar="WINDOW", help="fork after this window")
    p.add_argument(
        "--out", type=Path, default=None, help="run directory (default: runs/<experiment name>)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="log level of the structured logs on stderr (default: warning)",
    )
    p.set_defaults(handler=handle)


def configure_logging(level: str) -> None:
    """structlog to stderr at ``level`` (called by the CLI only)."""
    import structlog

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


async def _stoppable(run: Callable[[asyncio.Event], Awaitable[RunResult]]) -> RunResult:
    """Run with SIGTERM/SIGINT asking for a graceful stop (at the next phase or slice: nothing
    committed is lost, the manifest says ``"interrupted"``); a second signal cancels at once."""
    import asyncio

    stop = asyncio.Event()
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            task.cancel()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await run(stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def handle(args: argparse.Namespace) -> int:
    """Run the experiment named by ``args``; returns the exit code.

    SIGTERM and Ctrl-C stop the run at the next phase or slice: everything recorded so far is
    committed and the manifest says ``"interrupted"`` (exit code 130).
    """
    import asyncio

    configure_logging(args.log_level)
    if args.resume is not None or args.fork is not None:
        from friendsim.replay.cli_replay import handle_run_option

        return handle_run_option(args)
    if args.config is None:
        sys.stderr.write("friendsim run: an experiment CONFIG file is required\n")
        return 2
    import structlog

    from friendsim.agents.persona_io import PersonaFileError
    from friendsim.llm.errors import LLMError, ProviderConfigError
    from friendsim.rundir.errors import RunLockedError, RunOccupiedError
    from friendsim.runtime.assembly import make_ledger, run_experiment
    from friendsim.runtime.config import ConfigError, load_config
    from friendsim.runtime.engine import RunInterrupted
    from friendsim.runtime.progress import RichProgress

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"friendsim run: config error: {exc}\n")
        return 2
    out = args.out if args.out is not None else Path("runs") / cfg.experiment.name
    ledger = make_ledger(cfg)
    try:
        if args.quiet:
            result = asyncio.run(
                _stoppable(
                    lambda stop: run_experiment(
                        cfg, out_dir=out, config_path=args.config, ledger=ledger, stop=stop
                    )
                )
            )
        else:
            with RichProgress(ledger) as progress:
                result = asyncio.run(
                    _stoppable(
                        lambda stop: run_experiment(
                            cfg,
                            out_dir=out,
                            config_path=args.config,
                            listener=progress,
                            ledger=ledger,
                            stop=stop,
                        )
                    )
                )
    except (
        ConfigError,
        RunOccupiedError,
        RunLockedError,
        PersonaFileError,
        ProviderConfigError,
    ) as exc:
        sys.stderr.write(f"friendsim run: {exc}\n")
        return 2
    except LLMError as exc:
        sys.stderr.write(
            f"friendsim run: LLM error, run stopped: {exc} (see {out}/manifest.json)\n"
        )
        return 1
    except (RunInterrupted, KeyboardInterrupt, asyncio.CancelledError):
        sys.stderr.write(f"friendsim run: interrupted; partial run kept in {out}\n")
        return 130
    except Exception as exc:
        structlog.get_logger(__name__).exception("run_failed")
        sys.stderr.write(f"friendsim run: run failed: {exc!r} (see {out}/manifest.json)\n")
        return 1
    summary = {
        "run_dir": str(result.run_dir),
        "status": result.manifest.status,
        "windows": len(result.windows),
        **result.manifest.totals,
        "cost_usd": result.manifest.cost_usd,
    }
    sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    return 0
