"""The package's layers, kept: dependencies between subpackages point down, never up, and there is
no cycle between subpackages, nor between the files of the package, counting every import (inside
functions and ``TYPE_CHECKING`` blocks too). Also: one construction site for the engine, the
coach service and the LLM stacks.

The import graph is built from the source with :mod:`ast` (nothing is imported). A module belongs
to the component named by the first part after ``friendsim.`` (``friendsim.analysis.ties`` ->
``analysis``; the package's own ``__init__`` -> ``friendsim``). The layer table below is the one
place that says where each component sits; a new subpackage must be added to it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "friendsim"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {
            "friendsim",
            "vocabulary",
            "registry",
            "_carry",
            "_lazy",
            "_slots",
            "_heap",
            "_loop",
            "_seed",
            "_signals",
            "_unicode",
        }
    ),
    frozenset({"platform", "llm"}),
    frozenset({"rundir"}),
    frozenset({"agents", "coach", "moderation", "analysis"}),
    frozenset({"runtime"}),
    frozenset({"replay", "sweep", "report", "serve", "testing"}),
    frozenset({"api"}),
    frozenset({"commands", "cli", "__main__"}),
)
"""Bottom first. A component may import components of lower layers only, except as below."""

SAME_LAYER: frozenset[tuple[str, str]] = frozenset(
    {
        ("coach", "analysis"),  # the coach reads the reward scores that analysis computes
        ("moderation", "analysis"),  # the rule moderator scores toxicity with a sentiment model
        ("report", "sweep"),  # a sweep's report reads the sweep's aggregate
        ("serve", "sweep"),  # the sweep page reads sweep.json through the sweep's one reader
        ("__main__", "cli"),  # the entry points of the command line
        ("cli", "commands"),
    }
)
"""The only imports allowed between different components of one layer (importer, imported)."""

FORBIDDEN: frozenset[tuple[str, str]] = frozenset(
    {
        ("analysis", "llm"),  # analysis reads only the log, the manifest and stored data
    }
)
"""Downward imports that are nevertheless not allowed (importer, imported)."""

COMMAND_MODULE_PREFIX = "cli_"
"""Modules named ``cli_*`` inside a component are command-line modules: they belong to the
``commands`` layer wherever they still live."""

CONSTRUCTION_SITES: frozenset[str] = frozenset(
    {
        "runtime/assembly.py",
        "runtime/llm_stacks.py",
    }
)
"""The only modules (paths under ``friendsim/``) that may call ``Engine(``, ``CoachService(`` or
``build_llm(``: the run's assembly, and the one builder of LLM stacks it calls
(``open_llm_stack``, which the jobs beside a run call too)."""


CONSTRUCTORS = frozenset({"Engine", "CoachService", "build_llm"})


@dataclass(frozen=True, slots=True)
class Edge:
    """One import of ``imported`` (a friendsim module) by ``importer`` at ``path:line``."""

    importer: str
    imported: str
    path: str
    line: int


def module_name(root: Path, path: Path) -> str:
    """``friendsim.a.b`` for ``<root>/a/b.py`` (and ``friendsim.a`` for ``a/__init__.py``)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(root: Path, path: Path) -> Iterable[Edge]:
    """Every import of a module of the package ``root`` in ``path``, wherever it appears."""
    me = module_name(root, path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    rel = str(path.relative_to(root))
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                targets = [".".join([*base, node.module] if node.module else base)]
            else:
                targets = [node.module or ""]
            # ``from friendsim import analysis`` (``from . import errors``) imports the module
            # itself (but ``from friendsim import __version__`` only the package's ``__init__``)
            targets = [
                f"{t}.{a.name}" if _is_module(root, f"{t}.{a.name}") else t
                for t in targets
                for a in node.names
            ]
        else:
            continue
        for t in targets:
            if t == root.name or t.startswith(root.name + "."):
                yield Edge(importer=me, imported=t, path=rel, line=node.lineno)


def _is_module(root: Path, module: str) -> bool:
    """Whether ``module`` (``friendsim.a.b``) is a module or subpackage of the package at ``root``."""
    parts = module.split(".")
    if parts[0] != root.name or len(parts) < 2:
        return parts == [root.name]
    path = root.joinpath(*parts[1:])
    return path.is_dir() or path.with_suffix(".py").is_file()


def component(module: str) -> str:
    """The component a module belongs to (see the module docstring and the ``cli_`` rule)."""
    parts = module.split(".")
    if len(parts) == 1:
        return parts[0]
    if len(parts) > 2 and parts[-1].startswith(COMMAND_MODULE_PREFIX):
        return "commands"
    return parts[1]


def import_graph(root: Path) -> list[Edge]:
    """All imports between modules of the package at ``root``."""
    return [e for path in sorted(root.rglob("*.py")) for e in imports_of(root, path)]


def layer_of(name: str, layers: tuple[frozenset[str], ...]) -> int:
    for i, members in enumerate(layers):
        if name in members:
            return i
    raise KeyError(name)


def violations(
    edges: Iterable[Edge],
    *,
    layers: tuple[frozenset[str], ...] = LAYERS,
    same_layer: frozenset[tuple[str, str]] = SAME_LAYER,
    forbidden: frozenset[tuple[str, str]] = FORBIDDEN,
) -> list[str]:
    """One line per import that breaks the table (unknown component, upward, sideways, forbidden)."""
    out = []
    for e in edges:
        a, b = component(e.importer), component(e.imported)
        if a == b:
            continue
        where = f"{e.path}:{e.line}: {e.importer} imports {e.imported}"
        try:
            la, lb = layer_of(a, layers), layer_of(b, layers)
        except KeyError as exc:
            out.append(f"{where}: component {exc} is not in the layer table")
            continue
        if (a, b) in forbidden:
            out.append(f"{where}: {a} may not import {b}")
        elif lb > la:
            out.append(f"{where}: upward ({a} is in layer {la}, {b} in layer {lb})")
        elif lb == la and (a, b) not in same_layer:
            out.append(f"{where}: sideways within layer {la} ({a} -> {b} is not allowed)")
    return out


def cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """The strongly connected components (with more than one member) of the component graph."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        a, b = component(e.importer), component(e.imported)
        graph.setdefault(a, set())
        graph.setdefault(b, set())
        if a != b:
            graph[a].add(b)
    return [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]


def _strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def file_cycles(root: Path, edges: Iterable[Edge]) -> list[list[str]]:
    """The file-level cycles: one line per import inside each strongly connected component (with
    more than one member) of the module graph, ``path:line: importer imports imported``. An import
    of a name that is not a module counts as one of the module that defines it (``from
    friendsim.runtime.config import ConfigError`` -> ``friendsim.runtime.config``); a package
    is its ``__init__`` file."""
    graph: dict[str, set[str]] = {}
    found: list[tuple[Edge, str]] = []
    for e in edges:
        target = e.imported
        while not _is_module(root, target):
            target = target.rpartition(".")[0]
        graph.setdefault(e.importer, set())
        graph.setdefault(target, set())
        if target != e.importer:
            graph[e.importer].add(target)
            found.append((e, target))
    out = []
    for members in sorted(sorted(c) for c in _strongly_connected(graph) if len(c) > 1):
        inside = set(members)
        lines = [
            f"{e.path}:{e.line}: {e.importer} imports {target}"
            for e, target in sorted(found, key=lambda f: (f[0].path, f[0].line, f[1]))
            if e.importer in inside and target in inside
        ]
        out.append(list(dict.fromkeys(lines)))  # ``from m import a, b``: one line
    return out


def construction_calls(root: Path) -> list[tuple[str, int, str]]:
    """``(path under root, line, name)`` of every call of a name in :data:`CONSTRUCTORS`."""
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = (
                    f.id
                    if isinstance(f, ast.Name)
                    else f.attr
                    if isinstance(f, ast.Attribute)
                    else ""
                )
                if name in CONSTRUCTORS:
                    out.append((path.relative_to(root).as_posix(), node.lineno, name))
    return out


# --- the package ----------------------------------------------------------------------------


def test_every_import_points_down_the_layer_table() -> None:
    edges = import_graph(PACKAGE)
    found = {(component(e.importer), component(e.imported)) for e in edges}
    # the graph is real: known downward edges, including one made inside a function
    assert {("runtime", "platform"), ("analysis", "vocabulary"), ("sweep", "runtime")} <= found
    assert violations(edges) == []


def test_no_cycle_between_subpackages() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_no_cycle_between_files() -> None:
    found = file_cycles(PACKAGE, import_graph(PACKAGE))
    assert found == [], "files that import each other, directly or through others:\n" + "\n\n".join(
        "\n".join(c) for c in found
    )


def test_vocabulary_imports_nothing_from_friendsim() -> None:
    edges = [
        e for e in import_graph(PACKAGE) if e.importer in {"friendsim", "friendsim.vocabulary"}
    ]
    assert edges == []


def test_analysis_reads_only_files_no_model_no_runtime() -> None:
    above = {"llm", "runtime", "replay", "sweep", "report", "agents", "coach", "commands"}
    bad = [
        f"{e.path}:{e.line} {e.imported}"
        for e in import_graph(PACKAGE)
        if component(e.importer) == "analysis" and component(e.imported) in above
    ]
    assert bad == []


def test_one_construction_site_for_engine_coach_service_and_llm_stacks() -> None:
    calls = construction_calls(PACKAGE)
    assert {name for _, _, name in calls} == CONSTRUCTORS  # the check sees real call sites
    outside = [f"{p}:{line} {name}(" for p, line, name in calls if p not in CONSTRUCTION_SITES]
    assert outside == []


# --- the checker itself, on a small package ---------------------------------------------------


def _package(tmp_path: Path, files: Mapping[str, str]) -> Path:
    root = tmp_path / "friendsim"
    for rel, text in {"__init__.py": "", **files}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


def test_checker_finds_upward_imports_inside_functions_and_cycles(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "platform/__init__.py": "",
            "platform/store.py": "def f():\n    from friendsim.runtime import engine\n",
            "runtime/__init__.py": "",
            "runtime/engine.py": "from ..platform.store import f\n",
            "analysis/__init__.py": "",
            "analysis/ties.py": "import friendsim.llm.base\n",
            "analysis/cli_analyze.py": "from friendsim.sweep import aggregate\n",
            "sweep/__init__.py": "",
            "sweep/aggregate.py": "from friendsim import analysis\n",
            "llm/__init__.py": "",
            "llm/base.py": "",
            "extra/__init__.py": "from friendsim.vocabulary import Tip\n",
            "runtime/manifest.py": "from friendsim import __version__\n",
        },
    )
    edges = import_graph(root)
    problems = violations(edges)
    assert any(
        p.startswith("platform/store.py:2: friendsim.platform.store imports friendsim.runtime")
        and "upward" in p
        for p in problems
    )
    assert any("analysis/ties.py:1" in p and "analysis may not import llm" in p for p in problems)
    assert any("component 'extra' is not in the layer table" in p for p in problems)
    # a command module may import anything below it; sweep -> analysis is downward
    assert not any("cli_analyze" in p or "sweep/aggregate" in p for p in problems)
    assert len(problems) == 3
    assert cycles(edges) == [["platform", "runtime"]]


def test_file_cycle_check_follows_every_import_and_names_each_line(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "runtime/__init__.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from .engine import Engine\n"
            ),
            "runtime/engine.py": "from . import errors\nfrom .wakes import rate\n",
            "runtime/errors.py": "",
            "runtime/wakes.py": "def rate():\n    from friendsim.runtime.engine import Engine, go\n",
            "runtime/a.py": "from friendsim.runtime import b\n",
            "runtime/b.py": "import friendsim.runtime.c\n",
            "runtime/c.py": "from friendsim.runtime.a import X\n",
        },
    )
    # ``from . import errors`` is an import of errors.py, not of the package's ``__init__``
    # (which imports engine.py): no cycle there
    assert file_cycles(root, import_graph(root)) == [
        [
            "runtime/a.py:1: friendsim.runtime.a imports friendsim.runtime.b",
            "runtime/b.py:1: friendsim.runtime.b imports friendsim.runtime.c",
            "runtime/c.py:1: friendsim.runtime.c imports friendsim.runtime.a",
        ],
        [
            "runtime/engine.py:2: friendsim.runtime.engine imports friendsim.runtime.wakes",
            "runtime/wakes.py:2: friendsim.runtime.wakes imports friendsim.runtime.engine",
        ],
    ]


def test_checker_rejects_sideways_imports_not_listed(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "agents/__init__.py": "import friendsim.coach\n",
            "coach/__init__.py": "from friendsim.analysis import rewards\n",
            "analysis/__init__.py": "",
            "analysis/rewards.py": "",
        },
    )
    problems = violations(import_graph(root))
    assert len(problems) == 1 and "agents -> coach is not allowed" in problems[0]


@pytest.mark.parametrize("call", ["Engine(x)", "svc.CoachService()", "await build_llm('s')"])
def test_construction_check_sees_every_form_of_call(tmp_path: Path, call: str) -> None:
    root = _package(tmp_path, {"serve/app.py": f"async def f():\n    return {call}\n"})
    assert [(p, line) for p, line, _ in construction_calls(root)] == [("serve/app.py", 2)]
