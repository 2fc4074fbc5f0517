"""The LLM "planner": infer personas from a user-supplied corpus (CSV of user id and text).

Like the paper, a planner model reads each user's own posts and writes a persona with only
content-inferable traits (role, description, stance, style), Big Five estimates and a dominant
motive; we then attach the paper-style reward mix for that dominant motive. Output is structured
(JSON schema) and validated; invalid answers are re-asked, and a user whose answer stays invalid
raises :class:`PlannerError` naming the user (or is skipped with ``skip_failed=True``).

Corpus CSV: a header with ``user_id`` and ``text`` columns (others ignored); errors name the line.
Activity is the user's post count relative to the mean (heavy-tailed in real data).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from friendsim.agents.asking import ask_validated, derive_seed
from friendsim.agents.generator import dominant_lambdas
from friendsim.agents.memory import snippet
from friendsim.agents.persona import COMPONENTS, TRAITS, Persona
from friendsim.agents.persona_io import first_non_utf8_line
from friendsim.agents.prompting import esc, esc_attr, render
from friendsim.agents.schema import OutputError, decode_json
from friendsim.llm.base import LLM, Completion

_ID_SAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


class CorpusError(ValueError):
    """The corpus file is malformed; names the file, line and problem."""


class PlannerError(RuntimeError):
    """The planner model gave no valid persona for a user after its retries."""

    def __init__(self, user_id: str, detail: str) -> None:
        self.user_id = user_id
        super().__init__(f"planner gave no valid persona for user {user_id!r}: {detail}")


def load_corpus(path: str | Path) -> dict[str, list[str]]:
    """``user_id -> texts`` in first-seen order. Raises :class:`CorpusError` naming the file and,
    where it applies, the line: unreadable, not UTF-8, not CSV, a column missing, an empty
    ``user_id`` or no text at all."""
    p = Path(path)
    try:
        with p.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            try:
                out = _read_corpus(p, reader)
            except csv.Error as exc:  # the inner reader's count includes the line it failed on
                raise CorpusError(f"{p}, line {reader.reader.line_num}: not CSV: {exc}") from None
    except UnicodeDecodeError as exc:
        line = first_non_utf8_line(p)
        raise CorpusError(f"{p}, line {line}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise CorpusError(f"{p}: cannot read: {exc.strerror}") from None
    if not out:
        raise CorpusError(f"{p}: no rows with text")
    return out


def _read_corpus(p: Path, reader: csv.DictReader[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    cols = reader.fieldnames or []
    for col in ("user_id", "text"):
        if col not in cols:
            raise CorpusError(f"{p}, line 1: missing column {col!r} (have {list(cols)})")
    for row in reader:
        uid = (row.get("user_id") or "").strip()
        text = (row.get("text") or "").strip()
        if not uid:
            raise CorpusError(f"{p}, line {reader.line_num}: empty user_id")
        if text:
            out.setdefault(uid, []).append(text)
    return out


class PlannerOut(BaseModel):
    """The planner's answer for one user."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=80)
    role: str = Field(min_length=1, max_length=200)
    description: str = Field(max_length=2000)
    stance: str = Field(max_length=500)
    stance_score: float = Field(ge=-1.0, le=1.0)
    style: str = Field(max_length=500)
    big5: dict[str, float]
    dominant: Literal["SOC", "INF", "PRE", "COORD", "EMO"]
    stance_group: Literal["supportive", "moderate", "sceptical"]


PLANNER_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "role": {"type": "string"},
        "description": {"type": "string"},
        "stance": {"type": "string"},
        "stance_score": {"type": "number", "minimum": -1, "maximum": 1},
        "style": {"type": "string"},
        "big5": {
            "type": "object",
            "properties": {t: {"type": "number", "minimum": 0, "maximum": 1} for t in TRAITS},
            "required": list(TRAITS),
            "additionalProperties": False,
        },
        "dominant": {"type": "string", "enum": list(COMPONENTS)},
        "stance_group": {"type": "string", "enum": ["supportive", "moderate", "sceptical"]},
    },
    "required": [
        "name",
        "role",
        "description",
        "stance",
        "stance_score",
        "style",
        "big5",
        "dominant",
        "stance_group",
    ],
    "additionalProperties": False,
}


def _safe_id(uid: str, taken: set[str]) -> str:
    base = _ID_SAFE.sub("_", uid).strip("_")[:56] or "user"
    cand, k = base, 1
    while cand in taken:
        k += 1
        cand = f"{base}_{k}"
    taken.add(cand)
    return cand


def _to_persona(out: PlannerOut, *, pid: str, activity: float, dominant_weight: float) -> Persona:
    try:
        return Persona(
            id=pid, name=out.name, role=out.role, description=out.description, stance=out.stance,
            stance_score=out.stance_score, style=out.style, big5=out.big5,
            lambdas=dominant_lambdas(out.dominant, dominant_weight), dominant=out.dominant,
            activity=activity, attributes={"stance_group": out.stance_group},
        )  # fmt: skip
    except ValidationError as exc:
        e = exc.errors()[0]
        raise OutputError(
            "bad_persona", f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
        ) from None


async def infer_personas(
    corpus: dict[str, list[str]],
    llm: LLM,
    *,
    theme: str,
    seed: int = 0,
    max_posts: int = 20,
    max_chars: int = 300,
    dominant_weight: float = 0.6,
    max_retries: int = 3,
    skip_failed: bool = False,
) -> list[Persona]:
    """One persona per corpus user (see module docstring). Users are processed in order."""
    counts = {uid: len(texts) for uid, texts in corpus.items()}
    mean = sum(counts.values()) / max(1, len(counts))
    taken: set[str] = set()
    personas: list[Persona] = []
    system = render("planner_system")
    for uid, texts in corpus.items():
        pid = _safe_id(uid, taken)
        activity = max(1e-3, counts[uid] / mean) if mean > 0 else 1.0
        sample: Sequence[str] = texts[:max_posts]
        blocks = "\n".join(
            f'<post author="{esc_attr(uid)}">{esc(snippet(t, max_chars))}</post>' for t in sample
        )

        def parse(comp: Completion, pid: str = pid, activity: float = activity) -> Persona:
            value = decode_json(comp.parsed, comp.text)
            try:
                out = PlannerOut.model_validate(value)
            except ValidationError as exc:
                e = exc.errors()[0]
                raise OutputError(
                    "bad_schema", f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
                ) from None
            return _to_persona(out, pid=pid, activity=activity, dominant_weight=dominant_weight)

        asked = await ask_validated(
            llm,
            stage="planner",
            system=system,
            prompt=render("planner", theme=theme, user_id=esc(uid), texts=blocks),
            parse=parse,
            json_schema=PLANNER_JSON_SCHEMA,
            label="planner",
            max_retries=max_retries,
            temperature=0.2,
            max_tokens=600,
            seed=derive_seed(seed, uid, "planner"),
        )
        if asked.value is None:
            if skip_failed:
                continue
            raise PlannerError(uid, asked.failure.detail if asked.failure else "no answer")
        personas.append(asked.value)
    return personas
