"""``friendsim replay RUN_DIR ...``: verify, re-run, re-drive, resume or fork a recorded run.

    friendsim replay RUN --verify                      rebuild state from the log, compare
    friendsim replay RUN --rerun --out NEW             re-execute with recorded answers only
    friendsim replay RUN --redrive [--rewards K=V ...] [--coach rule|none] --out SCORES.json
    friendsim replay RUN --resume [--out NEW]          continue a killed run
    friendsim replay RUN --fork CONFIG --at W --out NEW  new run sharing RUN's first W windows

(``friendsim run --resume RUN`` and ``friendsim run CONFIG --fork RUN --at W`` call
:func:`handle_run_option`.) Exit codes: 0 success (verify: state matches; rerun: identical log),
1 a divergence, a non-identical re-run or an LLM error such as a replay cache miss, 2 bad input
(missing/corrupt/foreign files, manifest mismatch, bad options). The input run is never modified.
The last stdout line is one JSON object describing the outcome.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from friendsim.rundir.errors import DivergenceError, RunDirError, RunInputError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``replay`` sub-command to the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "replay",
        help="verify, re-run, re-drive, resume or fork a recorded run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(handler=handle)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="run directory (events.db, manifest.json, ...)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--verify", action="store_true", help="rebuild the platform from the log")
    what.add_argument("--rerun", action="store_true", help="re-execute from recorded answers")
    what.add_argument("--redrive", action="store_true", help="score/coach the log anew, offline")
    what.add_argument("--resume", action="store_true", help="continue a killed run")
    what.add_argument("--fork", type=Path, metavar="CONFIG", help="fork with this config")
    p.add_argument("--at", type=int, default=None, metavar="WINDOW", help="fork after this window")
    p.add_argument("--out", type=Path, default=None, help="new run directory / redrive JSON file")
    p.add_argument(
        "--rewards", nargs="*", default=None, metavar="NAME=VALUE", help="redrive: reward params"
    )
    p.add_argument("--coach", default="none", choices=("none", "rule"), help="redrive: coach")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str) + "\n")


def _fail(msg: str) -> None:
    sys.stderr.write(f"friendsim replay: {msg}\n")


def handle(args: argparse.Namespace) -> int:
    """Run the replay action named by ``args``; returns the exit code."""
    from friendsim.llm.errors import LLMError
    from friendsim.runtime.config import ConfigError

    try:
        if args.verify:
            return _verify(args)
        if args.redrive:
            return _redrive(args)
        if args.rerun:
            return _rerun(args)
        if args.resume:
            return _resume(args.run_dir, args.out, quiet=args.quiet)
        return _fork(args.run_dir, args.fork, args.at, args.out, quiet=args.quiet)
    except (RunInputError, ConfigError) as exc:
        _fail(str(exc))
        return 2
    except DivergenceError as exc:
        _fail(str(exc))
        _emit({"ok": False, "divergence": str(exc.diff)})
        return 1
    except LLMError as exc:
        _fail(f"LLM error, stopped: {exc}")
        return 1
    except RunDirError as exc:
        _fail(str(exc))
        return 1


def handle_run_option(args: argparse.Namespace) -> int:
    """``friendsim run --resume RUN_DIR`` / ``friendsim run CONFIG --fork RUN_DIR --at W``."""
    from friendsim.llm.errors import LLMError
    from friendsim.runtime.config import ConfigError

    try:
        if getattr(args, "resume", None) is not None:
            return _resume(args.resume, args.out, quiet=getattr(args, "quiet", False))
        if args.config is None:
            raise RunInputError("--fork needs the new run's CONFIG file")
        return _fork(args.fork, args.config, args.at, args.out, quiet=getattr(args, "quiet", False))
    except (RunInputError, ConfigError) as exc:
        _fail(str(exc))
        return 2
    except (DivergenceError, LLMError, RunDirError) as exc:
        _fail(str(exc))
        return 1


def _verify(args: argparse.Namespace) -> int:
    from friendsim.rundir.verify import default_workers, verify_run

    report = verify_run(args.run_dir, workers=default_workers())
    if report.divergence is not None:
        _fail(f"{args.run_dir}: the state differs from what the log implies: {report.divergence}")
    _emit(report.to_json())
    return 0 if report.ok else 1


def _redrive(args: argparse.Namespace) -> int:
    import asyncio

    from .redrive import parse_reward_changes, redrive

    if args.out is None:
        raise RunInputError("--redrive needs --out FILE.json for the new scores and guidance")
    if args.out.resolve().parent == args.run_dir.resolve() or args.out.exists():
        raise RunInputError(f"{args.out}: refusing to overwrite or write into the run")
    result = asyncio.run(
        redrive(args.run_dir, rewards=parse_reward_changes(args.rewards), coach=args.coach)
    )
    body = result.to_json()
    args.out.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    _emit(
        {
            "out": str(args.out),
            "windows": len(body["windows"]),
            "mean_total": body["mean_total"],
            "recorded_mean_total": body["recorded_mean_total"],
        }
    )
    return 0


def _rerun(args: argparse.Namespace) -> int:
    import asyncio

    from .rerun import rerun

    if args.out is None:
        raise RunInputError("--rerun needs --out NEW_DIR")
    report = asyncio.run(rerun(args.run_dir, args.out))
    if report.diff is not None:
        _fail(f"the re-run log differs from {args.run_dir}: {report.diff}")
    _emit(report.to_json())
    return 0 if report.identical else 1


def _resume(run_dir: Path, out: Path | None, *, quiet: bool) -> int:
    import asyncio

    from .resume import resume

    report = asyncio.run(resume(run_dir, out_dir=out))
    _emit(report.to_json())
    return 0 if report.status == "completed" else 1


def _fork(
    parent: Path, config: Path | None, at: int | None, out: Path | None, *, quiet: bool
) -> int:
    import asyncio

    from friendsim.runtime.config import load_config

    from .fork import fork

    if config is None or at is None or out is None:
        raise RunInputError("a fork needs CONFIG, --at WINDOW and --out NEW_DIR")
    cfg = load_config(config)
    report = asyncio.run(fork(parent, cfg, at_window=at, out_dir=out, config_path=config))
    _emit(report.to_json())
    return 0 if report.status == "completed" else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``friendsim replay`` once wired into ``friendsim.cli``)."""
    parser = argparse.ArgumentParser(prog="friendsim replay", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return handle(args)
