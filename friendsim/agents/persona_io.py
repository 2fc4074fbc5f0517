"""Persona files: JSONL (one persona object per line) and CSV (flat columns).

Every line is validated on its own; the first bad one raises :class:`PersonaFileError` naming the
file, the line number (1-based, as an editor shows it; CSV counts the header as line 1) and the
field. Duplicate ids are an error too.

CSV columns: ``id, name, role, description, stance, stance_score, style, activity, dominant``,
the Big Five as ``big5_O .. big5_N``, reward weights as ``lambda_SOC .. lambda_EMO``, facets as
``facet_<name>`` and group attributes as ``attr_<name>``. Empty cells mean "use the default".
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from friendsim.agents.persona import COMPONENTS, TRAITS, Persona


class PersonaFileError(ValueError):
    """A persona file is malformed. ``line`` is 1-based (0: the file as a whole); ``field`` the
    offending field/column (``"<file>"``: none); the message names only those that apply."""

    def __init__(self, path: str | Path, line: int, field: str, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        where = [f"line {line}"] if line > 0 else []
        if field != "<file>":
            where.append(f"field {field!r}")
        super().__init__(", ".join([self.path, *where]) + f": {problem}")


_CSV_SCALARS = ("id", "name", "role", "description", "stance", "style", "dominant")
_CSV_FLOATS = ("stance_score", "activity")


PERSONA_SUFFIXES = (".jsonl", ".ndjson", ".csv")
"""The suffixes a persona file may have (any case): JSON Lines, or CSV for ``.csv``."""


def check_persona_suffix(path: str | Path) -> None:
    """Raise :class:`PersonaFileError` when ``path``'s suffix is none of
    :data:`PERSONA_SUFFIXES`, the message naming the accepted ones. Reads nothing, so commands
    that write persona files refuse a name :func:`load_personas` would not read back."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in PERSONA_SUFFIXES:
        what = f"unsupported suffix {suffix!r}" if suffix else "no suffix"
        raise PersonaFileError(p, 0, "<file>", f"{what}; use .jsonl or .csv")


def load_personas(path: str | Path) -> list[Persona]:
    """Load and validate personas from a ``.jsonl`` or ``.csv`` file (by suffix).

    Every problem is a :class:`PersonaFileError`: a file that cannot be read, is not UTF-8
    (naming the first line that is not), not JSON or CSV, or holds a bad persona."""
    p = Path(path)
    check_persona_suffix(p)
    try:
        personas = _load_csv(p) if p.suffix.lower() == ".csv" else _load_jsonl(p)
    except UnicodeDecodeError as exc:
        line = first_non_utf8_line(p)
        raise PersonaFileError(p, line, "<file>", f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise PersonaFileError(p, 0, "<file>", f"cannot read: {exc.strerror}") from None
    if not personas:
        raise PersonaFileError(p, 0, "<file>", "no personas in file")
    return personas


def first_non_utf8_line(path: Path) -> int:
    """The 1-based line of ``path`` holding its first byte that is not UTF-8, for error messages
    (0: none, or unreadable). Decoding line by line finds it exactly: no UTF-8 character spans a
    newline byte."""
    try:
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return lineno
    except OSError:
        pass
    return 0


def save_personas(personas: Iterable[Persona], path: str | Path) -> None:
    """Write personas as JSONL (one object per line, stable key order)."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for persona in personas:
            fh.write(json.dumps(persona.model_dump(), sort_keys=True, ensure_ascii=False) + "\n")


def _first_error(err: ValidationError, column_of: dict[str, str] | None = None) -> tuple[str, str]:
    first = err.errors()[0]
    loc = [str(x) for x in first["loc"]]
    field = ".".join(loc) if loc else "<persona>"
    if column_of is not None and loc:
        field = column_of.get(".".join(loc), column_of.get(loc[0], field))
    return field, first["msg"]


def _check_unique(p: Path, line: int, persona: Persona, seen: dict[str, int]) -> None:
    if persona.id in seen:
        raise PersonaFileError(
            p, line, "id", f"duplicate id {persona.id!r} (first on line {seen[persona.id]})"
        )
    seen[persona.id] = line


def _load_jsonl(p: Path) -> list[Persona]:
    out: list[Persona] = []
    seen: dict[str, int] = {}
    with p.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise PersonaFileError(
                    p, lineno, "<json>", f"invalid JSON: {exc.msg} at column {exc.colno}"
                ) from None
            except ValueError:  # an integer longer than int() converts
                raise PersonaFileError(
                    p,
                    lineno,
                    "<json>",
                    f"a number with more than {sys.get_int_max_str_digits()} digits",
                ) from None
            except RecursionError:
                raise PersonaFileError(
                    p, lineno, "<json>", "invalid JSON: nested too deeply"
                ) from None
            if not isinstance(obj, dict):
                raise PersonaFileError(
                    p, lineno, "<json>", f"expected a JSON object, got {type(obj).__name__}"
                )
            try:
                persona = Persona.model_validate(obj)
            except ValidationError as exc:
                field, msg = _first_error(exc)
                raise PersonaFileError(p, lineno, field, msg) from None
            _check_unique(p, lineno, persona, seen)
            out.append(persona)
    return out


def _csv_row_to_obj(
    header: Sequence[str], row: dict[str, str], p: Path, line: int
) -> tuple[dict[str, Any], dict[str, str]]:
    obj: dict[str, Any] = {}
    column_of: dict[str, str] = {}
    big5: dict[str, Any] = {}
    lambdas: dict[str, Any] = {}
    facets: dict[str, Any] = {}
    attrs: dict[str, str] = {}
    for col in header:
        cell = (row.get(col) or "").strip()
        if cell == "":
            continue
        if col in _CSV_SCALARS:
            obj[col] = cell
            column_of[col] = col
        elif col in _CSV_FLOATS:
            obj[col] = _float(cell, p, line, col)
            column_of[col] = col
        elif col.startswith("big5_"):
            key = col.removeprefix("big5_")
            big5[key] = _float(cell, p, line, col)
            column_of[f"big5.{key}"] = col
        elif col.startswith("lambda_"):
            key = col.removeprefix("lambda_")
            lambdas[key] = _float(cell, p, line, col)
            column_of[f"lambdas.{key}"] = col
        elif col.startswith("facet_"):
            key = col.removeprefix("facet_")
            facets[key] = _float(cell, p, line, col)
            column_of[f"facets.{key}"] = col
        elif col.startswith("attr_"):
            attrs[col.removeprefix("attr_")] = cell
        else:
            raise PersonaFileError(p, 1, col, "unknown column")
    obj["big5"] = big5
    obj["lambdas"] = lambdas
    obj["facets"] = facets
    obj["attributes"] = attrs
    column_of.setdefault("big5", "big5_" + "/".join(TRAITS))
    column_of.setdefault("lambdas", "lambda_" + "/".join(COMPONENTS))
    return obj, column_of


def _float(cell: str, p: Path, line: int, col: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise PersonaFileError(p, line, col, f"{cell!r} is not a number") from None


def _load_csv(p: Path) -> list[Persona]:
    with p.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        try:
            return _read_csv(p, reader)
        except csv.Error as exc:  # the inner reader's count: it includes the line it failed on
            line = reader.reader.line_num
            raise PersonaFileError(p, line, "<csv>", f"invalid CSV: {exc}") from None


def _read_csv(p: Path, reader: csv.DictReader[str]) -> list[Persona]:
    out: list[Persona] = []
    seen: dict[str, int] = {}
    header = list(reader.fieldnames or [])
    if not header:
        raise PersonaFileError(p, 1, "<header>", "missing header row")
    for col in ("id", "name"):
        if col not in header:
            raise PersonaFileError(p, 1, col, "required column missing from header")
    for row in reader:
        line = reader.line_num
        if None in row:
            raise PersonaFileError(
                p,
                line,
                "<row>",
                f"{len(header) + len(row[None])} cells but {len(header)} columns",
            )
        if not any((v or "").strip() for v in row.values()):
            continue
        obj, column_of = _csv_row_to_obj(header, row, p, line)
        try:
            persona = Persona.model_validate(obj)
        except ValidationError as exc:
            field, msg = _first_error(exc, column_of)
            raise PersonaFileError(p, line, field, msg) from None
        _check_unique(p, line, persona, seen)
        out.append(persona)
    return out


def persona_to_csv_row(persona: Persona) -> dict[str, str]:
    """Flatten a persona to the CSV column layout (the inverse of the loader)."""
    row: dict[str, str] = {c: str(getattr(persona, c) or "") for c in _CSV_SCALARS}
    row["stance_score"] = repr(persona.stance_score)
    row["activity"] = repr(persona.activity)
    row.update({f"big5_{k}": repr(v) for k, v in persona.big5.items()})
    row.update({f"lambda_{k}": repr(v) for k, v in persona.lambdas.items()})
    row.update({f"facet_{k}": repr(v) for k, v in persona.facets.items()})
    row.update({f"attr_{k}": v for k, v in persona.attributes.items()})
    return row


def save_personas_csv(personas: Sequence[Persona], path: str | Path) -> None:
    """Write personas in the CSV column layout (columns = union over personas)."""
    rows = [persona_to_csv_row(x) for x in personas]
    cols: list[str] = []
    for r in rows:
        cols.extend(c for c in r if c not in cols)
    with Path(path).open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
