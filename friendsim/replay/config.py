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
  pinned when the fork was made (:mod:`.phases`), and a fork's own ``auto`` is pinned to the
  parent's models (:func:`with_parent_models`).
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


def with_parent_models(cfg: ExperimentConfig, parent: ExperimentConfig) -> ExperimentConfig:
    """``cfg``, a fork's config, with each ``auto`` provider replaced by the model ``parent``
    has for that part. ``parent``: the parent's config in force after the fork window, its own
    ``auto`` pinned to what it resolved (:func:`config_from_manifest`).

    A fork continues its parent's population with its models, so ``auto`` there means what it
    meant in the parent, not what it would mean where the fork runs: the parent's own config
    then compares equal (the agents' models may not change) and the fork runs under the
    parent's models. The parts: ``[llm].provider`` and each override's (paired by position),
    the agents'; ``[coach].provider``, the coach's; an LLM moderator's ``[moderation].provider``
    (also when it names none and ``[llm].provider`` is still ``auto``, as
    :func:`config_from_manifest` pins it), the moderator's. A coach or moderator of the parent
    that named no provider ran with ``[llm].provider``. Where the parent has no model for the
    part (no such part, or an ``auto`` nothing resolved), ``auto`` stays, to resolve as in any
    run; a named spec is taken as written."""
    from friendsim.coach.kinds import uses_llm as coach_uses_llm
    from friendsim.moderation.kinds import uses_llm as moderator_uses_llm

    data: dict[str, Any] = cfg.model_dump(mode="json")
    agents = parent.llm.provider
    llm = data["llm"]
    if llm["provider"] == "auto":
        llm["provider"] = agents
    for mine, theirs in zip(llm["overrides"], parent.llm.overrides, strict=False):
        if mine["provider"] == "auto":
            mine["provider"] = theirs.provider
    was = parent.coach
    coach = _model_of(was.provider, was.enabled and coach_uses_llm(was.kind), agents)
    if coach is not None and data["coach"].get("provider") == "auto":
        data["coach"]["provider"] = coach
    was_mod, mod = parent.moderation, data["moderation"]
    moderator = _model_of(
        was_mod.provider, was_mod.enabled and moderator_uses_llm(was_mod.kind), agents
    )
    own = mod.get("provider")
    follows_auto = (
        own is None
        and llm["provider"] == "auto"
        and mod["enabled"]
        and moderator_uses_llm(mod["kind"])
    )
    if moderator is not None and (own == "auto" or follows_auto):
        mod["provider"] = moderator
    return parse_config(data, source="<fork config>")


def _model_of(own: str | None, ran: bool, agents: str) -> str | None:
    """The model of a parent's coach or moderator: its ``own`` provider, else (when it ``ran``,
    on ``[llm].provider``) the ``agents``'; ``None`` where that names none (``auto``)."""
    spec = own if own is not None or not ran else agents
    return None if spec is None or spec == "auto" else spec


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
