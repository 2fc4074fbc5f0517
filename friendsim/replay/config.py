"""The experiment config of an old run, rebuilt from its manifest for re-execution.

``Manifest.config`` is the validated config (``cfg.model_dump(mode="json")``). Two things are
pinned so the re-execution asks exactly the recorded questions:

* file personas come from the run's own ``personas.jsonl`` (not the original file, which may
  have changed since): ``[agents].personas`` becomes ``"personas.jsonl"``, relative to
  the *new* run directory, so callers copy that file there and pass
  ``config_path=NEW_DIR/manifest.json`` to the assembly (relative paths resolve against
  the config's folder). Synthetic personas are regenerated from the seed instead: a JSONL round
  trip sorts the ``facets`` keys, and the agents' prompt lists facets in dict order, so the
  saved copy would change the prompts (and miss the cache);
* ``auto`` provider specs become the specs the run actually resolved (``Manifest.models``,
  ``Manifest.coach_model``, ``Manifest.moderation_model``), whatever keys the current
  environment holds. An LLM moderator's is pinned in ``[moderation].provider`` alone (its
  own ``"auto"``, or ``[llm].provider``'s when it names none and no agent or coach pinned that):
  ``[llm].provider`` is the agents' setting, which a fork may not change, and
  ``[moderation]`` one a fork may. The phases before a fork's come from its parent's config,
  pinned when the fork was made (:mod:`.phases`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from friendsim.rundir.errors import RunInputError
from friendsim.rundir.layout import MANIFEST, PERSONAS
from friendsim.rundir.log import require_file
from friendsim.rundir.manifest import Manifest
from friendsim.runtime.config import SYNTHETIC, ConfigError, ExperimentConfig, parse_config


def _resolved_auto(manifest: Manifest, cfg: ExperimentConfig) -> str | None:
    models = manifest.models
    dominant = manifest.dominant
    for agent, spec in models.items():
        if cfg.provider_for(agent, dominant.get(agent)) == "auto" and spec != "baseline":
            return str(spec)
    coach = manifest.coach_model
    return None if coach is None else str(coach)


def config_from_manifest(
    run_dir: Path, manifest: Manifest, *, cache: str | None = None
) -> ExperimentConfig:
    """The run's config with personas and providers pinned; ``cache`` overrides ``[llm].cache``."""
    raw = manifest.config
    if not raw:
        raise RunInputError(f"{run_dir / MANIFEST}: no 'config' object; cannot re-execute")
    source = run_dir / MANIFEST
    try:
        cfg = parse_config(raw, source=source)
    except ConfigError as exc:
        raise RunInputError(f"{source}: the recorded config is invalid here: {exc}") from None
    data: dict[str, Any] = cfg.model_dump(mode="json")
    require_file(run_dir / PERSONAS, "persona file of the run")
    if data["agents"]["personas"] != SYNTHETIC:
        data["agents"]["personas"] = PERSONAS
    auto = _resolved_auto(manifest, cfg)
    if auto is not None:
        llm = data["llm"]
        if llm["provider"] == "auto":
            llm["provider"] = auto
        for o in llm["overrides"]:
            if o["provider"] == "auto":
                o["provider"] = auto
        if data["coach"].get("provider") == "auto":
            data["coach"]["provider"] = auto
    _pin_moderator(data, manifest.moderation_model or auto)
    if cache is not None:
        data["llm"]["cache"] = cache
    return parse_config(data, source=source)


def _pin_moderator(data: dict[str, Any], resolved: str | None) -> None:
    """Set ``data``'s LLM moderator's provider to ``resolved`` where it is still ``auto``
    (``[moderation].provider``, or ``[llm].provider`` when that names none). ``resolved``: the
    run's recorded ``moderation_model``, else what its agents' or coach's ``auto`` resolved to
    (a manifest written before ``moderation_model`` existed; one environment resolves every
    ``auto`` of a run alike); ``None`` leaves it as it is."""
    from friendsim.moderation.kinds import uses_llm

    mod = data["moderation"]
    if resolved is None or not mod["enabled"] or not uses_llm(mod["kind"]):
        return
    if (mod.get("provider") or data["llm"]["provider"]) == "auto":
        mod["provider"] = resolved


def settings(cfg: ExperimentConfig) -> dict[str, Any]:
    """``cfg``'s settings by name, the unit in which re-executions compare and change configs:
    ``"section.key"`` for each key of a table (``[coach]``), ``"section"`` for an array of
    tables (``[[interventions]]``, ``[[surveys]]``), which is one setting: its entries have no
    names to pair them by."""
    out: dict[str, Any] = {}
    for section, body in cfg.model_dump(mode="json").items():
        if isinstance(body, dict):
            out.update({f"{section}.{key}": value for key, value in body.items()})
        else:
            out[section] = body
    return out


def setting_label(name: str) -> str:
    """A :func:`settings` name as the TOML file spells it: ``[coach].enabled``, ``[[surveys]]``."""
    section, dot, key = name.partition(".")
    return f"[{section}].{key}" if dot else f"[[{section}]]"


def with_changes(cfg: ExperimentConfig, changes: Mapping[str, Any]) -> ExperimentConfig:
    """``cfg`` with changes of :func:`settings` names applied (``{"coach.enabled": True}``,
    ``{"surveys": [...]}``), re-validated."""
    data: dict[str, Any] = cfg.model_dump(mode="json")
    for name, value in changes.items():
        section, _, key = name.partition(".")
        if section not in data or isinstance(data[section], dict) != bool(key):
            raise RunInputError(f"unknown config key {name!r}")
        if key:
            data[section][key] = value
        else:
            data[section] = value
    return parse_config(data, source="<changes>")
