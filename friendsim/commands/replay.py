"""``friendsim replay RUN_DIR ...``: verify, re-run, re-drive, resume or fork a recorded run.

``friendsim run --resume RUN`` and ``friendsim run CONFIG --fork RUN --at W`` call
:func:`handle_run_option`. Exit codes: 0 success (verify: state matches; rerun: identical log),
1 a divergence, a non-identical re-run or an LLM error such as a replay cache miss, 2 bad input
(missing/corrupt/foreign files, manifest mismatch, bad options). The input run is never modified.
The last stdout line is one JSON object describing the outcome.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from friendsim.commands._help import FORMATTER, Subparsers, add_log_level, path_arg

DESCRIPTION = """\
Work with a recorded run. Choose one action:

  --verify          rebuild the platform's state from the event log alone and
                    compare it with the recorded state
  --rerun           run the experiment again using only the recorded model
                    answers (no model is asked, so no API key is needed; a
                    degraded run's lost requests fail again as recorded) and
                    check that the new event log is identical
  --redrive         score the recorded log again with other reward settings
                    and, optionally, a coach or a moderator (--moderator rule),
                    without any model
  --resume          continue a run that was stopped or killed
  --fork CONFIG     start a new run with CONFIG that shares RUN_DIR's first
                    --at windows (provider = "auto" in CONFIG means the model
                    RUN_DIR used for that part: agents, coach or moderator)

The recorded files are never modified (a resume without --out moves the original
aside to RUN_DIR.interrupted and writes the resumed run in its place). The last
line printed is a JSON summary.
"""

EPILOG = """\
examples:
  friendsim replay runs/paper --verify
  friendsim replay runs/paper --rerun --out runs/paper-again
  friendsim replay runs/paper --redrive --rewards beta_emo=-0.5 --coach rule --out scores.json
  friendsim replay runs/misinfo --redrive --moderator rule --out mod.json
  friendsim replay runs/paper --resume --out runs/paper-resumed
  friendsim replay runs/paper --fork coached.toml --at 7 --out runs/fork

exit status: 0 success (verify: the state matches; rerun: the log is identical;
resume, fork: the run completed), 1 a difference was found, a model answer was
missing from the recording, or the resumed or forked run failed, 2 bad input
(missing, corrupt or foreign files, bad options), 3 the resumed or forked run
is degraded (every window ran, but decisions, coach guidance, moderation
reviews or survey answers were lost), 130 it was interrupted (resumable).
"""


def register(subparsers: Subparsers) -> None:
    """Add the ``replay`` sub-command to the command line's sub-parsers."""
    p = subparsers.add_parser(
        "replay",
        help="verify, re-run, re-score, resume or fork a recorded run",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    p.add_argument(
        "run_dir",
        type=path_arg,
        metavar="RUN_DIR",
        help="the recorded run directory (holding events.db and manifest.json)",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--verify",
        action="store_true",
        help="rebuild the platform's state from the log and compare with the recorded state",
    )
    what.add_argument(
        "--rerun",
        action="store_true",
        help="run again from the recorded model answers into --out and compare the logs",
    )
    what.add_argument(
        "--redrive",
        action="store_true",
        help="score (and optionally coach) the recorded log again, offline, into --out",
    )
    what.add_argument(
        "--resume", action="store_true", help="continue a run that was stopped or killed"
    )
    what.add_argument(
        "--fork",
        type=path_arg,
        metavar="CONFIG",
        help="start a new run with this experiment file, sharing RUN_DIR's first --at windows",
    )
    p.add_argument(
        "--at",
        type=int,
        default=None,
        metavar="WINDOW",
        help="with --fork: the last window taken over from RUN_DIR",
    )
    p.add_argument(
        "--out",
        type=path_arg,
        default=None,
        metavar="PATH",
        help="where to write: the new run directory (--rerun, --fork, --resume) "
        "or the JSON file of new scores (--redrive)",
    )
    p.add_argument(
        "--rewards",
        nargs="*",
        default=None,
        metavar="NAME=VALUE",
        help="with --redrive: reward settings to change, e.g. beta_emo=-0.5",
    )
    p.add_argument(
        "--coach",
        default="none",
        choices=("none", "rule"),
        help="with --redrive: the coach that reads the new scores (default: %(default)s)",
    )
    p.add_argument(
        "--moderator",
        default=None,
        metavar="NAME",
        help="with --redrive: review every item of the log with this moderator (e.g. rule), "
        "without any model, and compare with the recorded decisions of the windows the run "
        "moderated with it and the same parameters (a fork's phases apart)",
    )
    p.add_argument(
        "--moderator-params",
        nargs="*",
        default=None,
        metavar="NAME=VALUE",
        help="with --moderator: parameters to change from those the run last used it with "
        "(e.g. toxicity=0.5)",
    )
    add_log_level(p)
    p.set_defaults(handler=handle)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str) + "\n")


RUN = "friendsim run"


def _fail(msg: str, *, prog: str = "friendsim replay") -> None:
    """One error line on stderr, prefixed with the command the user typed (``prog``)."""
    sys.stderr.write(f"{prog}: {msg}\n")


def handle(args: argparse.Namespace) -> int:
    """Run the replay action named by ``args``; returns the exit code. Log lines go to stderr
    (:func:`~friendsim.runtime.logs.configure_logging`): stdout is the JSON summary alone."""
    import asyncio

    from friendsim.llm.errors import LLMError, ProviderConfigError
    from friendsim.llm.redact import redact_text
    from friendsim.registry import RegistryError
    from friendsim.rundir.errors import (
        DivergenceError,
        OutputPathError,
        RunDirError,
        RunInputError,
        RunLockedError,
        RunOccupiedError,
    )
    from friendsim.runtime.config import ConfigError
    from friendsim.runtime.logs import configure_logging
    from friendsim.runtime.status import RunStopped, exit_code

    configure_logging(args.log_level)
    if (ignored := _ignored_options(args)) is not None:
        _fail(ignored)
        return 2
    try:
        if args.verify:
            return _verify(args)
        if args.redrive:
            return _redrive(args)
        if args.rerun:
            return _rerun(args)
        if args.resume:
            return _resume(args.run_dir, args.out)
        return _fork(args.run_dir, args.fork, args.at, args.out)
    except (
        RunInputError,
        ConfigError,
        RunLockedError,
        RunOccupiedError,
        OutputPathError,
        ProviderConfigError,
        RegistryError,
    ) as exc:
        _fail(redact_text(str(exc)))
        return 2
    except RunStopped as exc:
        _fail(f"{exc.status} ({exc.reason}): {exc}")
        return exit_code(exc.status)
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
    except (KeyboardInterrupt, asyncio.CancelledError):
        _fail("interrupted; everything committed is kept")
        return 130


def _ignored_options(args: argparse.Namespace) -> str | None:
    """The refusal of an option the chosen action would silently ignore (``--at`` without
    ``--fork``, ``--rewards`` without ``--redrive`` ...), or ``None``."""
    checks = [
        ("--at", args.at is not None and not args.fork, "--fork"),
        ("--rewards", args.rewards is not None and not args.redrive, "--redrive"),
        ("--coach", args.coach != "none" and not args.redrive, "--redrive"),
        ("--moderator", args.moderator is not None and not args.redrive, "--redrive"),
        ("--out", args.out is not None and args.verify, "--rerun, --redrive, --resume or --fork"),
    ]
    for option, ignored, needs in checks:
        if ignored:
            return f"{option} is only used with {needs}"
    if args.moderator_params is not None and args.moderator is None:
        return "--moderator-params is only used with --moderator"
    return None


def handle_run_option(args: argparse.Namespace) -> int:
    """``friendsim run --resume RUN_DIR`` / ``friendsim run CONFIG --fork RUN_DIR --at W``.

    Exit codes follow the resumed (forked) run's status like ``friendsim run``'s; a run being
    written by another process is refused (exit 2, naming its pid)."""
    import asyncio

    from friendsim.llm.errors import LLMError, ProviderConfigError
    from friendsim.llm.redact import redact_text
    from friendsim.registry import RegistryError
    from friendsim.rundir.errors import (
        DivergenceError,
        RunDirError,
        RunInputError,
        RunLockedError,
        RunOccupiedError,
    )
    from friendsim.runtime.config import ConfigError
    from friendsim.runtime.status import RunStopped, exit_code

    try:
        if getattr(args, "resume", None) is not None:
            return _resume(
                args.resume, args.out, budget_usd=getattr(args, "budget_usd", None), prog=RUN
            )
        if args.config is None:
            raise RunInputError("--fork needs the new run's CONFIG file")
        return _fork(args.fork, args.config, args.at, args.out, prog=RUN)
    except (
        RunInputError,
        ConfigError,
        RunLockedError,
        RunOccupiedError,
        ProviderConfigError,
        RegistryError,
    ) as exc:
        _fail(redact_text(str(exc)), prog=RUN)
        return 2
    except RunStopped as exc:
        _fail(redact_text(f"{exc.status} ({exc.reason}): {exc}"), prog=RUN)
        return exit_code(exc.status)
    except (KeyboardInterrupt, asyncio.CancelledError):
        _fail("interrupted; everything committed is kept and can be resumed", prog=RUN)
        return 130
    except (DivergenceError, LLMError, RunDirError) as exc:
        _fail(redact_text(str(exc)), prog=RUN)
        return 1


def _verify(args: argparse.Namespace) -> int:
    from friendsim.rundir.verify import default_workers, live_note, verify_live, verify_run

    report, pid = verify_live(
        lambda: verify_run(args.run_dir, workers=default_workers()), args.run_dir
    )
    note = live_note(report, pid)
    if note:
        sys.stderr.write(f"friendsim replay: {args.run_dir}: {note}\n")
    if report.divergence is not None:
        _fail(f"{args.run_dir}: the state differs from what the log implies: {report.divergence}")
    _emit(report.to_json())
    return 0 if report.ok else 1


def _redrive(args: argparse.Namespace) -> int:
    from friendsim._loop import run as run_on_loop
    from friendsim.replay.redrive import parse_reward_changes, redrive
    from friendsim.rundir.errors import OutputPathError, RunInputError
    from friendsim.rundir.outputs import check_output_file, os_error_message

    if args.out is None:
        raise RunInputError("--redrive needs --out FILE.json for the new scores and guidance")
    if args.out.resolve().parent == args.run_dir.resolve():
        raise RunInputError(f"{args.out}: refusing to write into the run {args.run_dir}")
    if args.out.exists():
        raise RunInputError(f"{args.out} exists; refusing to overwrite it (choose another --out)")
    check_output_file(args.out, what="scores file")
    result = run_on_loop(
        redrive(args.run_dir, rewards=parse_reward_changes(args.rewards), coach=args.coach)
    )
    body = result.to_json()
    moderation = None
    if args.moderator is not None:
        from friendsim.replay.moderation import redrive_moderation

        moderation = run_on_loop(
            redrive_moderation(
                args.run_dir,
                moderator=args.moderator,
                changes=parse_reward_changes(args.moderator_params),
            )
        ).to_json()
        body["moderation"] = moderation
    try:
        args.out.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputPathError(f"--out {os_error_message(exc)}") from None
    _emit(
        {
            "out": str(args.out),
            "windows": len(body["windows"]),
            "mean_total": body["mean_total"],
            "recorded_mean_total": body["recorded_mean_total"],
            **(
                {}
                if moderation is None
                else {
                    "moderation_decisions": len(moderation["decisions"]),
                    "moderation_by_action": moderation["by_action"],
                    "moderation_equal_to_recorded": moderation["equal_to_recorded"],
                    "moderation_compared_windows": moderation["compared_windows"],
                }
            ),
        }
    )
    return 0


def _rerun(args: argparse.Namespace) -> int:
    """Re-run with prompt, visible stops, as ``friendsim run`` stops
    (:mod:`friendsim.runtime.signals`): a stopped re-run is ``interrupted`` and resumable with
    ``friendsim run --resume`` (the re-run's comparison is then not made)."""
    import asyncio

    from friendsim._loop import run as run_on_loop
    from friendsim._signals import held
    from friendsim.llm.redact import redact_text
    from friendsim.replay.rerun import rerun
    from friendsim.rundir.errors import RunInputError
    from friendsim.rundir.layout import MANIFEST
    from friendsim.runtime.signals import WindowWatch, stoppable
    from friendsim.runtime.status import RunStopped, exit_code

    if args.out is None:
        raise RunInputError("--rerun needs --out NEW_DIR")
    hint = f"resume it with: friendsim run --resume {args.out}"
    watch = WindowWatch()
    stopped = f"re-run of {args.run_dir} into {args.out}"
    try:
        with held():
            report = run_on_loop(
                stoppable(
                    lambda stop: rerun(args.run_dir, args.out, stop=stop, listener=watch),
                    what="friendsim replay --rerun",
                    resume_hint=hint,
                    watch=watch,
                )
            )
    except RunStopped as exc:
        then = (
            f"; {hint}" if exc.status == "interrupted" and (args.out / MANIFEST).is_file() else ""
        )
        _fail(redact_text(f"{stopped} {exc.status} ({exc.reason}): {exc}{then}"))
        return exit_code(exc.status)
    except asyncio.CancelledError:
        _fail(f"{stopped} interrupted (stop): stopped at once; {hint}")
        return 130
    if report.diff is not None:
        _fail(f"the re-run log differs from {args.run_dir}: {report.diff}")
    _emit(report.to_json())
    return 0 if report.identical else 1


def _resume(
    run_dir: Path,
    out: Path | None,
    *,
    budget_usd: float | None = None,
    prog: str = "friendsim replay",
) -> int:
    """Resume with prompt, visible stops (:mod:`friendsim.runtime.signals`); a stopped resume
    leaves the original untouched and can be resumed again. ``prog`` prefixes its error line
    and the warning about a ``tick`` that loses wakes (:func:`~._wakes.lost_wakes_warning`), as
    ``friendsim run`` warns: the remaining windows run under the recorded ``tick``."""
    import asyncio

    from friendsim._loop import run as run_on_loop
    from friendsim._signals import held
    from friendsim.commands._wakes import lost_wakes_warning
    from friendsim.llm.redact import redact_text
    from friendsim.replay.resume import resume
    from friendsim.rundir.layout import MANIFEST
    from friendsim.runtime.signals import WindowWatch, stoppable
    from friendsim.runtime.status import RunStopped, exit_code

    def again() -> str:
        """How to go on: a resume into ``--out`` that recorded its run there is resumed there
        (resuming the original again would start over); otherwise the same command."""
        if out is not None and (out / MANIFEST).is_file():
            return f"resume again with: friendsim run --resume {out}"
        into = "" if out is None else f" --out {out}"
        return f"resume again with: friendsim run --resume {run_dir}{into}"

    watch = WindowWatch(on_wakes=lost_wakes_warning(prog))
    try:
        with held():
            report = run_on_loop(
                stoppable(
                    lambda stop: resume(
                        run_dir, out_dir=out, budget_usd=budget_usd, stop=stop, listener=watch
                    ),
                    what="friendsim run --resume",
                    resume_hint=(
                        f"resume again with: friendsim run --resume {out if out else run_dir}"
                    ),
                    watch=watch,
                )
            )
    except RunStopped as exc:
        _fail(
            redact_text(
                f"resume of {run_dir} {exc.status} ({exc.reason}): {exc}; the original is "
                f"untouched; {again()}"
            ),
            prog=prog,
        )
        return exit_code(exc.status)
    except asyncio.CancelledError:
        _fail(
            f"resume of {run_dir} interrupted (stop): stopped at once; the original is "
            f"untouched; {again()}",
            prog=prog,
        )
        return 130
    _emit(report.to_json())
    return exit_code(report.status)


def _fork(
    parent: Path,
    config: Path | None,
    at: int | None,
    out: Path | None,
    *,
    prog: str = "friendsim replay",
) -> int:
    """Fork with prompt, visible stops, as ``friendsim run`` stops
    (:mod:`friendsim.runtime.signals`); a stopped fork can be resumed. ``prog`` prefixes its
    error line and the warning about a ``tick`` that loses wakes
    (:func:`~._wakes.lost_wakes_warning`): the fork's windows run under its config's ``tick`` (a
    fork cannot change it)."""
    import asyncio

    from friendsim._loop import run as run_on_loop
    from friendsim._signals import held
    from friendsim.commands._wakes import lost_wakes_warning
    from friendsim.llm.redact import redact_text
    from friendsim.replay.fork import fork
    from friendsim.rundir.errors import RunInputError
    from friendsim.runtime.config import load_config
    from friendsim.runtime.signals import WindowWatch, stoppable
    from friendsim.runtime.status import RunStopped, exit_code

    if config is None or at is None or out is None:
        raise RunInputError("a fork needs CONFIG, --at WINDOW and --out NEW_DIR")
    cfg = load_config(config)
    hint = f"resume with: friendsim run --resume {out}"
    watch = WindowWatch(on_wakes=lost_wakes_warning(prog))
    try:
        with held():
            report = run_on_loop(
                stoppable(
                    lambda stop: fork(
                        parent,
                        cfg,
                        at_window=at,
                        out_dir=out,
                        config_path=config,
                        listener=watch,
                        stop=stop,
                    ),
                    what="friendsim run --fork",
                    resume_hint=hint,
                    watch=watch,
                )
            )
    except RunStopped as exc:
        then = f"; {hint}" if exc.status == "interrupted" else ""
        _fail(redact_text(f"fork into {out} {exc.status} ({exc.reason}): {exc}{then}"), prog=prog)
        return exit_code(exc.status)
    except asyncio.CancelledError:
        _fail(f"fork into {out} interrupted (stop): stopped at once; {hint}", prog=prog)
        return 130
    _emit(report.to_json())
    return exit_code(report.status)
