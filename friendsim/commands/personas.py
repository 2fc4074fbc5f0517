"""``friendsim personas {generate,validate,infer,ipip}``: make, check and survey persona files.

Exit codes: 0 done, 1 the model gave no valid answer, 2 bad input (file, spec). Components are
imported inside the handlers so that the command line starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from friendsim.commands._help import FORMATTER, Subparsers, path_arg

if TYPE_CHECKING:
    from friendsim.agents.ipip import IPIPResult
    from friendsim.agents.persona import Persona
    from friendsim.llm.base import LLM

DESCRIPTION = """\
Make, check and survey the personas that agents are given. A persona file is JSON
Lines (.jsonl, one persona per line) or CSV (.csv); an experiment names it in
[agents] personas = "FILE", or generates personas itself.
"""

EPILOG = """\
examples:
  friendsim personas generate --n 30 --seed 1 --out personas.jsonl
  friendsim personas validate personas.jsonl
  friendsim personas infer corpus.csv --llm openai:gpt-4o-mini --out inferred.jsonl
  friendsim personas ipip personas.jsonl --llm local:smollm2 --out survey.jsonl
"""

THEME_HELP = "the discussion topic the personas hold stances on (default: %(default)s)"
LLM_HELP = (
    "the model to ask, as a provider spec such as openai:gpt-4o-mini, "
    "anthropic:claude-haiku-4-5 or local:smollm2"
)


def register(subparsers: Subparsers) -> None:
    """Add the ``personas`` command group to the command line's sub-parsers."""
    p = subparsers.add_parser(
        "personas",
        help="generate, validate, infer or survey persona files",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    sub = p.add_subparsers(dest="personas_command", required=True, metavar="ACTION")

    g = sub.add_parser(
        "generate",
        help="write seeded synthetic personas",
        description="Write N synthetic personas. The same options and seed always give the "
        "same personas. Prints a JSON summary of what was written.",
    )
    g.add_argument(
        "--n",
        type=int,
        default=30,
        help="number of personas, 1 to 10,000,000 and as many as this machine's memory holds "
        "(default: %(default)s)",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    g.add_argument("--theme", default="climate change", help=THEME_HELP)
    g.add_argument(
        "--dominant-weight",
        type=float,
        default=0.6,
        metavar="W",
        help="weight of each persona's dominant motive in its reward mix, 0.2 to 1 (it must be "
        "the largest); the other motives share the rest equally (default: %(default)s)",
    )
    g.add_argument(
        "--out",
        type=path_arg,
        required=True,
        metavar="FILE",
        help="persona file to write: .jsonl or .csv",
    )
    g.set_defaults(handler=handle_generate)

    v = sub.add_parser(
        "validate",
        help="check a persona file",
        description="Check a persona file and print a JSON summary of it. A bad file is "
        "reported with its line and field (exit status 2).",
    )
    v.add_argument("file", type=path_arg, metavar="FILE", help="persona file (.jsonl or .csv)")
    v.set_defaults(handler=handle_validate)

    i = sub.add_parser(
        "infer",
        help="infer personas from a corpus of users' posts with a model",
        description="Ask a model to read each user's posts and write a persona for that user. "
        "The corpus is a CSV file with a header holding user_id and text columns.",
    )
    i.add_argument("corpus", type=path_arg, metavar="CORPUS", help="CSV file with user_id and text")
    i.add_argument("--llm", required=True, metavar="SPEC", help=LLM_HELP)
    i.add_argument("--theme", default="climate change", help=THEME_HELP)
    i.add_argument(
        "--seed", type=int, default=0, help="seed of the model requests (default: %(default)s)"
    )
    i.add_argument(
        "--out",
        type=path_arg,
        required=True,
        metavar="FILE",
        help="persona file to write: .jsonl or .csv",
    )
    i.add_argument(
        "--skip-failed",
        action="store_true",
        help="leave out users for whom the model gave no valid answer (default: stop with an error)",
    )
    i.set_defaults(handler=handle_infer)

    s = sub.add_parser(
        "ipip",
        help="give each persona the Mini-IPIP personality survey through a model",
        description="Give every persona in FILE the 20-item Mini-IPIP personality survey through "
        "a model and compare the measured Big Five traits with the persona's targets. "
        "Prints a JSON summary of the agreement.",
    )
    s.add_argument("file", type=path_arg, metavar="FILE", help="persona file (.jsonl or .csv)")
    s.add_argument("--llm", required=True, metavar="SPEC", help=LLM_HELP)
    s.add_argument("--theme", default="climate change", help=THEME_HELP)
    s.add_argument(
        "--seed", type=int, default=0, help="seed of the model requests (default: %(default)s)"
    )
    s.add_argument(
        "--out",
        type=path_arg,
        default=None,
        metavar="FILE",
        help="also write each persona's answers and scores as JSON Lines",
    )
    s.set_defaults(handler=handle_ipip)


def _write(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True, allow_nan=False, default=str) + "\n")


def _fail(msg: str, code: int) -> int:
    sys.stderr.write(f"friendsim personas: {msg}\n")
    return code


def _bad_out(out: Path | None, what: str) -> str | None:
    """Why ``--out`` cannot take the ``what`` (a run's own file, a directory, a missing
    folder: :func:`~friendsim.rundir.outputs.check_output_file`), or ``None`` when it can."""
    from friendsim.rundir.errors import OutputPathError
    from friendsim.rundir.outputs import check_output_file

    if out is None:
        return None
    try:
        check_output_file(out, what=what)
    except OutputPathError as exc:
        return f"--out {exc}"
    return None


def _bad_persona_out(out: Path) -> str | None:
    """Why ``--out`` cannot take a persona file: a suffix that
    :func:`~friendsim.agents.persona_io.load_personas` (``validate``, ``run``) does not read,
    or any reason of :func:`_bad_out`; ``None`` when it can."""
    from friendsim.agents.persona_io import PersonaFileError, check_persona_suffix

    try:
        check_persona_suffix(out)
    except PersonaFileError as exc:
        return f"--out {exc}"
    return _bad_out(out, "persona file")


def _llm_problem(spec: str, exc: Exception) -> str:
    """``exc`` (why the model of ``--llm SPEC`` cannot be used) as one line naming the option,
    the spec shown with any ``user:password@`` masked."""
    from friendsim.llm.redact import mask_userinfo

    return f"--llm {mask_userinfo(spec)}: {exc}"


def _bad_llm(spec: str) -> str | None:
    """Why ``--llm SPEC`` names no provider (the provider registry's verdict on its shape:
    an unknown provider, no model), or ``None`` when it parses. Checked before any file is
    read or model asked."""
    from friendsim.llm.errors import ProviderConfigError
    from friendsim.llm.registry import parse_spec

    try:
        parse_spec(spec)
    except ProviderConfigError as exc:
        return _llm_problem(spec, exc)
    return None


def _save(personas: Sequence[Persona], out: Path) -> str | None:
    """Write ``personas`` to ``out``; returns why it could not be written (``None``: written)."""
    from friendsim.agents.persona_io import save_personas, save_personas_csv
    from friendsim.rundir.outputs import os_error_message

    try:
        if out.suffix.lower() == ".csv":
            save_personas_csv(personas, out)
        else:
            save_personas(personas, out)
    except OSError as exc:
        return f"--out {os_error_message(exc)}"
    return None


def summarise(personas: Sequence[Persona]) -> dict[str, Any]:
    """Counts of dominant policies and attribute values, mean traits and activity."""
    import statistics

    from friendsim.agents.persona import TRAITS

    attrs: dict[str, Counter[str]] = {}
    for p in personas:
        for k, v in p.attributes.items():
            attrs.setdefault(k, Counter())[v] += 1
    return {
        "n": len(personas),
        "dominant": dict(Counter(p.dominant_policy for p in personas)),
        "attributes": {k: dict(c) for k, c in attrs.items()},
        "big5_mean": {t: round(statistics.fmean(p.big5[t] for p in personas), 4) for t in TRAITS},
        "activity_mean": round(statistics.fmean(p.activity for p in personas), 4),
        "activity_max": round(max(p.activity for p in personas), 4),
    }


def handle_generate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from friendsim.agents.generator import check_dominant_weight, generate_personas
    from friendsim.runtime.config import PEAK_BYTES_PER_PERSONA, check_population, machine_memory

    if bad := _bad_persona_out(args.out):
        return _fail(bad, 2)
    try:
        check_population(
            args.n, what="personas", bytes_each=PEAK_BYTES_PER_PERSONA, memory=machine_memory()
        )
    except ValueError as exc:
        return _fail(f"--n {args.n}: {exc}", 2)
    try:
        check_dominant_weight(args.dominant_weight)
    except ValueError as exc:
        return _fail(f"--dominant-weight {args.dominant_weight}: {exc}", 2)
    try:
        personas = generate_personas(
            args.n, seed=args.seed, theme=args.theme, dominant_weight=args.dominant_weight
        )
    except ValidationError as exc:  # the theme is in every persona's stance and description
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        too_long = f"too long for the personas' {field} ({first['msg']})"
        return _fail(f"--theme ({len(args.theme):,} characters): {too_long}", 2)
    except ValueError as exc:
        return _fail(str(exc), 2)
    if bad := _save(personas, args.out):
        return _fail(bad, 2)
    _write({"out": str(args.out), **summarise(personas)})
    return 0


def handle_validate(args: argparse.Namespace) -> int:
    from friendsim.agents.persona_io import PersonaFileError, load_personas

    try:
        personas = load_personas(args.file)
    except (PersonaFileError, OSError) as exc:
        return _fail(str(exc), 2)
    _write({"file": str(args.file), "valid": True, **summarise(personas)})
    return 0


async def _with_llm(spec: str, job: Any) -> Any:
    """Run ``job`` with an LLM stack for ``spec`` built as a run builds its stacks (default
    ``[llm]`` limits and retries, no cache). ``spec`` has passed :func:`_bad_llm`."""
    from friendsim.runtime.config import parse_config
    from friendsim.runtime.llm_stacks import make_ledger, open_llm_stack

    cfg = parse_config({"llm": {"provider": spec, "cache": "off"}}, source="<personas>")
    stack = await open_llm_stack(spec, cfg, cache_path=None, ledger=make_ledger(cfg))
    try:
        return await job(stack)
    finally:
        await stack.aclose()


def handle_infer(args: argparse.Namespace) -> int:
    import asyncio

    from friendsim.agents.planner import CorpusError, PlannerError, infer_personas, load_corpus
    from friendsim.llm.errors import LLMError, ProviderConfigError

    if bad := _bad_persona_out(args.out) or _bad_llm(args.llm):
        return _fail(bad, 2)
    try:
        corpus = load_corpus(args.corpus)
    except (CorpusError, OSError) as exc:
        return _fail(str(exc), 2)

    async def job(llm: LLM) -> list[Persona]:
        return await infer_personas(
            corpus, llm, theme=args.theme, seed=args.seed, skip_failed=args.skip_failed
        )

    try:
        personas = asyncio.run(_with_llm(args.llm, job))
    except ProviderConfigError as exc:
        return _fail(_llm_problem(args.llm, exc), 2)
    except (PlannerError, LLMError) as exc:
        return _fail(str(exc), 1)
    if not personas:
        return _fail("no persona could be inferred", 1)
    if bad := _save(personas, args.out):
        return _fail(bad, 2)
    _write({"out": str(args.out), "users": len(corpus), **summarise(personas)})
    return 0


def handle_ipip(args: argparse.Namespace) -> int:
    import asyncio

    from friendsim.agents.ipip import survey
    from friendsim.agents.persona_io import PersonaFileError, load_personas
    from friendsim.llm.errors import LLMError, ProviderConfigError

    if bad := _bad_out(args.out, "survey answers") or _bad_llm(args.llm):
        return _fail(bad, 2)
    try:
        personas = load_personas(args.file)
    except (PersonaFileError, OSError) as exc:
        return _fail(str(exc), 2)

    async def job(llm: LLM) -> tuple[list[IPIPResult], dict[str, Any]]:
        return await survey(personas, llm, theme=args.theme, seed=args.seed)

    try:
        results, summary = asyncio.run(_with_llm(args.llm, job))
    except ProviderConfigError as exc:
        return _fail(_llm_problem(args.llm, exc), 2)
    except LLMError as exc:
        return _fail(str(exc), 1)
    if args.out is not None:
        from friendsim.rundir.outputs import os_error_message

        try:
            with args.out.open("w", encoding="utf-8") as fh:
                for r in results:
                    row = {
                        "agent_id": r.agent_id,
                        "answers": list(r.answers),
                        "scores": r.scores,
                        "scores01": r.scores01,
                        "mae": r.agreement.mae if r.agreement else None,
                        "failure": r.failure.detail if r.failure else None,
                    }
                    fh.write(json.dumps(row, sort_keys=True) + "\n")
        except OSError as exc:
            return _fail(f"--out {os_error_message(exc)}", 2)
    _write(summary)
    return 0 if summary["failed"] < summary["n"] else 1
