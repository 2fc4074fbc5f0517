"""``friendsim run CONFIG [--out DIR]``: run one experiment file into a run directory.

``friendsim run --resume RUN_DIR`` and ``friendsim run CONFIG --fork RUN_DIR --at W`` are handed
to :func:`friendsim.replay.cli_replay.handle_run_option`.

Exit codes: 0 done, 2 bad config or run directory (the message names the file and key), 1 the
run failed (the run directory keeps everything recorded so far and a manifest saying so).
Logging (structlog) is configured here, at the entry point, never at import; logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

import structlog

from friendsim.agents.persona_io import PersonaFileError
from friendsim.llm.errors import LLMError, ProviderConfigError
from friendsim.runtime.config import ConfigError, load_config


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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def handle(args: argparse.Namespace) -> int:
    """Run the experiment named by ``args``; returns the exit code.

    SIGTERM is treated like Ctrl-C: the run stops, everything recorded so far is committed and
    the manifest says ``"interrupted"``.
    """
    configure_logging(args.log_level)
    signal.signal(signal.SIGTERM, _interrupt)
    if args.resume is not None or args.fork is not None:
        from friendsim.replay.cli_replay import handle_run_option

        return handle_run_option(args)
    if args.config is None:
        sys.stderr.write("friendsim run: an experiment CONFIG file is required\n")
        return 2
    from friendsim.runtime.experiment import RunDirError, make_ledger, run_experiment
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
                run_experiment(cfg, out_dir=out, config_path=args.config, ledger=ledger)
            )
        else:
            with RichProgress(ledger) as progress:
                result = asyncio.run(
                    run_experiment(
                        cfg, out_dir=out, config_path=args.config, listener=progress, ledger=ledger
                    )
                )
    except (ConfigError, RunDirError, PersonaFileError, ProviderConfigError) as exc:
        sys.stderr.write(f"friendsim run: {exc}\n")
        return 2
    except LLMError as exc:
        sys.stderr.write(
            f"friendsim run: LLM error, run stopped: {exc} (see {out}/manifest.json)\n"
        )
        return 1
    except Exception as exc:
        structlog.get_logger(__name__).exception("run_failed")
        sys.stderr.write(f"friendsim run: run failed: {exc!r} (see {out}/manifest.json)\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"friendsim run: interrupted; partial run kept in {out}\n")
        return 130
    summary = {
        "run_dir": str(result.run_dir),
        "status": result.manifest.get("status"),
        "windows": len(result.windows),
        **result.manifest.get("totals", {}),
        "cost_usd": result.manifest.get("llm_usage", {}).get("total", {}).get("cost_usd", 0.0),
    }
    sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    return 0
