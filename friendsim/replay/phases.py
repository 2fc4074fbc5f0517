"""The configs a recorded run ran under, window by window, for re-executing it.

A run made by ``friendsim run`` has one config; a fork has its parent's phases up to the fork
window and the new config after it (:mod:`friendsim.replay.fork`). Every re-execution (resume,
re-run, a fork of a fork) must ask each window the questions it asked when recorded, so each
window has to run under the config it ran under: re-deriving a fork's shared windows under the
new config (coaching switched on, another feed, moderation that removes what the parent kept)
asks other questions, which the recorded cache cannot answer.

The manifest records the final config (``config``); a fork's lineage (``fork.phases``) records
each earlier phase as its start window and the top-level keys in which it differs from the final
config. A fork recorded before ``phases`` existed is one parent phase up to ``fork_window``,
rebuilt from ``fork.changed`` (``{"section.key": [parent value, new value]}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from friendsim.rundir.errors import RunInputError
from friendsim.rundir.manifest import Manifest
from friendsim.runtime.config import ConfigError, ExperimentConfig
from friendsim.runtime.plan import Phase

from .config import settings, with_changes

UNPHASED = frozenset({"agents.personas", "llm.cache"})
"""Keys that are the same in every phase of a re-execution: the pinned persona file and the
cache mode the re-execution chooses."""


def differences(final: ExperimentConfig, earlier: ExperimentConfig) -> dict[str, Any]:
    """``{name: earlier's value}`` for each setting (:func:`~.config.settings`) in which
    ``earlier`` differs from ``final`` (:data:`UNPHASED` keys aside): applied to ``final``,
    they give ``earlier``."""
    a, b = settings(final), settings(earlier)
    return {name: b[name] for name in a if name not in UNPHASED and a[name] != b[name]}


def phase_lineage(phases: tuple[Phase, ...]) -> list[dict[str, Any]]:
    """The manifest form of every phase but the last (``fork.phases``): start and
    :func:`differences` from the last."""
    final = phases[-1].config
    return [{"start": p.start, "changes": differences(final, p.config)} for p in phases[:-1]]


def carried_lineage(manifest: Manifest) -> dict[str, Any]:
    """The lineage a re-execution of the run ``manifest`` describes carries into its own
    manifest: a fork's ``fork`` entry, whose phases a resume of the resume (or a re-run of the
    re-run) needs again."""
    return {"fork": manifest.fork} if manifest.fork else {}


def recorded_phases(
    manifest: Manifest, cfg: ExperimentConfig, *, source: str | Path
) -> tuple[Phase, ...]:
    """The phases of the run ``manifest`` describes, ``cfg`` (its config as
    :func:`~friendsim.replay.config.config_from_manifest` rebuilt it, cache mode included) in
    force in the last; every phase shares ``cfg``'s cache mode and personas. A lineage that
    cannot be read is a :class:`~friendsim.rundir.errors.RunInputError` naming ``source``
    (the manifest's path)."""
    fork = manifest.fork
    if not fork:
        return (Phase(start=1, config=cfg),)
    try:
        last = int(fork["fork_window"]) + 1
        if "phases" in fork:
            earlier = [(int(p["start"]), dict(p["changes"])) for p in fork["phases"]]
        else:
            changed = fork.get("changed") or {}
            earlier = [(1, {key: values[0] for key, values in changed.items()})]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise RunInputError(
            f"{source}: 'fork' lineage is malformed ({type(exc).__name__}: {exc}); cannot "
            "re-execute the fork"
        ) from None
    starts = [s for s, _ in earlier] + [last]
    if not earlier or starts[0] != 1 or starts != sorted(set(starts)):
        raise RunInputError(
            f"{source}: 'fork' lineage: phases start at windows {starts}, not 1 and then "
            "increasing; cannot re-execute the fork"
        )
    out = []
    for start, changes in earlier:
        kept = {k: v for k, v in changes.items() if k not in UNPHASED}
        try:
            out.append(Phase(start=start, config=with_changes(cfg, kept) if kept else cfg))
        except (RunInputError, ConfigError) as exc:
            raise RunInputError(
                f"{source}: 'fork' lineage: the phase from window {start} is not a valid "
                f"config ({exc}); cannot re-execute the fork"
            ) from None
    return (*out, Phase(start=last, config=cfg))
