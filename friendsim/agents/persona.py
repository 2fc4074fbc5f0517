"""The persona model: who an agent is (personality, task, content-inferable traits).

A persona has three layers (DESIGN section 2): personality (Big Five scores in [0, 1] plus
aspect-level facets), task (the reward mix ``lambdas`` over SOC/INF/PRE/COORD/EMO with its
``dominant`` policy) and the content-inferable traits (role, description, stance, style).
``attributes`` carries the group labels the analysis uses for homophily (stance group, age band,
gender ...); ``activity`` is the relative wake rate used by the continuous mode.

The model is frozen and validated at construction, so a bad persona is rejected where it enters
(persona file, generator, LLM planner) and never deep inside a run.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

COMPONENTS: tuple[str, ...] = ("SOC", "INF", "PRE", "COORD", "EMO")
"""Reward components, in the order used everywhere (same as ``analysis.rewards.COMPONENTS``)."""

TRAITS: tuple[str, ...] = ("O", "C", "E", "A", "N")
"""Big Five keys: openness, conscientiousness, extraversion, agreeableness, neuroticism."""

TRAIT_NAMES: dict[str, str] = {
    "O": "openness",
    "C": "conscientiousness",
    "E": "extraversion",
    "A": "agreeableness",
    "N": "neuroticism",
}

FACETS: dict[str, tuple[str, str]] = {
    "O": ("openness", "intellect"),
    "C": ("industriousness", "orderliness"),
    "E": ("enthusiasm", "assertiveness"),
    "A": ("compassion", "politeness"),
    "N": ("volatility", "withdrawal"),
}
"""The two Big Five Aspect Scales per trait (DeYoung et al. 2007), the facet names we generate."""

_LAMBDA_TOL = 1e-3

Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NonNeg = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class Persona(BaseModel):
    """One agent's persona. Frozen; validated on construction.

    ``big5`` must hold exactly the keys O, C, E, A, N with values in [0, 1]. ``facets`` maps facet
    names to [0, 1]. ``lambdas`` maps components to weights >= 0 summing to 1 (within 1e-3; they
    are renormalised when off by more than 1e-9; missing components get 0). ``dominant`` defaults to the component
    with the largest weight; when given it must be one of the largest. ``stance_score`` in
    [-1, 1] is a numeric reading of ``stance`` (used by the baseline policy and analysis).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str = Field(min_length=1, max_length=80)
    role: str = Field(default="member", min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    stance: str = Field(default="", max_length=500)
    stance_score: float = Field(default=0.0, ge=-1.0, le=1.0)
    style: str = Field(default="", max_length=500)
    big5: dict[str, Unit]
    facets: dict[str, Unit] = Field(default_factory=dict)
    lambdas: dict[str, NonNeg]
    dominant: str | None = None
    activity: float = Field(default=1.0, gt=0.0, le=1000.0)
    attributes: dict[str, str] = Field(default_factory=dict)

    @field_validator("big5")
    @classmethod
    def _check_big5(cls, v: dict[str, float]) -> dict[str, float]:
        missing = [k for k in TRAITS if k not in v]
        extra = [k for k in v if k not in TRAITS]
        if missing or extra:
            raise ValueError(
                f"big5 needs exactly the keys {list(TRAITS)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {extra}" if extra else "")
            )
        for k, x in v.items():
            if not (math.isfinite(x) and 0.0 <= x <= 1.0):
                raise ValueError(f"big5[{k}]={x!r} is not in [0, 1]")
        return {k: float(v[k]) for k in TRAITS}

    @field_validator("facets")
    @classmethod
    def _check_facets(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if not k or not (math.isfinite(x) and 0.0 <= x <= 1.0):
                raise ValueError(f"facets[{k!r}]={x!r} is not in [0, 1]")
        return dict(v)

    @field_validator("lambdas")
    @classmethod
    def _check_lambdas(cls, v: dict[str, float]) -> dict[str, float]:
        extra = [k for k in v if k not in COMPONENTS]
        if extra:
            raise ValueError(f"unknown reward components {extra}; allowed {list(COMPONENTS)}")
        for k, x in v.items():
            if not (math.isfinite(x) and x >= 0.0):
                raise ValueError(f"lambdas[{k}]={x!r} must be a finite number >= 0")
        total = sum(v.values())
        if abs(total - 1.0) > _LAMBDA_TOL:
            raise ValueError(f"lambdas sum to {total:.6g}, must sum to 1")
        scale = 1.0 if abs(total - 1.0) <= 1e-9 else total
        return {k: float(v.get(k, 0.0)) / scale for k in COMPONENTS}

    @field_validator("attributes", mode="before")
    @classmethod
    def _attrs_to_str(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): (str(x) if isinstance(x, int | float) else x) for k, x in v.items()}
        return v

    @model_validator(mode="after")
    def _check_dominant(self) -> Persona:
        top = max(self.lambdas.values())
        best = [k for k in COMPONENTS if self.lambdas[k] >= top - 1e-9]
        if self.dominant is None:
            object.__setattr__(self, "dominant", best[0])
        elif self.dominant not in COMPONENTS:
            raise ValueError(f"dominant={self.dominant!r} is not one of {list(COMPONENTS)}")
        elif self.dominant not in best:
            raise ValueError(
                f"dominant={self.dominant!r} does not have the largest weight in lambdas "
                f"(largest: {best})"
            )
        return self

    @property
    def dominant_policy(self) -> str:
        """The dominant component (never ``None`` after validation)."""
        assert self.dominant is not None
        return self.dominant


def personality_sentence(p: Persona) -> str:
    """A short plain-language rendering of the Big Five scores for prompts."""

    def level(x: float) -> str:
        if x >= 0.67:
            return "high"
        if x <= 0.33:
            return "low"
        return "moderate"

    parts = [f"{level(p.big5[t])} {TRAIT_NAMES[t]} ({p.big5[t]:.2f})" for t in TRAITS]
    return ", ".join(parts)
