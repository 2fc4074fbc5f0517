"""Experiment configuration: a TOML file validated by pydantic models (unknown keys are errors).

A config names everything a run needs: the experiment (seed, theme, mode, rounds or duration),
the agents (count, persona source, policy), the LLM providers (a default spec plus per-agent or
per-dominant-policy overrides, limits, cache mode, prices), the coach, reward parameters, the
feed ranker and tie-strength parameters. :func:`load_config` turns every problem into one
:class:`ConfigError` that names the file and the key path (``[agents].count``), so a user sees
what to fix without reading a traceback. A non-finite number (``nan``, ``inf``) is an error
wherever it is written.

Relative persona paths are resolved against the config file's folder. Provider specs are checked
for shape here (``provider:model``, known provider); nothing is loaded or connected. The
population rules (:mod:`friendsim.runtime.population`) and the research-instrument sections
(:mod:`friendsim.runtime.instruments_config`) are defined apart and re-exported here.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from itertools import groupby
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from friendsim.agents.policies import POLICIES
from friendsim.agents.sources import PERSONA_SOURCES
from friendsim.analysis.sentiment import SENTIMENT
from friendsim.coach.kinds import COACHES
from friendsim.llm.endpoints import Endpoint, EndpointsFileError, load_endpoints
from friendsim.llm.errors import ProviderConfigError
from friendsim.llm.registry import parse_spec
from friendsim.platform.feeds import RANKERS
from friendsim.registry import Registry, RegistryError
from friendsim.runtime.instruments_config import InterventionSpec, ModerationSection, SurveySpec
from friendsim.runtime.population import (
    MAX_AGENTS,
    PEAK_BYTES_PER_AGENT,
    PEAK_BYTES_PER_PERSONA,
    MachineMemory,
    check_population,
    gib,
    machine_memory,
    memory_phrase,
)

COMPONENTS = ("SOC", "INF", "PRE", "COORD", "EMO")

SYNTHETIC = "synthetic"


class ConfigError(ValueError):
    """A config file is wrong. ``path`` is the file, ``key`` the dotted key path (may be empty)."""

    def __init__(self, path: str | Path, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + problem)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _registered(registry: Registry[Any], name: str, params: Mapping[str, Any]) -> None:
    """``name`` is in ``registry`` and ``params`` fit its params model (else ``ValueError``)."""
    try:
        registry.check_params(name, params)
    except RegistryError as exc:
        raise ValueError(str(exc)) from None


def check_provider_spec(spec: str) -> str:
    """Validate a provider spec's shape without creating anything; returns it stripped.

    ``auto`` picks a provider from the environment (:func:`resolve_auto_provider`); anything
    else must parse with :func:`friendsim.llm.registry.parse_spec` (``openai:gpt-4o-mini``,
    ``anthropic:claude-haiku-4-5``, ``openai:http://host:8000/v1#model``, ``local:smollm2``,
    ``scripted``). Raises ``ValueError`` with the registry's explanation.
    """
    spec = spec.strip()
    if spec == "auto":
        return spec
    try:
        parse_spec(spec)
    except ProviderConfigError as exc:
        raise ValueError(str(exc)) from None
    return spec


def resolve_auto_provider(env: Mapping[str, str] | None = None) -> str:
    """What ``auto`` means: a hosted model when its API key is set, else the local model."""
    return explain_auto_provider(env)[0]


def explain_auto_provider(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``auto``'s choice and why, e.g. ``("local:smollm2", "neither OPENAI_API_KEY nor ...")``."""
    env = os.environ if env is None else env
    if env.get("OPENAI_API_KEY"):
        return "openai:gpt-4o-mini", "OPENAI_API_KEY is set"
    if env.get("ANTHROPIC_API_KEY"):
        return "anthropic:claude-haiku-4-5", "ANTHROPIC_API_KEY is set (OPENAI_API_KEY is not)"
    return (
        "local:smollm2",
        "neither OPENAI_API_KEY nor ANTHROPIC_API_KEY is set: the small local model",
    )


MAX_WINDOWS = 100_000
"""The most windows a run has: ``rounds``, or in continuous mode ``duration / window_length``."""
MAX_SLICES = 1_000_000
"""The most slices in a continuous window (``window_length / tick``): each is a draw for every
agent, so a tick far below a second makes a window that never ends."""


class ExperimentSection(_Section):
    """``[experiment]``: identity, seed and time structure of the run."""

    name: str = Field(default="experiment", min_length=1, max_length=120)
    seed: int = 0
    theme: str = Field(default="climate change", min_length=1, max_length=200)
    mode: Literal["rounds", "continuous"] = "rounds"
    rounds: int = Field(default=15, ge=1, le=MAX_WINDOWS)
    n_actions: int = Field(default=3, ge=1, le=50)
    window_length: float = Field(default=3600.0, gt=0)
    duration: float | None = Field(default=None, gt=0)
    tick: float = Field(default=60.0, gt=0)
    wake_rate: float = Field(default=2.0, gt=0)
    activity_sigma: float = Field(default=0.0, ge=0, le=5)
    vote_limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check_times(self) -> ExperimentSection:
        if self.tick > self.window_length:
            raise ValueError(
                f"tick ({self.tick}) must not exceed window_length ({self.window_length})"
            )
        if self.duration is not None and not math.isfinite(self.duration):
            raise ValueError("duration must be finite")
        if self.mode == "continuous":
            if self.window_length / self.tick > MAX_SLICES:
                raise ValueError(
                    f"window_length / tick = {self.window_length / self.tick:.6g} slices per "
                    f"window; at most {MAX_SLICES:,} (a larger tick, or shorter windows)"
                )
            if self.total_duration / self.window_length > MAX_WINDOWS:
                raise ValueError(
                    f"duration / window_length = {self.total_duration / self.window_length:.6g}"
                    f" windows; at most {MAX_WINDOWS:,} (as rounds)"
                )
        return self

    @property
    def total_duration(self) -> float:
        """Continuous mode length: ``duration`` or ``rounds`` windows when unset."""
        return self.duration if self.duration is not None else self.rounds * self.window_length

    @property
    def n_windows(self) -> int:
        """How many windows the run has: ``rounds``, or in continuous mode ``total_duration``
        cut into ``window_length`` windows, the last one possibly short (as the continuous
        scheduler cuts them)."""
        if self.mode == "rounds":
            return self.rounds
        return max(1, math.ceil(self.total_duration / self.window_length - 1e-9))

    def applied_at(self, *, window: int | None, at: float | None) -> tuple[int, int, float]:
        """When the runtime applies an intervention scheduled at ``window`` or ``at``, as a key
        that sorts in the order of application (ties: config order): ``(window, 0, start)`` at
        a window's start (a ``window`` one, or in rounds mode an ``at`` inside that round), and
        in continuous mode ``(window, 1, t)`` for an ``at`` one, applied before the first slice
        starting at ``t >= at`` (the scheduler's own slice times, the same float arithmetic).
        An ``at`` after :meth:`last_at` gives a window after the last."""
        length = self.window_length
        if at is None:
            w = window if window is not None else 1
            return (w, 0, (w - 1) * length)
        w = max(1, math.floor(at / length) - 1)
        if self.mode == "rounds":
            while not at < (w - 1) * length + length:
                w += 1
            return (w, 0, (w - 1) * length)
        while w <= self.n_windows:
            start = (w - 1) * length
            end = min(w * length, self.total_duration)
            k = max(0, math.floor((at - start) / self.tick) - 1)
            while start + k * self.tick < at:
                k += 1
            if (t := start + k * self.tick) < end - 1e-9:
                return (w, 1, t)
            w += 1
        return (w, 1, at)

    def last_at(self) -> float:
        """The latest virtual time an intervention ``at`` that time is still applied at.

        Rounds mode: any time before the end of the last round (``at`` applies at the start of
        the round holding it); returned as the largest float below that end. Continuous mode:
        the start of the last slice (``at`` applies before the first slice at or after it).
        """
        if self.mode == "rounds":
            return math.nextafter(self.rounds * self.window_length, 0.0)
        start = (self.n_windows - 1) * self.window_length
        end = min(self.n_windows * self.window_length, self.total_duration)
        k = max(0, math.ceil((end - 1e-9 - start) / self.tick) - 1)
        while start + (k + 1) * self.tick < end - 1e-9:
            k += 1
        while k > 0 and not start + k * self.tick < end - 1e-9:
            k -= 1
        return start + k * self.tick


class AgentsSection(_Section):
    """``[agents]``: how many, where personas come from, and which policy decides.

    ``personas`` is a registered persona source (``synthetic``, or one another package adds) or
    a persona file; ``policy`` a registered policy (``llm``, ``baseline``, or another package's).
    ``persona_params`` / ``policy_params`` go to the source's / policy's factory.
    """

    count: Annotated[int, AfterValidator(check_population)] = 6
    """How many agents the run starts with (:func:`check_population`: 1 to :data:`MAX_AGENTS`,
    ``add_agents`` interventions included)."""
    personas: str = SYNTHETIC
    persona_params: dict[str, Any] = Field(default_factory=dict)
    policy: str = "llm"
    policy_params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_registered(self) -> AgentsSection:
        _registered(POLICIES, self.policy, self.policy_params)
        if self.personas in PERSONA_SOURCES:
            _registered(PERSONA_SOURCES, self.personas, self.persona_params)
        elif self.persona_params:
            raise ValueError("persona_params are for a registered persona source, not a file")
        return self


class LLMOverride(_Section):
    """``[[llm.overrides]]``: a provider for listed agents or for a dominant reward policy."""

    provider: str
    agents: tuple[str, ...] = ()
    dominant: Literal["SOC", "INF", "PRE", "COORD", "EMO"] | None = None

    @field_validator("provider")
    @classmethod
    def _spec(cls, v: str) -> str:
        return check_provider_spec(v)

    @model_validator(mode="after")
    def _check_selector(self) -> LLMOverride:
        if not self.agents and self.dominant is None:
            raise ValueError("an override needs 'agents' (a list of ids) or 'dominant' (a policy)")
        if self.agents and self.dominant is not None:
            raise ValueError("an override takes either 'agents' or 'dominant', not both")
        return self


class LLMSection(_Section):
    """``[llm]``: default provider, limits, cache mode, prices and per-agent overrides.

    ``budget_usd`` stops the run (interrupted, resumable) before its spending could exceed it;
    ``batch`` sends each rounds-mode phase's requests through the providers' batch APIs, polled
    first after ``batch_poll_s`` seconds, then with doubling intervals (at most 60x that).
    """

    provider: str = "auto"
    concurrency: int = Field(default=8, ge=1, le=10_000)
    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    retries: int = Field(default=3, ge=0, le=20)
    cache: Literal["off", "record", "replay", "read_through"] = "read_through"
    max_tokens: int = Field(default=200, ge=8, le=32_768)
    plan_max_tokens: int = Field(default=800, ge=16, le=32_768)
    reprompts: int = Field(default=3, ge=0, le=10)
    temperature: float | None = Field(default=None, ge=0, le=2)
    threads: int | None = Field(default=None, ge=1, le=512)
    """llama.cpp threads of the ``local:`` models (default: the cores this process may use)."""
    prompt_profile: Literal["auto", "full", "compact"] = "auto"
    """``compact`` prompts for small-context models; ``auto``: compact for ``local:`` models."""
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding the key of the ``openai:``/``anthropic:`` providers
    (default: ``OPENAI_API_KEY`` for api.openai.com, ``ANTHROPIC_API_KEY``, none elsewhere)."""
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    """Seconds one HTTP request to a hosted provider may take in all (connecting, sending and
    reading the whole answer, however steadily it arrives) before it fails as a timeout and is
    retried."""
    max_failure_share: float = Field(default=0.05, ge=0, le=1)
    """The failure budget: a window in which more than this share of the model-backed
    decisions failed stops the run as ``failed``."""
    breaker_failures: int = Field(default=3, ge=1, le=1000)
    """Consecutive calls failing after their retries that open a provider's circuit breaker
    (the run stops as ``interrupted``, resumable)."""
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    budget_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    batch: bool = False
    batch_poll_s: float = Field(default=5.0, gt=0, le=3600)
    overrides: tuple[LLMOverride, ...] = ()
    endpoints_file: str | None = Field(default=None, min_length=1)
    """A fleet of OpenAI-compatible servers (:mod:`friendsim.llm.endpoints`) serving every
    ``openai:<model>`` spec that names no URL; relative to the config file's folder."""

    @field_validator("provider")
    @classmethod
    def _spec(cls, v: str) -> str:
        return check_provider_spec(v)

    def provider_options(self, spec: str) -> dict[str, Any]:
        """Options for the provider factory of ``spec``: ``threads`` reaches ``local:`` models
        as llama.cpp's ``n_threads``; ``api_key_env`` and ``timeout_s`` reach the hosted
        (HTTP) providers ``openai:`` and ``anthropic:``."""
        kind = spec.strip().lower().partition(":")[0]
        if kind == "local" and self.threads is not None:
            return {"n_threads": self.threads}
        if kind in ("openai", "anthropic"):
            options: dict[str, Any] = {"timeout_s": self.timeout_s}
            if self.api_key_env is not None:
                options["api_key_env"] = self.api_key_env
            return options
        return {}

    @field_validator("prices")
    @classmethod
    def _check_prices(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        allowed = {"input", "output", "cached_input", "cache_write"}
        for model, table in v.items():
            unknown = set(table) - allowed
            if unknown:
                raise ValueError(
                    f"prices[{model!r}] has unknown keys {sorted(unknown)}; allowed {sorted(allowed)} "
                    "(USD per million tokens)"
                )
            for k, x in table.items():
                if not (math.isfinite(x) and x >= 0):
                    raise ValueError(f"prices[{model!r}].{k}={x!r} must be >= 0")
        return v


class CoachSection(_Section):
    """``[coach]``: coaching on/off, rule-based or LLM coach (and its provider)."""

    enabled: bool = True
    kind: str = "rule"
    params: dict[str, Any] = Field(default_factory=dict)
    provider: str | None = None

    @field_validator("provider")
    @classmethod
    def _spec(cls, v: str | None) -> str | None:
        return None if v is None else check_provider_spec(v)

    @model_validator(mode="after")
    def _check_registered(self) -> CoachSection:
        _registered(COACHES, self.kind, self.params)
        return self


class RewardsSection(_Section):
    """``[rewards]``: the β of each reward and the sentiment model (contract RewardParams)."""

    beta_soc: float = Field(default=0.5, ge=0, le=1)
    beta_inf: float = Field(default=0.5, ge=0, le=1)
    beta_pre: float = Field(default=0.5, ge=0, le=1)
    beta_coord: float = Field(default=0.5, ge=0, le=1)
    beta_emo: float = -1.0
    eps: float = Field(default=1e-9, gt=0, lt=1)
    sentiment: str = "vader"

    @field_validator("sentiment")
    @classmethod
    def _known_sentiment(cls, v: str) -> str:
        _registered(SENTIMENT, v, {})
        return v

    @field_validator("beta_emo")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("beta_emo must be finite")
        return v


class FeedSection(_Section):
    """``[feed]``: the ranker agents read through and how many items it serves."""

    ranker: str = "full"
    params: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(default=50, ge=1, le=100_000)

    @model_validator(mode="after")
    def _check_registered(self) -> FeedSection:
        _registered(RANKERS, self.ranker, self.params)
        return self


def _theta(theta: float) -> float:
    """``theta``, a tie threshold the analysis accepts (:func:`~friendsim.analysis.ties.check_theta`)."""
    from friendsim.analysis.ties import TieParamsError, check_theta

    try:
        check_theta(theta)
    except TieParamsError as exc:
        raise ValueError(str(exc)) from None
    return theta


class TiesSection(_Section):
    """``[ties]``: tie-strength parameters, passed through to the analysis and the manifest.

    Each value is checked here by the analysis's own rules
    (:class:`~friendsim.analysis.ties.TieParams`, :func:`~friendsim.analysis.ties.check_theta`),
    so a run never records parameters its analysis would refuse; ``thresholds`` needs at least
    one θ, each in (0, 1].
    """

    xi: float = Field(default=0.05, ge=0, le=1)
    delta_max: float = Field(default=0.2, gt=0, le=1)
    half_life: float = Field(default=3.0, gt=0)
    beta_rec: float = Field(default=0.5, ge=0, le=1)
    eps: float = Field(default=1e-9, gt=0)
    evidence: Literal["signals", "text"] = "signals"
    thresholds: tuple[Annotated[float, AfterValidator(_theta)], ...] = Field(
        default=(0.01, 0.05, 0.1), min_length=1
    )

    @field_validator("xi", "delta_max", "half_life", "beta_rec", "eps")
    @classmethod
    def _analysis_accepts(cls, v: float, info: ValidationInfo) -> float:
        from friendsim.analysis.ties import TieParams, TieParamsError

        try:
            TieParams.from_dict({str(info.field_name): v})
        except TieParamsError as exc:
            raise ValueError(str(exc)) from None
        return v


class ExperimentConfig(_Section):
    """A whole experiment file. ``source`` is the file it came from (set by :func:`load_config`)."""

    experiment: ExperimentSection = Field(default_factory=ExperimentSection)
    agents: AgentsSection = Field(default_factory=AgentsSection)
    llm: LLMSection = Field(default_factory=LLMSection)
    coach: CoachSection = Field(default_factory=CoachSection)
    rewards: RewardsSection = Field(default_factory=RewardsSection)
    feed: FeedSection = Field(default_factory=FeedSection)
    ties: TiesSection = Field(default_factory=TiesSection)
    interventions: tuple[InterventionSpec, ...] = ()
    moderation: ModerationSection = Field(default_factory=ModerationSection)
    surveys: tuple[SurveySpec, ...] = ()

    def persona_path(self, base: Path) -> Path | None:
        """The persona file (resolved against ``base``), or ``None`` for synthetic personas."""
        if self.agents.personas in PERSONA_SOURCES:
            return None
        p = Path(self.agents.personas).expanduser()
        return p if p.is_absolute() else base / p

    def endpoints_path(self, base: Path) -> Path | None:
        """The endpoints file (resolved against ``base``), or ``None`` when there is none."""
        if self.llm.endpoints_file is None:
            return None
        p = Path(self.llm.endpoints_file).expanduser()
        return p if p.is_absolute() else base / p

    def provider_for(self, agent_id: str, dominant: str | None) -> str:
        """The provider spec an agent uses: agent override, then dominant override, then default."""
        for o in self.llm.overrides:
            if agent_id in o.agents:
                return o.provider
        for o in self.llm.overrides:
            if dominant is not None and o.dominant == dominant:
                return o.provider
        return self.llm.provider


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts = [p for p in loc if not (isinstance(p, str) and p.startswith(("function-", "function")))]
    if not parts:
        return ""
    head, *rest = parts
    out = f"[{head}]"
    for p in rest:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _problem(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    if (
        kind not in ("missing", "value_error")
        and "input" in err
        and not isinstance(err["input"], dict)
    ):
        msg += f" (got {err['input']!r})"
    return msg


def non_finite_numbers(value: Any, loc: tuple[int | str, ...] = ()) -> list[tuple[str, float]]:
    """Every non-finite float (``nan``, ``inf``, ``-inf``) anywhere in ``value`` (mappings and
    lists walked), as ``(key path, number)`` in document order: ``[interventions][0].lambdas.SOC``.

    No setting of a config means anything as a non-finite number, so :func:`parse_config` refuses
    them all by this one rule before any section looks at its values."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(_key_path(loc), value)]
    if isinstance(value, Mapping):
        return [f for k, v in value.items() for f in non_finite_numbers(v, (*loc, str(k)))]
    if isinstance(value, list | tuple):
        return [f for i, v in enumerate(value) for f in non_finite_numbers(v, (*loc, i))]
    return []


def _as_json(data: Mapping[str, Any]) -> str:
    """``data`` as JSON text, validated strictly (:func:`parse_config`): TOML's own types are
    JSON's, so a value of the wrong type (``rounds = true``, ``seed = "7"``) is an error at its
    key instead of being converted; paths become strings, anything else keeps its text."""

    def other(value: Any) -> str:
        return os.fspath(value) if isinstance(value, os.PathLike) else str(value)

    return json.dumps(dict(data), default=other)


def parse_config(data: Mapping[str, Any], *, source: str | Path = "<config>") -> ExperimentConfig:
    """Validate an already-parsed TOML mapping, strictly: a value of the wrong TOML type is an
    error, never converted (:func:`_as_json`). Raises :class:`ConfigError` (first problem,
    with every further problem listed in the message). A non-finite number anywhere is an error
    at its key path (:func:`non_finite_numbers`)."""
    bad = non_finite_numbers(data)
    if bad:
        key, value = bad[0]
        raise ConfigError(source, key, f"must be a finite number, got {value!r}")
    try:
        cfg = ExperimentConfig.model_validate_json(_as_json(data), strict=True)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        key = _key_path(tuple(first["loc"]))
        problem = _problem(first)
        if len(errors) > 1:
            more = "; ".join(f"{_key_path(tuple(e['loc']))}: {_problem(e)}" for e in errors[1:5])
            problem += f" (also: {more})"
        raise ConfigError(source, key, problem) from None
    check_schedule(cfg, source=source)
    check_run_population(cfg, source=source)
    return cfg


def run_population(cfg: ExperimentConfig) -> int:
    """The most agents ``cfg``'s run holds: ``[agents].count`` plus every ``add_agents``
    intervention's ``count``."""
    from friendsim.runtime.interventions import added_agents

    added = (added_agents(spec.kind, spec.params) for spec in cfg.interventions)
    return cfg.agents.count + sum(n for n in added if n)


def run_peak_memory(cfg: ExperimentConfig) -> int:
    """The estimated peak memory of ``cfg``'s run in bytes: :func:`run_population` times
    :data:`PEAK_BYTES_PER_AGENT` of its ``[experiment].mode``, the estimate
    :func:`check_run_population` holds a run to."""
    return run_population(cfg) * PEAK_BYTES_PER_AGENT[cfg.experiment.mode]


class TooManyAtOnceError(ValueError):
    """Runs that each fit the memory do not fit it together; ``fit``: how many of the largest
    do (at least 1)."""

    def __init__(self, problem: str, fit: int) -> None:
        super().__init__(problem)
        self.fit = fit


def check_runs_at_once(
    runs: Sequence[tuple[int, int]], *, at_once: int, memory: int | None
) -> None:
    """Refuse (:class:`TooManyAtOnceError`) when the ``at_once`` largest of ``runs`` (each
    ``(agents, estimated peak bytes)``, :func:`run_peak_memory`) exceed ``memory`` together:
    runs executing in parallel on one machine hold their memory at the same time, so runs that
    each pass :func:`check_run_population` can still, together, only end killed. The error
    names the runs' sizes and how many of the largest fit at once. Nothing without ``memory``."""
    largest = sorted(runs, key=lambda run: run[1], reverse=True)[:at_once]
    need = sum(peak for _, peak in largest)
    if memory is None or need <= memory:
        return
    fit, held = 0, 0
    while fit < len(largest) and held + largest[fit][1] <= memory:
        held, fit = held + largest[fit][1], fit + 1
    groups = [(agents, len(list(same))) for agents, same in groupby(a for a, _ in largest)]
    sizes = " + ".join(f"{k} x {agents:,}" if k > 1 else f"{agents:,}" for agents, k in groups)
    raise TooManyAtOnceError(
        f"its {len(largest)} largest runs ({sizes} agents) need about {gib(need)} of memory at "
        f"their peak together, more than {memory_phrase(memory)}",
        max(fit, 1),
    )


def check_run_population(
    cfg: ExperimentConfig, *, source: str | Path = "<config>", memory: int | None = None
) -> None:
    """The run's population, ``[agents].count`` and every ``add_agents`` intervention's
    ``count`` added up in the order written, passes :func:`check_population` at each step, else
    :class:`ConfigError` at the key that takes it over: ``[agents].count`` or
    ``[interventions][i].count``. With ``memory`` (the machine's, :func:`machine_memory`) the
    peak memory of the whole population, :data:`PEAK_BYTES_PER_AGENT` of ``[experiment].mode``
    per agent, must fit in it too: checked where a run is about to start on this machine, never
    when a config is parsed (a run recorded elsewhere stays readable)."""
    from friendsim.runtime.interventions import added_agents

    steps = [("[agents].count", cfg.agents.count)]
    for i, spec in enumerate(cfg.interventions):
        if added := added_agents(spec.kind, spec.params):
            steps.append((f"[interventions][{i}].count", added))
    mode = cfg.experiment.mode
    bytes_each = PEAK_BYTES_PER_AGENT[mode]
    total = 0
    for key, n in steps:
        total += n
        try:
            check_population(
                total,
                bytes_each=bytes_each,
                memory=memory,
                basis=f"measured, {mode} mode",
                subject=None
                if total == n
                else f"{total:,} agents ([agents].count and the add_agents up to this one)",
            )
        except ValueError as exc:
            raise ConfigError(source, key, str(exc)) from None


def check_schedule(cfg: ExperimentConfig, *, source: str | Path = "<config>") -> None:
    """Every intervention and survey falls inside the run, else :class:`ConfigError` at its key:
    an intervention's ``window`` at most the run's last window and its ``at`` at most
    :meth:`ExperimentSection.last_at` (later ones would never apply), a survey's ``windows``
    at most the last window (they would never be asked), and no two surveys of one name."""
    ex = cfg.experiment
    last = ex.n_windows
    for i, spec in enumerate(cfg.interventions):
        if spec.window is not None and spec.window > last:
            raise ConfigError(
                source,
                f"[interventions][{i}].window",
                f"window {spec.window} is after the run's last window ({last}); "
                "it would never apply",
            )
        if spec.at is not None and spec.at > ex.last_at():
            raise ConfigError(
                source,
                f"[interventions][{i}].at",
                f"at={spec.at!r} is after the last time the run can apply it "
                f"({_last_moment(ex)}); it would never apply",
            )
    named: dict[str, int] = {}
    for i, survey in enumerate(cfg.surveys):
        j = named.setdefault(survey.name, i)
        if j != i:
            raise ConfigError(
                source,
                f"[surveys][{i}].name",
                f"{survey.name!r} names [surveys][{j}] too; give each survey its own name (its "
                "answers, its sample and its questions' seeds are told apart by it)",
            )
        late = [w for w in survey.windows if w > last]
        if late:
            raise ConfigError(
                source,
                f"[surveys][{i}].windows",
                f"window {late[0]} is after the run's last window ({last}); "
                "it would never be asked",
            )


def _last_moment(ex: ExperimentSection) -> str:
    if ex.mode == "rounds":
        return f"before t={ex.rounds * ex.window_length!r}, the end of round {ex.rounds}"
    return f"t={ex.last_at()!r}, the start of the last slice"


def load_config(path: str | Path, *, check_files: bool = True) -> ExperimentConfig:
    """Read and validate a TOML experiment file; with ``check_files`` the persona file must exist."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(p, "", "config file not found") from None
    except OSError as exc:
        raise ConfigError(p, "", f"cannot read config file: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(p, "", f"not UTF-8 text: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(p, "", f"not valid TOML: {exc}") from None
    if not data:
        raise ConfigError(p, "", "the config file is empty; see examples/*.toml for an experiment")
    cfg = parse_config(data, source=p)
    if check_files:
        check_config_files(cfg, base=p.parent, source=p)
    return cfg


def check_config_files(cfg: ExperimentConfig, *, base: Path, source: str | Path) -> None:
    """The files ``cfg`` names (relative to ``base``, the config file's folder) are there: the
    persona file at ``[agents].personas``, the endpoints file at ``[llm].endpoints_file``
    (read and checked); else :class:`ConfigError` at that key."""
    persona_file = cfg.persona_path(base)
    if persona_file is not None and not persona_file.is_file():
        raise ConfigError(source, "[agents].personas", f"persona file not found: {persona_file}")
    load_fleet(cfg, base=base, source=source)


def uses_fleet(spec: str) -> bool:
    """Whether ``spec`` is served by ``[llm] endpoints_file``: an ``openai:`` spec with no URL."""
    if not spec.startswith("openai:"):
        return False
    return not parse_spec(spec).base_urls


def load_fleet(cfg: ExperimentConfig, *, base: Path, source: str | Path) -> tuple[Endpoint, ...]:
    """The endpoints of ``[llm] endpoints_file`` (empty when unset); a bad or missing file is a
    :class:`ConfigError` at ``[llm].endpoints_file``."""
    path = cfg.endpoints_path(base)
    if path is None:
        return ()
    try:
        return load_endpoints(path)
    except EndpointsFileError as exc:
        raise ConfigError(source, "[llm].endpoints_file", str(exc)) from None


__all__ = [
    "COMPONENTS",
    "MAX_AGENTS",
    "MAX_SLICES",
    "MAX_WINDOWS",
    "PEAK_BYTES_PER_AGENT",
    "PEAK_BYTES_PER_PERSONA",
    "SYNTHETIC",
    "AgentsSection",
    "CoachSection",
    "ConfigError",
    "ExperimentConfig",
    "ExperimentSection",
    "FeedSection",
    "InterventionSpec",
    "LLMOverride",
    "LLMSection",
    "MachineMemory",
    "ModerationSection",
    "RewardsSection",
    "SurveySpec",
    "TiesSection",
    "TooManyAtOnceError",
    "check_config_files",
    "check_population",
    "check_provider_spec",
    "check_run_population",
    "check_runs_at_once",
    "check_schedule",
    "explain_auto_provider",
    "load_config",
    "load_fleet",
    "machine_memory",
    "memory_phrase",
    "non_finite_numbers",
    "parse_config",
    "resolve_auto_provider",
    "run_peak_memory",
    "run_population",
    "uses_fleet",
]
