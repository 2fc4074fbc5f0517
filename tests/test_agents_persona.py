"""Personas: validation, persona files (JSONL/CSV) with line/field errors, the seeded generator."""

from __future__ import annotations

import csv
import json
import statistics
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from friendsim.agents import (
    COMPONENTS,
    Persona,
    PersonaFileError,
    generate_personas,
    load_personas,
    save_personas,
    save_personas_csv,
)
from friendsim.agents.generator import dominant_lambdas

BIG5 = {"O": 0.5, "C": 0.5, "E": 0.5, "A": 0.5, "N": 0.5}
LAM = {"SOC": 0.6, "INF": 0.1, "PRE": 0.1, "COORD": 0.1, "EMO": 0.1}


def _obj(i: int, **over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": f"u{i}",
        "name": f"User {i}",
        "big5": dict(BIG5),
        "lambdas": dict(LAM),
    }
    base.update(over)
    return base


def test_persona_defaults_dominant_and_normalises_lambdas() -> None:
    p = Persona.model_validate(_obj(1, lambdas={"SOC": 0.3, "EMO": 0.7}))
    assert p.dominant == "EMO"
    assert p.lambdas == {"SOC": 0.3, "INF": 0.0, "PRE": 0.0, "COORD": 0.0, "EMO": 0.7}
    with pytest.raises(ValidationError, match="largest"):
        Persona.model_validate(_obj(1, dominant="PRE"))
    with pytest.raises(ValidationError, match="sum to"):
        Persona.model_validate(_obj(1, lambdas={"SOC": 0.5}))
    with pytest.raises(ValidationError, match="missing"):
        Persona.model_validate(_obj(1, big5={"O": 0.1}))


def test_jsonl_error_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    bad = _obj(3, big5={**BIG5, "E": 1.7})
    path.write_text("\n".join(json.dumps(o) for o in (_obj(1), _obj(2), bad)) + "\n")
    with pytest.raises(PersonaFileError) as ei:
        load_personas(path)
    assert ei.value.line == 3
    assert ei.value.field == "big5.E"
    assert "line 3" in str(ei.value)

    path.write_text(json.dumps(_obj(1)) + "\n\n" + json.dumps(_obj(2, activity=-1)) + "\n")
    with pytest.raises(PersonaFileError) as ei:
        load_personas(path)
    assert (ei.value.line, ei.value.field) == (3, "activity")

    path.write_text(json.dumps(_obj(1)) + "\n{not json\n")
    with pytest.raises(PersonaFileError) as ei:
        load_personas(path)
    assert (ei.value.line, ei.value.field) == (2, "<json>")

    path.write_text(json.dumps(_obj(1)) + "\n" + json.dumps(_obj(1)) + "\n")
    with pytest.raises(PersonaFileError, match="duplicate id") as ei:
        load_personas(path)
    assert (ei.value.line, ei.value.field) == (2, "id")

    path.write_text(json.dumps({k: v for k, v in _obj(1).items() if k != "name"}) + "\n")
    with pytest.raises(PersonaFileError) as ei:
        load_personas(path)
    assert (ei.value.line, ei.value.field) == (1, "name")


def _edit_csv(path: Path, line: int, column: str, value: str) -> None:
    """Set one cell (``line`` 1-based, header = line 1) using the csv module (cells hold commas)."""
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    rows[line - 1][rows[0].index(column)] = value
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_csv_error_names_line_and_column(tmp_path: Path) -> None:
    personas = generate_personas(4, seed=3)
    path = tmp_path / "p.csv"
    save_personas_csv(personas, path)
    assert load_personas(path) == personas  # lossless round trip
    _edit_csv(path, 4, "lambda_SOC", "abc")
    with pytest.raises(PersonaFileError) as ei:
        load_personas(path)
    assert (ei.value.line, ei.value.field) == (4, "lambda_SOC")
    assert "'abc' is not a number" in str(ei.value)

    _edit_csv(path, 4, "lambda_SOC", "-0.5")
    with pytest.raises(PersonaFileError) as ei:
        load_personas(path)
    assert (ei.value.line, ei.value.field) == (4, "lambda_SOC")

    save_personas_csv(personas, path)
    _edit_csv(path, 3, "big5_N", "2")
    with pytest.raises(PersonaFileError) as ei:
        load_personas(path)
    assert (ei.value.line, ei.value.field) == (3, "big5_N")

    save_personas_csv(personas, path)
    _edit_csv(path, 5, "activity", "0")
    with pytest.raises(PersonaFileError) as ei:
        load_personas(path)
    assert (ei.value.line, ei.value.field) == (5, "activity")


def test_csv_missing_column_and_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("name,big5_O\nx,0.5\n")
    with pytest.raises(PersonaFileError) as ei:
        load_personas(path)
    assert (ei.value.line, ei.value.field) == (1, "id")
    other = tmp_path / "p.yaml"
    other.write_text("x")
    with pytest.raises(PersonaFileError) as ei:
        load_personas(other)
    assert str(ei.value) == f"{other}: unsupported suffix '.yaml'; use .jsonl or .csv"
    empty = tmp_path / "none.jsonl"
    empty.write_text("\n")
    with pytest.raises(PersonaFileError) as ei:
        load_personas(empty)
    assert str(ei.value) == f"{empty}: no personas in file"


def test_jsonl_round_trip(tmp_path: Path) -> None:
    personas = generate_personas(7, seed=11, theme="housing")
    path = tmp_path / "p.jsonl"
    save_personas(personas, path)
    assert load_personas(path) == personas


def test_generator_deterministic_per_seed() -> None:
    a = generate_personas(30, seed=42)
    b = generate_personas(30, seed=42)
    c = generate_personas(30, seed=43)
    assert [p.model_dump() for p in a] == [p.model_dump() for p in b]
    assert [p.model_dump() for p in a] != [p.model_dump() for p in c]
    assert len({p.id for p in a}) == 30


def test_generator_is_prefix_stable() -> None:
    """Growing a population keeps the people already in it (``personas generate --n``)."""
    five, ten = generate_personas(5, seed=1), generate_personas(10, seed=1)
    assert [p.model_dump() for p in ten[:5]] == [p.model_dump() for p in five]
    assert generate_personas(3, seed=1, start=5) == ten[5:8]
    big = generate_personas(120, seed=1)
    assert big[:10] == ten
    assert [p.id for p in big[98:101]] == ["a98", "a99", "a100"]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    start=st.integers(0, 2_000),
    sigma=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    weight=st.sampled_from([0.2, 0.4, 0.6, 1.0]),
    theme=st.sampled_from(["climate change", "  housing ", "AI rules"]),
)
def test_generated_personas_are_what_validating_them_gives(
    seed: int, start: int, sigma: float, weight: float, theme: str
) -> None:
    """The generator skips the validators (a quarter of a large run's set-up): each persona
    must equal, field for field and in its dump, the persona validating its fields makes."""
    for p in generate_personas(40, seed=seed, start=start, activity_sigma=sigma,
                               dominant_weight=weight, theme=theme):  # fmt: skip
        fields = {name: getattr(p, name) for name in Persona.model_fields}
        validated = Persona(**fields)
        assert validated == p
        assert json.dumps(validated.model_dump()) == json.dumps(p.model_dump())
        assert p.model_fields_set == validated.model_fields_set


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"theme": "x" * 480}, "stance"),
        ({"id_prefix": "bad prefix"}, "id"),
        ({"id_prefix": "p" * 63}, "id"),
    ],
)
def test_generator_refuses_what_would_make_an_invalid_persona(
    kwargs: dict[str, str], field: str
) -> None:
    """Skipping the validators must not let a caller's theme or id prefix through: the
    longest strings a call can make are validated before anything is drawn."""
    with pytest.raises(ValidationError) as err:
        generate_personas(100, seed=1, **kwargs)  # type: ignore[arg-type]
    assert err.value.errors()[0]["loc"] == (field,)
    longest_allowed = generate_personas(100, seed=1, id_prefix="p" * 62, theme="x" * 420)
    assert max(len(p.id) for p in longest_allowed) == 64


@pytest.mark.parametrize("n", [5, 12, 30, 31])
def test_generator_spreads_dominant_policies_evenly(n: int) -> None:
    personas = generate_personas(n, seed=n)
    counts = Counter(p.dominant for p in personas)
    full = [counts.get(c, 0) for c in COMPONENTS]
    assert max(full) - min(full) <= 1
    assert sum(full) == n
    for p in personas:
        assert p.lambdas == dominant_lambdas(p.dominant_policy, 0.6)
        assert p.lambdas[p.dominant_policy] == pytest.approx(0.6)


def test_generator_attributes_and_heavy_tailed_activity() -> None:
    personas = generate_personas(300, seed=5)
    for p in personas:
        assert set(p.attributes) == {"stance_group", "age_band", "gender"}
        assert set(p.facets) and all(0 <= v <= 1 for v in p.facets.values())
        group = p.attributes["stance_group"]
        if group == "supportive":
            assert p.stance_score >= 0.35
        elif group == "sceptical":
            assert p.stance_score <= -0.35
    acts = [p.activity for p in personas]
    # expected value 1 by construction (not rescaled: that would make persona i depend on n)
    assert statistics.fmean(acts) == pytest.approx(1.0, rel=0.25)
    assert max(acts) > 4 * statistics.median(acts)  # lognormal(0, 1): heavy right tail
    groups = Counter(p.attributes["stance_group"] for p in personas)
    assert len(groups) == 3 and min(groups.values()) > 60


def test_unreadable_json_is_a_file_error_naming_its_line(tmp_path: Path) -> None:
    """JSON nested past the parser's recursion limit, or holding an integer too long to convert,
    is a :class:`PersonaFileError` on its line (it was a RecursionError / ValueError)."""
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(_obj(1)) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(PersonaFileError) as ei:
        load_personas(path)
    assert (ei.value.line, ei.value.field) == (2, "<json>")
    assert str(ei.value) == f"{path}, line 2, field '<json>': invalid JSON: nested too deeply"
    path.write_text(json.dumps(_obj(1)) + "\n" + '{"id": "u2", "activity": ' + "1" * 5000 + "}\n")
    with pytest.raises(PersonaFileError, match="a number with more than 4300 digits") as ei:
        load_personas(path)
    assert ei.value.line == 2


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_not_utf8_names_the_line_it_is_on(tmp_path: Path, suffix: str) -> None:
    """The line of the first byte that is not UTF-8, also past the reader's first chunk."""
    path = tmp_path / f"p{suffix}"
    personas = generate_personas(300, seed=1)
    (save_personas_csv if suffix == ".csv" else save_personas)(personas, path)
    lines = path.read_bytes().split(b"\n")
    lines[250] = lines[250][:20] + b"\xff" + lines[250][21:]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(PersonaFileError) as ei:
        load_personas(path)
    assert str(ei.value) == f"{path}, line 251: not UTF-8 text (invalid start byte)"


def test_csv_the_csv_module_refuses_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    save_personas_csv(generate_personas(2, seed=1), path)  # lines 1 to 3
    with path.open("a") as fh:
        fh.write('u9,"' + "x" * 200_000 + '"\n')
    with pytest.raises(PersonaFileError) as ei:
        load_personas(path)
    assert (ei.value.line, ei.value.field) == (4, "<csv>")
    assert "invalid CSV: field larger than field limit" in str(ei.value)


def test_csv_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    """A spreadsheet's UTF-8 byte order mark is not part of the first column's name."""
    personas = generate_personas(3, seed=2)
    path = tmp_path / "p.csv"
    save_personas_csv(personas, path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_personas(path) == personas


def test_persona_suffixes(tmp_path: Path) -> None:
    """What :func:`check_persona_suffix` lets through is what :func:`load_personas` reads."""
    from friendsim.agents.persona_io import check_persona_suffix

    for name in ("p.jsonl", "P.JSONL", "p.ndjson", "p.csv"):
        check_persona_suffix(tmp_path / name)
    with pytest.raises(PersonaFileError) as ei:
        check_persona_suffix(tmp_path / "p.txt")
    assert str(ei.value) == f"{tmp_path / 'p.txt'}: unsupported suffix '.txt'; use .jsonl or .csv"
    with pytest.raises(PersonaFileError, match=r"no suffix; use \.jsonl or \.csv"):
        load_personas(tmp_path / "personas")
