"""The user documentation's snippets work as written: every TOML block of README.md and docs/*.md
parses and, merged into a small experiment, is a valid config; every ``friendsim`` command line of
their shell blocks, of the comments of examples/*.toml and of the commands' ``--help`` examples is
accepted by the command line's parser; the plug-in ranker of docs/extending.md runs a small
experiment through its own test.

The prose is held to the code as well, through its inline code spans: every option a span names
(``friendsim report --out``, ``--theta T``, ``--executor ray``) is an option of that command (of
some command, for a bare one) and takes that value; every config key (``[llm] timeout_s``,
``[agents].count``, ``[ties] evidence = "text"``) is a key of that section and takes that value;
every ``friendsim.module.Name`` and ``api.name`` is importable; README's list of event kinds is
the log's."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import re
import shlex
import tomllib
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from friendsim import api
from friendsim.agents.policies import POLICIES
from friendsim.agents.sources import PERSONA_SOURCES
from friendsim.analysis.sentiment import SENTIMENT
from friendsim.cli import build_parser
from friendsim.coach.kinds import COACHES
from friendsim.llm.registry import PROVIDERS
from friendsim.moderation.kinds import MODERATORS
from friendsim.platform.events import EVENT_TYPES
from friendsim.platform.feeds import RANKERS
from friendsim.runtime.config import ExperimentConfig, LLMOverride
from friendsim.runtime.instruments_config import InterventionSpec
from friendsim.runtime.interventions import INTERVENTIONS
from friendsim.sweep.config import SWEEP_KEYS

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(lang: str) -> list[tuple[str, str]]:
    """``(FILE:LINE, text)`` of every fenced block of language ``lang`` in the docs."""
    out = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            if m.group(1) == lang:
                line = text.count("\n", 0, m.start()) + 1
                out.append((f"{path.relative_to(ROOT)}:{line}", m.group(2)))
    return out


def merged(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merged(base[key], value)
        else:
            base[key] = value
    return base


@pytest.fixture
def doc_ranker() -> Iterator[dict[str, Any]]:
    """The names docs/extending.md's first Python block defines, its ``recent-first`` ranker
    registered for the test."""
    (_, code), *_ = _extending_python()
    names: dict[str, Any] = {}
    exec(compile(code, "docs/extending.md", "exec"), names)
    RANKERS.register("recent-first", names["recent_first"].factory, params=names["Params"])
    try:
        yield names
    finally:
        RANKERS.unregister("recent-first")


def _extending_python() -> list[tuple[str, str]]:
    return [(w, c) for w, c in blocks("python") if w.startswith("docs/extending.md")]


TOML = blocks("toml")


def test_the_docs_have_toml_snippets() -> None:
    assert len(TOML) >= 10


@pytest.mark.parametrize(("where", "text"), TOML, ids=[w for w, _ in TOML])
def test_toml_snippet_is_a_valid_config(where: str, text: str, doc_ranker: dict[str, Any]) -> None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{where}: not TOML: {exc}")
    if "project" in data:  # a plug-in package's pyproject.toml
        return
    base = {
        "experiment": {"name": "docs", "mode": "rounds", "rounds": 6},
        "agents": {"count": 4, "policy": "baseline"},
    }
    api.parse_config(merged(base, data))


def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every sub-command's parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from walk(sub)


def command_lines() -> list[tuple[str, str]]:
    """Every ``friendsim ...`` line of the docs' shell blocks, of the example configs' comments
    (``#   friendsim run examples/x.toml --out runs/x      (what it costs)``) and of the
    ``--help`` texts."""
    out = []
    for where, text in blocks("bash"):
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip()
            if "friendsim " in line and not line.startswith(("pip ", "python")):
                cmd = line[line.index("friendsim ") :]
                if cmd.startswith("friendsim ") and not cmd.startswith("friendsim["):
                    out.append((where, cmd))
    for path in sorted((ROOT / "examples").glob("*.toml")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            comment = line.strip().removeprefix("#").strip()
            if line.lstrip().startswith("#") and comment.startswith("friendsim "):
                out.append((f"{path.relative_to(ROOT)}:{n}", re.split(r"\s{2,}", comment)[0]))

    for parser in walk(build_parser()):
        for line in f"{parser.description}\n{parser.epilog}".splitlines():
            if line.strip().startswith("friendsim "):
                out.append((f"{parser.prog} --help", line.strip()))
    return out


COMMANDS = command_lines()


def test_the_docs_have_command_lines() -> None:
    assert len(COMMANDS) >= 40


@pytest.mark.parametrize(("where", "line"), COMMANDS, ids=[f"{w}: {c}" for w, c in COMMANDS])
def test_command_line_is_accepted(where: str, line: str) -> None:
    args = shlex.split(re.split(r"\s[>|&]", line)[0])[1:]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(args)
    except SystemExit as exc:
        assert exc.code == 0, f"{where}: {line!r}: {err.getvalue().strip()}"


def test_extending_plugin_ranker_runs_its_documented_test(
    tmp_path: Path, doc_ranker: dict[str, Any]
) -> None:
    (_, test_code), *_ = [(w, c) for w, c in _extending_python() if "def test_my_ranker(" in c]
    names = dict(doc_ranker)
    exec(compile(test_code, "docs/extending.md", "exec"), names)
    names["test_my_ranker"](tmp_path)


SPAN = re.compile(r"`([^`]+)`")


def spans() -> list[tuple[str, str]]:
    """``(FILE:LINE, text)`` of every inline code span of the docs' prose (fenced blocks left
    out), its whitespace (a span may wrap) collapsed to single spaces."""
    out = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        prose = BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for m in SPAN.finditer(prose):
            line = prose.count("\n", 0, m.start()) + 1
            out.append((f"{path.relative_to(ROOT)}:{line}", " ".join(m.group(1).split())))
    return out


SPANS = spans()
COMMAND_NAMES = frozenset(
    name
    for action in build_parser()._actions
    if isinstance(action, argparse._SubParsersAction)
    for name in action.choices
)
FOREIGN_OPTIONS = frozenset({"--api-key", "--enable-prefix-caching", "--max-num-seqs"})
"""Options of other programs that the prose names alone (vLLM's, in docs/providers.md and
docs/scale-out.md); every other bare ``--option`` is a friendsim option."""


def option_spans() -> list[tuple[str, str]]:
    """The spans that name friendsim options: ``friendsim CMD ...``, ``CMD --option ...`` (``replay
    --verify``) and a bare ``--option ...``."""
    out = []
    for where, span in SPANS:
        first = span.split(" ", 1)[0]
        if (
            (first == "friendsim" and " --" in span)
            or (first in COMMAND_NAMES and " --" in span)
            or first.startswith("--")
        ):
            out.append((where, span))
    return out


OPTION_SPANS = option_spans()


def test_the_docs_name_options_in_prose() -> None:
    assert len(OPTION_SPANS) >= 60


@pytest.mark.parametrize(
    ("where", "span"), OPTION_SPANS, ids=[f"{w}: {s}" for w, s in OPTION_SPANS]
)
def test_option_named_in_prose_exists(where: str, span: str) -> None:
    """Each ``--option`` of the span is an option of the command it names (of any command, for a
    bare one), and a value written after an option with choices is one of them (each of
    ``a|b``); placeholders (``W``, ``[PORT]``, ``...``) stand for any value."""
    words = span.replace("[", " ").replace("]", " ").split()
    words = words[1:] if words[0] == "friendsim" else words
    parser: argparse.ArgumentParser | None = None
    if words[0] in COMMAND_NAMES:
        parser = build_parser()
        while words and (sub := _subcommand(parser, words[0])) is not None:
            parser, words = sub, words[1:]
    everywhere: dict[str, list[argparse.Action]] = {}
    for p in walk(build_parser()):
        for option, action in p._option_string_actions.items():
            everywhere.setdefault(option, []).append(action)
    for i, word in enumerate(words):
        if not word.startswith("--"):
            continue
        if parser is not None:
            action = parser._option_string_actions.get(word)
            assert action is not None, f"{where}: `{span}`: {parser.prog} has no option {word}"
            actions = [action]
        else:
            if word in FOREIGN_OPTIONS:
                continue
            actions = everywhere.get(word, [])
            assert actions, f"{where}: `{span}`: no friendsim command has an option {word}"
        value = words[i + 1] if i + 1 < len(words) else ""
        choices = [a.choices for a in actions if a.choices]
        if choices and value and not value.startswith("-") and not value.isupper():
            for alternative in value.split("|"):
                assert any(alternative in c for c in choices), (
                    f"{where}: `{span}`: {word} takes {sorted(choices[0])}, not {alternative!r}"
                )


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


KEY = re.compile(r"\[(\[?)([a-z_]+(?:\.[a-z_]+)?)\]\]?(?:\.| )([a-z_]+)(?: = (.+))?")
PLACEHOLDER = re.compile(r'"[A-Z][A-Z_:]*"')
"""A value that stands for any (``provider = "NAME:ANYTHING"``): checked for its key only."""


def config_key_mentions() -> list[tuple[str, str, str, str | None]]:
    """``(where, section, key, value or None)`` of every config key the prose names in a span of
    its own (``[llm] timeout_s``, ``[agents].count``, ``[[interventions]] kind``, ``[ties]
    evidence = "text"``) and of every one the example configs' comments name."""
    out = []
    for where, span in SPANS:
        if m := KEY.fullmatch(span):
            out.append((where, m.group(2), m.group(3), m.group(4)))
    value = r'("[^"]*"|[\w.+-]+)'
    example_key = re.compile(
        rf"\[\[?([a-z_]+(?:\.[a-z_]+)?)\]\]?(?:\.([a-z_]+)(?: = {value})?| ([a-z_]+) = {value})"
    )
    for path in sorted((ROOT / "examples").glob("*.toml")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "#" not in line:
                continue
            for m in example_key.finditer(line[line.index("#") :]):
                key, val = (m.group(2), m.group(3)) if m.group(2) else (m.group(4), m.group(5))
                out.append((f"{path.relative_to(ROOT)}:{n}", m.group(1), key, val))
    return out


KEYS = config_key_mentions()
ARRAY_SECTIONS = {"interventions", "surveys", "llm.overrides"}


def section_keys(section: str) -> set[str]:
    """The keys ``section`` of an experiment file takes (an intervention: any kind's; a sweep
    file's ``[sweep]``: the sweep's keys)."""
    if section == "sweep":
        return set(SWEEP_KEYS)
    if section == "interventions":
        keys = set(InterventionSpec.model_fields)
        for name in INTERVENTIONS.names():
            keys |= set(INTERVENTIONS.get(name).params.model_fields)
        return keys
    if section == "llm.overrides":
        return set(LLMOverride.model_fields)
    field = ExperimentConfig.model_fields.get(section)
    if field is None:
        return set()
    model = field.annotation
    if section in ARRAY_SECTIONS:
        (model, _) = typing.get_args(model)
    return set(model.model_fields) if isinstance(model, type) else set()


def test_the_docs_name_config_keys() -> None:
    assert len(KEYS) >= 40


@pytest.mark.parametrize(
    ("where", "section", "key", "value"), KEYS, ids=[f"{w}: [{s}] {k}" for w, s, k, _ in KEYS]
)
def test_config_key_named_in_prose_exists(
    where: str, section: str, key: str, value: str | None
) -> None:
    """The key is one of its section's, and a value written with it (a table's key) is valid."""
    known = section_keys(section)
    assert known, f"{where}: [{section}] is no section of an experiment file"
    assert key in known, f"{where}: [{section}] has no key {key!r}; it has {sorted(known)}"
    if value is None or section in ARRAY_SECTIONS | {"sweep"} or PLACEHOLDER.fullmatch(value):
        return
    try:
        data = tomllib.loads(f"{key} = {value}")
    except tomllib.TOMLDecodeError:
        return  # a placeholder: concurrency = C
    base = {
        "experiment": {"name": "docs", "mode": "rounds", "rounds": 6},
        "agents": {"count": 4, "policy": "baseline"},
    }
    api.parse_config(merged(base, {section: data}))


NAME = re.compile(r"\bfriendsim(?:\.[A-Za-z_]\w*)+")
ENTRY_POINT_GROUPS = frozenset(
    r.group
    for r in (
        PROVIDERS,
        RANKERS,
        POLICIES,
        COACHES,
        SENTIMENT,
        PERSONA_SOURCES,
        MODERATORS,
        INTERVENTIONS,
    )
)


def python_names() -> list[tuple[str, str]]:
    """Every dotted ``friendsim.…`` name and every ``api.…`` name of the prose's spans."""
    out = []
    for where, span in SPANS:
        out.extend((where, name) for name in NAME.findall(span))
        if m := re.match(r"(?:await )?api\.(\w+)", span):
            out.append((where, span[m.start(1) - 4 :]))
    return out


PYTHON_NAMES = python_names()


def test_the_docs_name_python_objects() -> None:
    assert len(PYTHON_NAMES) >= 40


@pytest.mark.parametrize(
    ("where", "name"), PYTHON_NAMES, ids=[f"{w}: {n}" for w, n in PYTHON_NAMES]
)
def test_python_name_in_prose_exists(where: str, name: str) -> None:
    """A ``friendsim.…`` name is a module, an object in one, or an entry-point group; an ``api.…``
    name is in :mod:`friendsim.api`, and one written with its parameters
    (``api.load_config(path, *, overrides=None)``) has those, keyword-only after ``*``."""
    if name.startswith("api."):
        m = re.fullmatch(r"api\.(\w+)(?:\((.*)\))?.*", name)
        assert m is not None
        obj = getattr(api, m.group(1), None)
        assert obj is not None, f"{where}: friendsim.api has no {m.group(1)!r}"
        if m.group(2) is None or "..." in m.group(2):
            return
        shown = [p.strip() for p in m.group(2).split(",") if p.strip()]
        params = list(inspect.signature(obj).parameters.values())
        names = [p.split("=", 1)[0] for p in shown if p != "*"]
        assert names == [p.name for p in params], (
            f"{where}: `{name}`: the signature is {inspect.signature(obj)}"
        )
        keyword_only = shown[shown.index("*") + 1 :] if "*" in shown else []
        for p in params:
            assert (p.kind is inspect.Parameter.KEYWORD_ONLY) == any(
                s.split("=", 1)[0] == p.name for s in keyword_only
            ), f"{where}: `{name}`: the signature is {inspect.signature(obj)}"
        return
    if name in ENTRY_POINT_GROUPS:
        return
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            assert hasattr(obj, part), f"{where}: {'.'.join(parts[:i])} has no {part!r} ({name})"
            obj = getattr(obj, part)
        return
    pytest.fail(f"{where}: {name} is neither a module nor an entry-point group")


def test_readme_lists_every_event_kind() -> None:
    """README's paragraph on the ``kind`` column names exactly the log's event kinds."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("`seq` is the global order")
    paragraph = text[start : text.index("\n\n", start)]
    named = set(re.findall(r"`([a-z_]+)`", paragraph)) - {"seq", "t", "kind", "actor"}
    assert named == set(EVENT_TYPES), (
        f"README.md: missing {sorted(set(EVENT_TYPES) - named)}, unknown {sorted(named - set(EVENT_TYPES))}"
    )


RUN_DIRECTORY = ROOT / "docs" / "run-directory.md"


def table_column(text: str, header: str) -> list[str]:
    """The code spans of the first column of every table of ``text`` whose first header cell is
    ``header`` (a cell may name several: ``events.db-wal``, ``events.db-shm``)."""
    out: list[str] = []
    taken = False
    previous = ""
    for line in text.splitlines():
        if line.startswith("|"):
            first = line.strip("|").split("|", 1)[0].strip()
            if not previous.startswith("|"):  # a table's header row
                taken = first == header
            elif taken and not set(first) <= {"-", ":"}:
                out.extend(SPAN.findall(first))
        previous = line
    return out


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next heading of any level."""
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    end = re.search(r"^#", text[start:], re.M)
    return text[start : start + end.start()] if end else text[start:]


def _differences(what: str, named: list[str], known: set[str]) -> list[str]:
    """What the page names that the code does not have, what the code has that the page does
    not name, and what the page names twice."""
    return (
        [
            f"{what}: the page names {n!r}, which the code does not have"
            for n in named
            if n not in known
        ]
        + [f"{what}: {n!r} is not on the page" for n in sorted(known - set(named))]
        + [f"{what}: {n!r} named twice" for n in sorted({n for n in named if named.count(n) > 1})]
    )


def manifest_key_problems(text: str) -> list[str]:
    """The manifest table's keys against ``Manifest``'s fields (both ways)."""
    from friendsim.rundir.manifest import Manifest

    return _differences("manifest key", table_column(text, "key"), set(Manifest.model_fields))


def totals_problems(text: str) -> list[str]:
    """The ``totals`` table against what the close writes: the windows' counts
    (:func:`~friendsim.runtime.closing.totals`) and the losses
    (:func:`~friendsim.runtime.closing.losses`, which must be
    :data:`~friendsim.runtime.status.LOSSES`)."""
    from types import SimpleNamespace

    from friendsim.runtime.closing import losses, totals
    from friendsim.runtime.status import LOSSES

    lost = losses(SimpleNamespace(lost_actions=0, policy_errors=0), None, None)
    assert set(lost) == set(LOSSES), "runtime.closing.losses writes other counts than LOSSES"
    return _differences("totals key", table_column(text, "count"), set(totals(())) | set(lost))


def usage_problems(text: str) -> list[str]:
    """The ``llm_usage`` table against a ledger row (``LedgerEntry.to_json``), and the section's
    prose against the document's own keys (``Ledger.to_json``) and a ``by_key`` row's key."""
    from friendsim.llm.accounting import Ledger, LedgerEntry

    named = table_column(text, "usage field")
    problems = _differences("llm_usage row field", named, set(LedgerEntry().to_json()))
    prose = set(SPAN.findall(section(text, "### `llm_usage`")))
    for key in (*Ledger().to_json(), "provider", "model", "label"):
        if key not in prose:
            problems.append(f"llm_usage: {key!r} is not on the page")
    return problems


def known_file_names() -> dict[str, str]:
    """Every file name the page may list in a ``file`` table -> the code that spells it."""
    from friendsim.analysis.analyze import ANALYSIS_FILE
    from friendsim.replay.resume import ASIDE_SUFFIX, STAGING_SUFFIX
    from friendsim.report.common import FIGURES_DIR
    from friendsim.rundir import layout, scratch
    from friendsim.rundir.outputs import RUN_FILES

    names = {v: f"rundir.layout.{k}" for k, v in vars(layout).items() if k.isupper()}
    names.update({n: "rundir.outputs.RUN_FILES" for n in RUN_FILES if n not in names})
    names[ANALYSIS_FILE] = "analysis.analyze.ANALYSIS_FILE (friendsim sweep)"
    names[f"{FIGURES_DIR}/"] = "report.common.FIGURES_DIR (friendsim report)"
    names[f"RUN_DIR{STAGING_SUFFIX}/"] = "replay.resume.STAGING_SUFFIX (run --resume)"
    names[f"RUN_DIR{ASIDE_SUFFIX}[-K]/"] = "replay.resume.ASIDE_SUFFIX (run --resume)"
    names[f"{scratch.WORK_PREFIX}WHAT-RANDOM/"] = "rundir.scratch.WORK_PREFIX"
    names[f"{scratch.NEW_PREFIX}RANDOM/"] = "rundir.scratch.NEW_PREFIX"
    return names


def file_problems(text: str) -> list[str]:
    """Each file the page's ``file`` tables list is one the code names (:func:`known_file_names`),
    listed once; each name of :mod:`friendsim.rundir.layout` is listed (a sweep directory's
    named in the prose); the tables of ``events.db`` are the log and its projections."""
    from friendsim.platform.projection import MATERIALISED_TABLES
    from friendsim.rundir import layout

    known = known_file_names()
    listed = table_column(text, "file")
    problems = [
        f"file: the page lists {n!r}, which no code names" for n in listed if n not in known
    ]
    problems += [
        f"file: {n!r} listed twice" for n in sorted({n for n in listed if listed.count(n) > 1})
    ]
    prose = set(SPAN.findall(text))
    for key, value in vars(layout).items():
        if key.isupper() and value not in (prose if key.startswith("SWEEP_") else listed):
            problems.append(f"file: rundir.layout.{key} ({value!r}) is not on the page")
    tables = {"events", *MATERIALISED_TABLES}
    return problems + _differences("events.db table", table_column(text, "table"), tables)


RUN_DIRECTORY_CHECKS = {
    "manifest": (manifest_key_problems, "key", "status"),
    "totals": (totals_problems, "count", "lost_reviews"),
    "llm_usage": (usage_problems, "usage field", "replayed_cost_usd"),
    "files": (file_problems, "file", "llm_batches.db"),
    "tables": (file_problems, "table", "survey_answers"),
}
"""Each check of docs/run-directory.md: the function, the header of the table it reads and a
name that table lists (removed to show that the check sees it)."""


@pytest.mark.parametrize("check", RUN_DIRECTORY_CHECKS)
def test_run_directory_page_matches_the_code(check: str) -> None:
    """docs/run-directory.md lists exactly the manifest's keys, the ``totals`` the close writes,
    the ``llm_usage`` fields, files the code names and the tables of the log."""
    problems, _, _ = RUN_DIRECTORY_CHECKS[check]
    assert problems(RUN_DIRECTORY.read_text(encoding="utf-8")) == []


def _without_row(text: str, name: str) -> str:
    row = re.compile(rf"^\| `{re.escape(name)}` \|.*\n", re.M)
    assert len(row.findall(text)) == 1, name
    return row.sub("", text)


def _with_row(text: str, header: str, name: str) -> str:
    m = re.search(rf"^\| {re.escape(header)} \|.*\n\|[-|: ]+\|\n", text, re.M)
    assert m is not None, header
    return f"{text[: m.end()]}| `{name}` | made up |\n{text[m.end() :]}"


@pytest.mark.parametrize("check", RUN_DIRECTORY_CHECKS)
def test_run_directory_checks_see_a_missing_and_a_made_up_name(check: str) -> None:
    """Each check fails on the page with one of its rows removed, and with a row naming what
    the code does not have."""
    problems, header, name = RUN_DIRECTORY_CHECKS[check]
    text = RUN_DIRECTORY.read_text(encoding="utf-8")
    missing = problems(_without_row(text, name))
    assert missing and all(name in p for p in missing), missing
    made_up = problems(_with_row(text, header, "bogus_name"))
    assert made_up and all("bogus_name" in p for p in made_up), made_up
