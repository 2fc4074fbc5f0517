"""``friendsim run``: run one experiment file into a run directory.

``--resume`` and ``--fork`` are handed to :func:`friendsim.commands.replay.handle_run_option`.
Exit codes follow the run's status (:mod:`friendsim.runtime.status`): 0 completed, 3 degraded
(every window ran, some model-backed decisions were lost), 130 interrupted (resumable), 1 failed
(the run directory keeps everything recorded so far and a manifest saying so); 2 bad config or run
directory (the message names the file and key). Logging is configured here, at the entry point, never at import; logs go to stderr.
Components are imported inside the handler so that the command line starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from friendsim.commands._help import FORMATTER, Subparsers, add_log_level, path_arg, port_arg

if TYPE_CHECKING:
    import asyncio

    from friendsim.runtime.assembly import RunResult
    from friendsim.runtime.config import ExperimentConfig
    from friendsim.runtime.engine import RunListener
    from friendsim.runtime.signals import WindowWatch
    from friendsim.runtime.status import RunStopped
    from friendsim.serve.live import ServedRun

DESCRIPTION = """\
Run an experiment described by a TOML file and write everything it produces to a
run directory: the event log (events.db), the recorded model answers
(llm_cache.db), the manifest with the configuration, seeds, token usage and cost
(manifest.json) and the personas. The examples/ folder holds ready-made
experiment files.

A progress line shows window k/K, actions, votes, failures, model calls, retries,
spend and the elapsed time (plain lines per window when stderr is not a terminal).
In continuous mode a warning says when the tick slices lose more than 5 % of the
configured wakes, or more than 25 % of the most active 1 %'s (several wakes of an
agent in one slice count as one); --resume and --fork warn the same for the
windows they run.
Ctrl-C (or SIGTERM) stops the run within seconds, cancelling the model calls in
flight, without losing anything recorded; a second Ctrl-C stops at once. Either
way the run can be resumed with --resume. When every window ran (completed or
degraded), the last line printed on stdout is a JSON summary of the run.
"""

EPILOG = """\
examples:
  friendsim run examples/continuous.toml --out runs/continuous
  friendsim run --resume runs/continuous
  friendsim run coached.toml --fork runs/paper --at 7 --out runs/fork

exit status: 0 completed, 3 degraded (every window ran, but decisions, coach
guidance, moderation reviews or survey answers were lost to provider errors, or
to a policy, coach or moderator that raised), 130 interrupted (resumable:
Ctrl-C, a budget, a provider that stayed down, the agents', the coach's or the
moderator's), 1 failed (a provider rejected the key, model or request, or too
many decisions failed; what was recorded is kept), 2 bad input (the message
names the file and the setting).
"""


def register(subparsers: Subparsers) -> None:
    """Add the ``run`` sub-command to the command line's sub-parsers."""
    p = subparsers.add_parser(
        "run",
        help="run an experiment (a TOML file) into a run directory",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    p.add_argument(
        "config",
        type=path_arg,
        nargs="?",
        default=None,
        metavar="CONFIG",
        help="the experiment's TOML file (not needed with --resume)",
    )
    p.add_argument(
        "--out",
        type=path_arg,
        default=None,
        metavar="DIR",
        help="run directory to create (default: runs/<experiment name>; a fork needs it)",
    )
    p.add_argument(
        "--resume",
        type=path_arg,
        default=None,
        metavar="RUN_DIR",
        help="continue a run that was stopped or killed (without --out the resumed run "
        "replaces RUN_DIR and the original is moved aside to RUN_DIR.interrupted)",
    )
    p.add_argument(
        "--fork",
        type=path_arg,
        default=None,
        metavar="RUN_DIR",
        help="start a new run with CONFIG that shares the first --at windows of RUN_DIR "
        '(needs --at and --out); provider = "auto" in CONFIG means the model RUN_DIR used '
        "for that part (agents, coach, moderator)",
    )
    p.add_argument(
        "--at",
        type=int,
        default=None,
        metavar="WINDOW",
        help="with --fork: the last window taken over from RUN_DIR",
    )
    p.add_argument("--quiet", action="store_true", help="do not show the progress bar")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="print the requests, tokens and cost the run would need (with and without "
        "prompt caching and batching) without calling any model, then exit",
    )
    p.add_argument(
        "--budget-usd",
        type=_positive_usd,
        default=None,
        metavar="USD",
        help="spending limit in US dollars; replaces [llm] budget_usd (also with --resume)",
    )
    p.add_argument(
        "--serve",
        type=port_arg,
        nargs="?",
        const=8765,
        default=None,
        metavar="PORT",
        help="open the live view with pause, resume and step controls at http://HOST:PORT/ "
        "(default port 8765); it stays up after the run until Ctrl-C (needs the serve extra)",
    )
    p.add_argument(
        "--host",
        default=None,
        help="with --serve: address to listen on (default: 127.0.0.1)",
    )
    p.add_argument(
        "--paused",
        action="store_true",
        help="with --serve: hold the run before window 1 until Resume or Step is pressed",
    )
    add_log_level(p)
    p.set_defaults(handler=handle)


def _conflicting_options(args: argparse.Namespace) -> str | None:
    """Why the options given cannot go together (one would be silently ignored), or ``None``.

    ``--resume`` continues a run with its own recorded config: a CONFIG or ``--fork`` beside it
    is refused; ``--at`` only means something with ``--fork``."""
    if args.resume is not None and args.fork is not None:
        return "--resume and --fork cannot be combined; choose one"
    if args.resume is not None and args.config is not None:
        return (
            f"--resume continues {args.resume} with the config recorded in its manifest; "
            f"the CONFIG {args.config} would be ignored: leave it out (or use --fork to start "
            "a new run with it)"
        )
    if args.at is not None and args.fork is None:
        return "--at WINDOW needs --fork RUN_DIR (it names the last window taken over)"
    return None


def _positive_usd(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive amount of USD, got {text!r}")
    return value


async def _served(
    served: ServedRun | None,
    run: Callable[[asyncio.Event], Awaitable[RunResult]],
    *,
    hint: str,
    watch: WindowWatch,
) -> RunResult:
    """Run with prompt, visible stops (:mod:`friendsim.runtime.signals`), with the live view
    beside it when ``served``: the view starts first and stays up after the run until
    SIGTERM/Ctrl-C, so the finished run can still be looked at."""
    from friendsim.runtime.signals import stoppable

    if served is None:
        return await stoppable(run, what="friendsim run", resume_hint=hint, watch=watch)
    from friendsim.serve.server import announce

    announce(await served.start(), "the run")
    try:
        result = await stoppable(run, what="friendsim run", resume_hint=hint, watch=watch)
        sys.stderr.write(
            f"friendsim run: run {result.manifest.status}; the live view stays up until Ctrl-C\n"
        )
        await _until_signal()
        return result
    finally:
        await served.stop()


async def _until_signal() -> None:
    """Return at the first SIGTERM/SIGINT."""
    import asyncio

    from friendsim._signals import routed

    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    with routed(lambda sig: loop.call_soon_threadsafe(done.set)):
        await done.wait()


def handle(args: argparse.Namespace) -> int:
    """Run the experiment named by ``args``; returns the exit code.

    The exit code follows the run's status (:mod:`friendsim.runtime.status`): 0 ``completed``,
    3 ``degraded``, 130 ``interrupted`` (resumable: a signal, a spending budget, a provider down),
    1 ``failed``; 2 is bad input (nothing is run). Every stop prints one line on stderr saying
    why and how to go on. SIGINT and SIGTERM are held for the whole command
    (:mod:`friendsim._signals`): one arriving before the run began ends the command with 130
    and nothing written; after the run ended, they change nothing.
    """
    from friendsim._signals import held

    with held():
        try:
            return _handle(args)
        except KeyboardInterrupt:
            sys.stderr.write("friendsim run: interrupted before the run began; nothing written\n")
            return 130


def _handle(args: argparse.Namespace) -> int:
    import asyncio

    import structlog

    from friendsim.agents.persona_io import PersonaFileError
    from friendsim.llm.errors import LLMError, ProviderConfigError
    from friendsim.llm.redact import redact_text
    from friendsim.registry import RegistryError
    from friendsim.runtime.config import (
        ConfigError,
        check_run_population,
        load_config,
        machine_memory,
    )
    from friendsim.runtime.logs import configure_logging
    from friendsim.runtime.status import RunStopped, exit_code

    configure_logging(args.log_level)
    if conflict := _conflicting_options(args):
        sys.stderr.write(f"friendsim run: {conflict}\n")
        return 2
    if args.serve is not None and (args.resume is not None or args.fork is not None):
        sys.stderr.write(
            "friendsim run: --serve works with a new run; for a resumed or forked run use "
            "`friendsim serve RUN_DIR` beside it\n"
        )
        return 2
    if args.paused and args.serve is None:
        sys.stderr.write("friendsim run: --paused needs --serve (nothing could resume the run)\n")
        return 2
    if args.host is not None and args.serve is None:
        sys.stderr.write("friendsim run: --host needs --serve (it is the live view's address)\n")
        return 2
    if args.resume is not None or args.fork is not None:
        from friendsim.commands.replay import handle_run_option

        return handle_run_option(args)
    if args.config is None:
        sys.stderr.write("friendsim run: an experiment CONFIG file is required\n")
        return 2
    from friendsim._loop import run as run_on_loop
    from friendsim.llm.budget import Budget
    from friendsim.rundir.errors import RunLockedError, RunOccupiedError
    from friendsim.rundir.outputs import plain_name
    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.llm_stacks import make_ledger
    from friendsim.runtime.progress import make_progress
    from friendsim.runtime.signals import WindowWatch

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"friendsim run: config error: {exc}\n")
        return 2
    if args.budget_usd is not None:
        cfg = cfg.model_copy(
            update={"llm": cfg.llm.model_copy(update={"budget_usd": args.budget_usd})}
        )
    if args.estimate:
        from friendsim.runtime.estimate import handle_estimate

        return handle_estimate(cfg, args.config)
    try:
        check_run_population(cfg, source=args.config, memory=machine_memory())
    except ConfigError as exc:
        sys.stderr.write(f"friendsim run: config error: {exc}\n")
        return 2
    if args.out is None and not plain_name(cfg.experiment.name):
        sys.stderr.write(
            f"friendsim run: config error: {args.config}: [experiment].name = "
            f"{cfg.experiment.name!r} names the run directory runs/NAME without --out, so it must "
            "be a plain name (no '/', no '..'); rename it or give --out DIR\n"
        )
        return 2
    out = args.out if args.out is not None else Path("runs") / cfg.experiment.name
    _say_auto(cfg)
    ledger = make_ledger(cfg)
    budget = None if cfg.llm.budget_usd is None else Budget(cfg.llm.budget_usd, ledger)
    hint = f"resume with: friendsim run --resume {out}"
    served = None
    if args.serve is not None:
        from friendsim.serve.live import ServedRun
        from friendsim.serve.server import ServeDependencyError

        try:
            host = args.host or "127.0.0.1"
            served = ServedRun(out, host=host, port=args.serve, paused=args.paused)
        except ServeDependencyError as exc:
            sys.stderr.write(f"friendsim run: {exc}\n")
            return 2
        except OSError as exc:
            sys.stderr.write(
                f"friendsim run: --serve: cannot listen on {host}:{args.serve}: {exc}\n"
            )
            return 2

    def start(listener: RunListener | None) -> RunResult:
        from friendsim.commands._wakes import lost_wakes_warning

        watch = WindowWatch(listener, on_wakes=lost_wakes_warning("friendsim run"))
        return run_on_loop(
            _served(
                served,
                lambda stop: run_experiment(
                    cfg,
                    out_dir=out,
                    config_path=args.config,
                    listener=watch,
                    ledger=ledger,
                    stop=stop,
                    budget=budget,
                    control=served.control if served is not None else None,
                ),
                hint=hint,
                watch=watch,
            )
        )

    try:
        if args.quiet:
            result = start(None)
        else:
            with make_progress(ledger, budget) as progress:
                result = start(progress)
    except (
        ConfigError,
        RunOccupiedError,
        RunLockedError,
        PersonaFileError,
        ProviderConfigError,
        RegistryError,
    ) as exc:
        sys.stderr.write(redact_text(f"friendsim run: {exc}\n"))
        return 2
    except RunStopped as exc:
        sys.stderr.write(redact_text(stopped_line("friendsim run", exc, out, hint)) + "\n")
        return exit_code(exc.status)
    except LLMError as exc:
        sys.stderr.write(
            redact_text(f"friendsim run: LLM error, run stopped: {exc} (see {out}/manifest.json)\n")
        )
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.stderr.write(f"friendsim run: interrupted; partial run kept in {out}; {hint}\n")
        return 130
    except Exception as exc:
        structlog.get_logger(__name__).exception("run_failed")
        sys.stderr.write(
            redact_text(f"friendsim run: run failed: {exc!r} (see {out}/manifest.json)\n")
        )
        return 1
    summary = {
        "run_dir": str(result.run_dir),
        "status": result.manifest.status,
        "windows": len(result.windows),
        **result.manifest.totals,
        "cost_usd": result.manifest.cost_usd,
    }
    sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    status = result.manifest.status
    if status != "completed":
        sys.stderr.write(f"friendsim run: {degraded_line(status, result.manifest.totals)}\n")
    return exit_code(status)


def degraded_line(status: str, totals: Mapping[str, int]) -> str:
    """What a run that ran every window but is not ``completed`` lost, and where to look."""
    from friendsim.vocabulary import LOSSES

    parts = [
        f"{totals[loss.name]} {loss.what} ({loss.where})"
        for loss in LOSSES
        if totals.get(loss.name, 0)
    ]
    return f"{status}: every window ran but " + "; ".join(parts or ["something was lost"])


def stopped_line(what: str, exc: RunStopped, out: Path, hint: str) -> str:
    """The one stderr line for a run that stopped early: its status, why, and what to do."""
    match exc.reason:
        case "budget":
            return (
                f"{what}: interrupted: stopped before exceeding the budget: {exc}; partial run kept in "
                f"{out}; continue with: friendsim run --resume {out} --budget-usd LARGER"
            )
        case "stop":
            return f"{what}: interrupted; partial run kept in {out}; {hint}"
        case "provider_down":
            return f"{what}: interrupted: {exc}; once the provider is back, {hint}"
        case "provider_rejected":
            return f"{what}: failed: {exc}; fix the provider settings, then {hint}"
        case _:
            return f"{what}: {exc.status} ({exc.reason}): {exc}; {hint}"


def _say_auto(cfg: ExperimentConfig) -> None:
    """Tell which provider ``auto`` chose, and why (one line on stderr)."""
    from friendsim.agents.policies import uses_llm
    from friendsim.runtime.config import explain_auto_provider

    uses_auto = (uses_llm(cfg.agents.policy) and cfg.llm.provider == "auto") or any(
        o.provider == "auto" for o in cfg.llm.overrides
    )
    if cfg.coach.enabled and cfg.coach.provider == "auto":
        uses_auto = True
    if uses_auto:
        choice, why = explain_auto_provider()
        sys.stderr.write(f"friendsim run: provider auto -> {choice} ({why})\n")
