"""A run's personas: the first ``[agents].count`` of its persona source or persona file.

:func:`build_personas` is what the assembly (:mod:`friendsim.runtime.assembly`) calls before
anything of the run is written, and again, through :func:`with_count`, when an intervention
grows the population. What a persona source plug-in hands out is checked here, since a plug-in
may build personas without validation; every problem is a :class:`~.config.ConfigError`
naming the config file and ``[agents]``'s key, so bad input stops the run before it writes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from friendsim.agents.persona import Persona
from friendsim.agents.persona_io import PersonaFileError, load_personas
from friendsim.agents.sources import PERSONA_SOURCES
from friendsim.platform.events import unicode_problem
from friendsim.runtime.config import ConfigError, ExperimentConfig


def build_personas(cfg: ExperimentConfig, *, base: Path, source: str | Path) -> list[Persona]:
    """The run's personas: the first ``count`` of the persona source or file.

    What a persona source plug-in hands out is checked here, before anything is written: too
    few, not :class:`Persona` objects, ids twice, or text UTF-8 cannot encode (a lone
    surrogate in a persona built without validation, ``model_construct``/``model_copy``) is
    a :class:`ConfigError` naming the source (and the persona's field)."""
    n = cfg.agents.count
    path = cfg.persona_path(base)
    if path is None:
        made = list(
            PERSONA_SOURCES.create(
                cfg.agents.personas,
                cfg.agents.persona_params,
                count=n,
                seed=cfg.experiment.seed,
                theme=cfg.experiment.theme,
            )
        )
        name = cfg.agents.personas
        if len(made) < n:
            raise ConfigError(
                source,
                "[agents].personas",
                f"persona source {name!r} made {len(made)} personas, {n} asked",
            )
        made = made[:n]
        if bad := next((p for p in made if not isinstance(p, Persona)), None):
            raise ConfigError(
                source,
                "[agents].personas",
                f"persona source {name!r} made a {type(bad).__name__}, not a Persona",
            )
        ids = [p.id for p in made]
        if len(set(ids)) != len(ids):
            twice = sorted(i for i, k in Counter(ids).items() if k > 1)[:5]
            raise ConfigError(
                source,
                "[agents].personas",
                f"persona source {name!r} made personas with the same id: {', '.join(twice)}",
            )
        for i, persona in enumerate(made):  # a persona built without validation can hold any
            problem = unicode_problem(persona.__dict__, f"personas[{i}]")
            if problem is not None:
                raise ConfigError(
                    source,
                    "[agents].personas",
                    f"persona source {name!r} made a persona the log cannot hold: {problem}",
                )
        return made
    if not path.is_file():
        raise ConfigError(source, "[agents].personas", f"persona file not found: {path}")
    try:
        personas = load_personas(path)
    except PersonaFileError as exc:
        raise ConfigError(source, "[agents].personas", str(exc)) from None
    if len(personas) < n:
        raise ConfigError(
            source,
            "[agents].count",
            f"asks for {n} agents but {path} holds only {len(personas)} personas",
        )
    return personas[:n]


def with_count(cfg: ExperimentConfig, n: int) -> ExperimentConfig:
    """``cfg`` with ``[agents].count = n`` (a grown population's personas)."""
    return cfg.model_copy(update={"agents": cfg.agents.model_copy(update={"count": n})})
