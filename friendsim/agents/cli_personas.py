"""``friendsim personas ...``: generate, validate, infer (LLM planner) and survey (Mini-IPIP).

- ``personas generate --n 30 --seed 0 [--theme T] --out FILE`` (``.jsonl`` or ``.csv``)
- ``personas validate FILE``: prints a JSON summary; exit 2 with the line/field on a bad file
- ``personas infer CORPUS.csv --llm SPEC --out FILE [--theme T]``: the LLM planner
- ``personas ipip FILE --llm SPEC [--out results.jsonl]``: Mini-IPIP pre-survey and agreement

Exit codes: 0 done, 2 bad input (file, spec), 1 the model gave no valid answer.
Wire in with ``cli_personas.register(subparsers)`` in ``friendsim/cli.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from friendsim.agents.ipip import IPIPResult
    from friendsim.agents.persona import Persona
    from friendsim.llm.base import LLM


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``personas`` command group to the CLI's sub-parsers."""
    p = subparsers.add_parser("personas", help="generate, validate, infer or survey personas")
    sub = p.add_subparsers(dest="personas_command", required=True)

    g = sub.add_parser("generate", help="seeded synthetic personas")
    g.add_argument("--n", type=int, default=30)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--theme", default="climate change")
    g.add_argument("--dominant-weight", type=float, default=0.6)
    g.add_argument("--out", type=Path, required=True, help=".jsonl or .csv")
    g.set_defaults(handler=handle_generate)

    v = sub.add_parser("validate", help="validate a persona file")
    v.add_argument("file", type=Path)
    v.set_defaults(handler=handle_validate)

    i = sub.add_parser("infer", help="infer personas from a corpus CSV (user_id,text) with an LLM")
    i.add_argument("corpus", type=Path)
    i.add_argument("--llm", required=True, help="provider spec, e.g. openai:gpt-4o-mini")
    i.add_argument("--theme", default="climate change")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--out", type=Path, required=True)
    i.add_argument("--skip-failed", action="store_true")
    i.set_defaults(handler=handle_infer)

    s = sub.add_parser("ipip", help="administer the Mini-IPIP to each persona through an LLM")
    s.add_argument("file", type=Path)
    s.add_argument("--llm", required=True)
    s.add_argument("--theme", default="climate change")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, default=None, help="per-agent results as JSONL")
    s.set_defaults(handler=handle_ipip)


def _write(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True, allow_nan=False, default=str) + "\n")


def _fail(msg: str, code: int) -> int:
    sys.stderr.write(f"friendsim personas: {msg}\n")
    return code


def _save(personas: Sequence[Persona], out: Path) -> None:
    from friendsim.agents.persona_io import save_personas, save_personas_csv

    if out.suffix.lower() == ".csv":
        save_personas_csv(personas, out)
    else:
        save_personas(personas, out)


def summarise(personas: Sequence[Persona]) -> dict[str, Any]:
    """Counts of dominant policies and attribute values, mean traits and activity."""
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
    from friendsim.agents.generator import generate_personas

    try:
        personas = generate_personas(
            args.n, seed=args.seed, theme=args.theme, dominant_weight=args.dominant_weight
        )
    except ValueError as exc:
        return _fail(str(exc), 2)
    _save(personas, args.out)
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
    from friendsim.llm import build_llm

    stack = await build_llm(spec)
    try:
        return await job(stack)
    finally:
        await stack.aclose()


def handle_infer(args: argparse.Namespace) -> int:
    import asyncio

    from friendsim.agents.planner import (
        CorpusError,
        PlannerError,
        infer_personas,
        load_corpus,
    )
    from friendsim.llm.errors import LLMError, ProviderConfigError

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
        return _fail(str(exc), 2)
    except (PlannerError, LLMError) as exc:
        return _fail(str(exc), 1)
    if not personas:
        return _fail("no persona could be inferred", 1)
    _save(personas, args.out)
    _write({"out": str(args.out), "users": len(corpus), **summarise(personas)})
    return 0


async def survey(
    personas: Sequence[Persona], llm: LLM, *, theme: str, seed: int = 0
) -> tuple[list[IPIPResult], dict[str, Any]]:
    """Administer the Mini-IPIP to every persona (concurrently) and summarise agreement."""
    import asyncio

    from friendsim.agents.ipip import administer, population_agreement
    from friendsim.agents.persona import TRAITS

    results = list(
        await asyncio.gather(*(administer(p, llm, theme=theme, seed=seed) for p in personas))
    )
    ok = [r for r in results if r.agreement is not None]
    corr = population_agreement(personas, results)
    summary = {
        "n": len(results),
        "failed": len(results) - len(ok),
        "mean_abs_error": {
            t: round(statistics.fmean(r.agreement.abs_error[t] for r in ok if r.agreement), 4)
            for t in TRAITS
        }
        if ok
        else {},
        "mae": round(statistics.fmean(r.agreement.mae for r in ok if r.agreement), 4)
        if ok
        else None,
        "trait_correlation_across_agents": {
            t: (None if math.isnan(v) else round(v, 4)) for t, v in corr.items()
        },
    }
    return results, summary


def handle_ipip(args: argparse.Namespace) -> int:
    import asyncio

    from friendsim.agents.persona_io import PersonaFileError, load_personas
    from friendsim.llm.errors import LLMError, ProviderConfigError

    try:
        personas = load_personas(args.file)
    except (PersonaFileError, OSError) as exc:
        return _fail(str(exc), 2)

    async def job(llm: LLM) -> tuple[list[IPIPResult], dict[str, Any]]:
        return await survey(personas, llm, theme=args.theme, seed=args.seed)

    try:
        results, summary = asyncio.run(_with_llm(args.llm, job))
    except ProviderConfigError as exc:
        return _fail(str(exc), 2)
    except LLMError as exc:
        return _fail(str(exc), 1)
    if args.out is not None:
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
    _write(summary)
    return 0 if summary["failed"] < summary["n"] else 1
