"""What a persona-source plug-in hands out is checked where the run builds its population: a
clear config error naming the source, before anything is written."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from friendsim.agents.generator import generate_personas
from friendsim.agents.sources import PERSONA_SOURCES
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import ConfigError, parse_config


def _run_with(tmp_path: Path, make: Callable[[int], list[Any]]) -> None:
    PERSONA_SOURCES.register("odd-source", lambda *, count, seed, theme: make(count))
    try:
        cfg = parse_config(
            {
                "experiment": {"name": "p", "seed": 1, "rounds": 1, "n_actions": 1},
                "agents": {"count": 3, "policy": "baseline", "personas": "odd-source"},
            }
        )
        asyncio.run(run_experiment(cfg, out_dir=tmp_path / "r"))
    finally:
        PERSONA_SOURCES.unregister("odd-source")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda n: [f"p{i}" for i in range(n)], "made a str, not a Persona"),
        (lambda n: [generate_personas(1, seed=1)[0]] * n, "made personas with the same id: a00"),
    ],
    ids=["strings", "duplicates"],
)
def test_a_persona_source_s_wrong_output_is_named(
    tmp_path: Path, make: Callable[[int], list[Any]], message: str
) -> None:
    """Strings failed with ``AttributeError: 'str' object has no attribute 'id'`` and duplicate
    personas with the platform's "agent 'a00' is already registered", naming no source."""
    with pytest.raises(ConfigError, match=f"persona source 'odd-source' {message}"):
        _run_with(tmp_path, make)
    assert not (tmp_path / "r").exists()


def test_a_persona_with_text_the_log_cannot_hold_is_named(tmp_path: Path) -> None:
    """A persona built without validation (``model_copy(update=...)``) can hold a lone
    surrogate: the run failed with a bare ``UnicodeEncodeError`` writing personas.jsonl (half
    written, beside the lock); now a config error names the source, the persona and the field,
    and nothing is written."""

    def make(n: int) -> list[Any]:
        made = generate_personas(n, seed=1)
        return [made[0], made[1].model_copy(update={"style": "dry \ud800 wit"}), *made[2:]]

    with pytest.raises(ConfigError) as err:
        _run_with(tmp_path, make)
    assert str(err.value) == (
        "<config>: [agents].personas: persona source 'odd-source' made a persona the log cannot "
        "hold: personas[1].style: not valid Unicode (lone surrogate \\ud800 at character 5)"
    )
    assert not (tmp_path / "r").exists()
