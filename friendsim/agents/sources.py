"""The persona-source extension point: :data:`PERSONA_SOURCES` maps a name to a generator.

``[agents] personas`` names either a registered source (built in: ``synthetic``, the seeded
generator) or a persona file (``.jsonl`` / ``.csv``, relative to the config file). A source is
called as ``factory(count=N, seed=S, theme=T, **params)`` with ``params`` from
``[agents] persona_params`` and returns at least ``count`` personas; the run takes the first
``count``. Other packages register sources through the ``friendsim.personas`` entry-point group.
What a source returns is checked before the run writes anything (:class:`Persona` objects, ids
once, text valid Unicode: a persona built without validation may hold a lone surrogate, which
the log cannot store); anything else is a config error naming the source (exit 2).
"""

from __future__ import annotations

from collections.abc import Sequence

from friendsim.agents.persona import Persona
from friendsim.registry import Registry


def _synthetic(*, count: int, seed: int, theme: str) -> Sequence[Persona]:
    from friendsim.agents.generator import generate_personas

    return generate_personas(count, seed=seed, theme=theme)


PERSONA_SOURCES: Registry[Sequence[Persona]] = Registry(
    "persona source", group="friendsim.personas"
)
"""The persona-source extension point (entry-point group ``friendsim.personas``)."""
PERSONA_SOURCES.register("synthetic", _synthetic, summary="seeded synthetic generator")
