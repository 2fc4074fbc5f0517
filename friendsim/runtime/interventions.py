"""Scheduled interventions: one small protocol, the built-in kinds, and their registry.

An intervention is applied by the runtime at exactly its window (see
:mod:`friendsim.runtime.instruments`): first an ``InterventionApplied`` event records its kind,
name and parameters, then the intervention acts through :class:`RunOps`, and each effect is an
event of its own — ``PostCreated`` + ``ItemInjected`` (inject), ``BroadcastSent``,
``FeedChanged``, ``PersonaChanged`` (reward mix or persona fields), ``AgentSuspended``
(suspend, remove), ``AgentRegistered`` (add agents). Everything is in the log, so a re-run
reproduces it byte for byte.

Built-in kinds (``[[interventions]] kind = ...``): ``inject``, ``broadcast``, ``ranker``,
``reward_mix``, ``persona``, ``suspend``, ``remove``, ``add_agents``. Other packages add kinds
through the ``friendsim.interventions`` entry-point group: a factory ``factory(**params)``
returning an object with ``async apply(ops, window)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from friendsim.agents.generator import check_dominant_weight, dominant_lambdas
from friendsim.agents.persona import COMPONENTS, TRAITS, Persona
from friendsim.platform.feeds import RANKERS
from friendsim.registry import Registry, RegistryError
from friendsim.runtime.items import Item, as_items
from friendsim.runtime.population import check_population


class RunOps(Protocol):
    """What an intervention may do to a running simulation (each call records its events)."""

    async def inject(self, items: Sequence[Item], *, by: str, agents: Sequence[str]) -> None: ...

    async def broadcast(self, text: str, *, sender: str) -> None: ...

    async def set_feed(self, ranker: str, params: Mapping[str, Any], limit: int | None) -> None: ...

    async def amend(self, agents: Sequence[str], fields: Mapping[str, Any]) -> None: ...

    async def suspend(self, agents: Sequence[str], windows: int | None, reason: str) -> None: ...

    async def add_agents(self, count: int) -> None: ...


class Intervention(Protocol):
    """One scheduled intervention; ``apply`` is awaited once, at its window.

    An effect the platform refuses (text UTF-8 cannot encode, such as a lone surrogate in a
    broadcast, is ``invalid_text``) is recorded as ``ActionFailed(stage="intervention")`` and
    the run goes on."""

    async def apply(self, ops: RunOps, window: int) -> None: ...


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _distinct(agents: tuple[str, ...]) -> tuple[str, ...]:
    repeated = sorted({a for a in agents if agents.count(a) > 1})
    if repeated:
        raise ValueError(f"agents named more than once: {repeated}")
    return agents


DistinctAgents = Annotated[tuple[str, ...], AfterValidator(_distinct)]
"""The agents a change applies to, each once (``inject``'s ``agents`` take turns, and may
repeat)."""


class InjectParams(_Params):
    """``items``: a JSONL file (relative to the config) or inline items; posted by the outside
    account ``by`` or, when ``agents`` is given, by those agents in turn."""

    items: str | tuple[Item, ...]
    by: str = Field(default="newsdesk", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    agents: tuple[str, ...] = ()

    @field_validator("items")
    @classmethod
    def _some_distinct(cls, v: str | tuple[Item, ...]) -> str | tuple[Item, ...]:
        if isinstance(v, str):
            return v  # a file: load_items holds it to the same
        if not v:
            raise ValueError("holds no items")
        ids = [i.id for i in v]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"item ids repeat: {repeated} (each injected item needs its own id)")
        return v


class BroadcastParams(_Params):
    text: str = Field(min_length=1, max_length=2000)
    sender: str = Field(default="platform", min_length=1, max_length=64)


class RankerParams(_Params):
    ranker: str
    params: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = Field(default=None, ge=1, le=100_000)

    @model_validator(mode="after")
    def _registered(self) -> RankerParams:
        try:
            RANKERS.check_params(self.ranker, self.params)
        except RegistryError as exc:
            raise ValueError(str(exc)) from None
        return self


class RewardMixParams(_Params):
    """A new reward mix for ``agents`` (empty: everyone): ``dominant`` (+ ``weight``) or an
    explicit ``lambdas`` mapping."""

    agents: DistinctAgents = ()
    dominant: Literal["SOC", "INF", "PRE", "COORD", "EMO"] | None = None
    weight: float = Field(default=0.6, gt=0, le=1)
    lambdas: dict[str, float] | None = None

    @model_validator(mode="after")
    def _one(self) -> RewardMixParams:
        if (self.dominant is None) == (self.lambdas is None):
            raise ValueError("a reward_mix takes either 'dominant' or 'lambdas'")
        if self.dominant is not None:
            check_dominant_weight(self.weight)
        if self.lambdas is not None:
            unknown = set(self.lambdas) - set(COMPONENTS)
            if unknown or any(v < 0 for v in self.lambdas.values()):
                raise ValueError(f"lambdas need components {list(COMPONENTS)} with weights >= 0")
            if abs(sum(self.lambdas.values()) - 1.0) > 1e-3:
                raise ValueError("lambdas must sum to 1")
        return self

    def fields(self) -> dict[str, Any]:
        if self.dominant is not None:
            return {
                "lambdas": dominant_lambdas(self.dominant, self.weight),
                "dominant": self.dominant,
            }
        lam = {c: float((self.lambdas or {}).get(c, 0.0)) for c in COMPONENTS}
        return {"lambdas": lam, "dominant": max(lam, key=lambda c: lam[c])}


PERSONA_FIELDS = frozenset({"role", "description", "stance", "stance_score", "style", "big5"})


_SOME_PERSONA: dict[str, Any] = {
    "id": "x",
    "name": "x",
    "big5": dict.fromkeys(TRAITS, 0.5),
    "lambdas": {"SOC": 1.0},
}
"""A valid persona the ``persona`` intervention's values are tried on at config load (the
changeable fields do not depend on the others, so what this persona accepts every one does)."""


class PersonaParams(_Params):
    """New values of the :data:`PERSONA_FIELDS` of ``agents`` (empty: everyone); each value must
    pass the :class:`~friendsim.agents.persona.Persona` model's own validation."""

    agents: DistinctAgents = ()
    fields: dict[str, Any] = Field(min_length=1)

    @field_validator("fields")
    @classmethod
    def _known(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - PERSONA_FIELDS)
        if unknown:
            raise ValueError(
                f"persona fields {unknown} cannot be changed; allowed {sorted(PERSONA_FIELDS)} "
                "(the reward mix: kind = 'reward_mix')"
            )
        try:
            Persona.model_validate({**_SOME_PERSONA, **v})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise ValueError(f"persona field {where}: {msg} (got {err['input']!r})") from None
        return v


class SuspendParams(_Params):
    agents: DistinctAgents = Field(min_length=1)
    windows: int = Field(default=1, ge=1)
    reason: str = ""


class RemoveParams(_Params):
    agents: DistinctAgents = Field(min_length=1)
    reason: str = ""


class AddAgentsParams(_Params):
    count: Annotated[int, AfterValidator(check_population)]
    """How many agents join (:func:`~friendsim.runtime.population.check_population`; the grown
    population is checked by :func:`~friendsim.runtime.config.check_run_population`)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Inject:
    items: tuple[Item, ...]
    by: str
    agents: tuple[str, ...]

    async def apply(self, ops: RunOps, window: int) -> None:
        await ops.inject(self.items, by=self.by, agents=self.agents)


@dataclass(frozen=True, kw_only=True, slots=True)
class Broadcast:
    text: str
    sender: str

    async def apply(self, ops: RunOps, window: int) -> None:
        await ops.broadcast(self.text, sender=self.sender)


@dataclass(frozen=True, kw_only=True, slots=True)
class SwitchRanker:
    ranker: str
    params: Mapping[str, Any]
    limit: int | None

    async def apply(self, ops: RunOps, window: int) -> None:
        await ops.set_feed(self.ranker, self.params, self.limit)


@dataclass(frozen=True, kw_only=True, slots=True)
class Amend:
    agents: tuple[str, ...]
    fields: Mapping[str, Any]

    async def apply(self, ops: RunOps, window: int) -> None:
        await ops.amend(self.agents, self.fields)


@dataclass(frozen=True, kw_only=True, slots=True)
class Suspend:
    agents: tuple[str, ...]
    windows: int | None
    reason: str

    async def apply(self, ops: RunOps, window: int) -> None:
        await ops.suspend(self.agents, self.windows, self.reason)


@dataclass(frozen=True, kw_only=True, slots=True)
class AddAgents:
    count: int

    async def apply(self, ops: RunOps, window: int) -> None:
        await ops.add_agents(self.count)


def _inject(*, items: Any, by: str, agents: tuple[str, ...]) -> Intervention:
    return Inject(items=as_items(items), by=by, agents=agents)


def _broadcast(*, text: str, sender: str) -> Intervention:
    return Broadcast(text=text, sender=sender)


def _ranker(*, ranker: str, params: dict[str, Any], limit: int | None) -> Intervention:
    return SwitchRanker(ranker=ranker, params=params, limit=limit)


def _reward_mix(**params: Any) -> Intervention:
    p = RewardMixParams.model_validate(params)
    return Amend(agents=p.agents, fields=p.fields())


def _persona(*, agents: tuple[str, ...], fields: dict[str, Any]) -> Intervention:
    return Amend(agents=agents, fields=fields)


def _suspend(*, agents: tuple[str, ...], windows: int, reason: str) -> Intervention:
    return Suspend(agents=agents, windows=windows, reason=reason)


def _remove(*, agents: tuple[str, ...], reason: str) -> Intervention:
    return Suspend(agents=agents, windows=None, reason=reason or "removed")


def _add_agents(*, count: int) -> Intervention:
    return AddAgents(count=count)


def named_agents(kind: str, params: Mapping[str, Any]) -> tuple[str, ...]:
    """The agent ids an intervention's ``agents`` parameter names, for any kind whose params
    model declares an ``agents`` field (the built-ins ``inject``, ``reward_mix``, ``persona``,
    ``suspend``, ``remove``, and any plug-in's: all are checked before the run the same way,
    instead of failing as the intervention applies); none for the others."""
    if kind not in INTERVENTIONS or "agents" not in INTERVENTIONS.get(kind).params.model_fields:
        return ()
    agents = params.get("agents") or ()
    if isinstance(agents, str):
        return (agents,)
    if not isinstance(agents, (list, tuple)):  # a plug-in's own meaning of the word
        return ()
    return tuple(str(a) for a in agents)


def added_agents(kind: str, params: Mapping[str, Any]) -> int:
    """How many agents an ``add_agents`` intervention adds (0 for other kinds)."""
    return int(params.get("count", 0)) if kind == "add_agents" else 0


INTERVENTIONS: Registry[Intervention] = Registry(
    "intervention", group="friendsim.interventions", protocol=Intervention
)
"""The intervention extension point (entry-point group ``friendsim.interventions``)."""
INTERVENTIONS.register(
    "inject", _inject, params=InjectParams, summary="post items with truth labels"
)
INTERVENTIONS.register("broadcast", _broadcast, params=BroadcastParams, summary="a message to all")
INTERVENTIONS.register("ranker", _ranker, params=RankerParams, summary="switch the feed ranker")
INTERVENTIONS.register(
    "reward_mix", _reward_mix, params=RewardMixParams, summary="change agents' reward mix"
)
INTERVENTIONS.register("persona", _persona, params=PersonaParams, summary="change persona fields")
INTERVENTIONS.register("suspend", _suspend, params=SuspendParams, summary="suspend for k windows")
INTERVENTIONS.register("remove", _remove, params=RemoveParams, summary="remove agents for good")
INTERVENTIONS.register("add_agents", _add_agents, params=AddAgentsParams, summary="grow population")
