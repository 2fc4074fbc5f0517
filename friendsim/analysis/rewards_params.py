"""Reward configuration and the five component formulas as pure functions of window counts.

Everything the paper (Schneider, Tian, Rizoiu 2025) leaves open is a field of
:class:`RewardParams` and is written to the run manifest through :meth:`RewardParams.to_dict`.
The formulas below are DESIGN.md section 2, verbatim, applied to counts that
:mod:`friendsim.analysis.rewards` extracts from the event log; ``docs/rewards.md`` explains every
choice. Conventions shared by all formulas:

* ``ratio(a, b)`` is ``a / b`` clipped to [0, 1], and 0 when ``b <= 0`` ("a zero denominator gives
  0 for that term").
* Every component is finally clipped to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

COMPONENTS: tuple[str, ...] = ("SOC", "INF", "PRE", "COORD", "EMO")
UNIFORM_LAMBDAS: Mapping[str, float] = {c: 1.0 / len(COMPONENTS) for c in COMPONENTS}
LAMBDA_SUM_TOLERANCE = 1e-6


class RewardConfigError(ValueError):
    """Reward parameters or reward weights (λ) are invalid; the message names the field/agent."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RewardParams:
    """The open parameters of the reward model (all JSON-serialisable).

    ``beta_soc``, ``beta_inf``, ``beta_pre``, ``beta_coord`` in [0, 1] weight the second term of
    their component. ``beta_emo`` is any real: it weights negative sentiment in EMO; the default
    ``-1`` makes EMO = ½(1 + (U⁺ − U⁻)/(U⁺ + U⁻ + ε)), i.e. negative replies lower the score
    (with ``+1`` the ratio is 1 whenever anything non-neutral was received). ``eps`` > 0 keeps EMO
    defined with no sentiment. ``n_actions`` is N, the planned actions per agent per round
    (rounds mode). ``sentiment`` names the model of :func:`friendsim.analysis.sentiment.get_sentiment`.
    """

    beta_soc: float = 0.5
    beta_inf: float = 0.5
    beta_pre: float = 0.5
    beta_coord: float = 0.5
    beta_emo: float = -1.0
    eps: float = 1e-9
    n_actions: int = 3
    sentiment: str = "vader"

    def __post_init__(self) -> None:
        for name in ("beta_soc", "beta_inf", "beta_pre", "beta_coord"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                raise RewardConfigError(f"reward param {name}={value!r} must be a number in [0, 1]")
        if not isinstance(self.beta_emo, int | float) or not math.isfinite(self.beta_emo):
            raise RewardConfigError(
                f"reward param beta_emo={self.beta_emo!r} must be a finite real"
            )
        if not isinstance(self.eps, int | float) or not 0.0 < float(self.eps) < 1.0:
            raise RewardConfigError(f"reward param eps={self.eps!r} must be in (0, 1)")
        if isinstance(self.n_actions, bool) or not isinstance(self.n_actions, int):
            raise RewardConfigError(f"reward param n_actions={self.n_actions!r} must be an int")
        if self.n_actions < 1:
            raise RewardConfigError(f"reward param n_actions={self.n_actions} must be >= 1")
        if not isinstance(self.sentiment, str) or not self.sentiment:
            raise RewardConfigError(f"reward param sentiment={self.sentiment!r} must be a name")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the manifest's ``"rewards"`` key)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RewardParams:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        if not isinstance(data, Mapping):
            raise RewardConfigError(
                f"reward params must be a JSON object, got {type(data).__name__}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RewardConfigError(f"unknown reward params {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


def validate_lambdas(agent: str, weights: Mapping[str, float]) -> dict[str, float]:
    """Check one agent's reward mix λ: known components, each >= 0, summing to 1.

    Components absent from ``weights`` get 0. Returns a full dict over :data:`COMPONENTS`.
    """
    unknown = sorted(set(weights) - set(COMPONENTS))
    if unknown:
        raise RewardConfigError(
            f"lambdas of agent {agent!r}: unknown components {unknown}; known: {list(COMPONENTS)}"
        )
    out: dict[str, float] = {}
    for c in COMPONENTS:
        w = weights.get(c, 0.0)
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise RewardConfigError(f"lambdas of agent {agent!r}: {c}={w!r} must be a real >= 0")
        out[c] = float(w)
    total = sum(out.values())
    if abs(total - 1.0) > LAMBDA_SUM_TOLERANCE:
        raise RewardConfigError(f"lambdas of agent {agent!r} sum to {total:.6g}, must sum to 1")
    return out


# --- the formulas (DESIGN.md section 2) -------------------------------------------------------


def ratio(num: float, den: float) -> float:
    """``num / den`` clipped to [0, 1]; 0 for a zero (or negative) denominator."""
    if den <= 0:
        return 0.0
    r = num / den
    return 0.0 if r < 0.0 else 1.0 if r > 1.0 else r


def clip01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def soc(*, sent: int, received: int, b_dir: int, n: int, beta: float) -> float:
    """SOC = (1−β)·sent/N + β·received/|B_dir|."""
    return clip01((1.0 - beta) * ratio(sent, n) + beta * ratio(received, b_dir))


def entropy(counts: Mapping[str, int] | list[int]) -> float:
    """Shannon entropy (natural log) of a distribution given by counts."""
    values = list(counts.values()) if isinstance(counts, Mapping) else counts
    total = sum(values)
    if total <= 0:
        return 0.0
    h = 0.0
    for c in values:
        if c > 0:
            p = c / total
            h -= p * math.log(p)
    return h


def inf(*, new_topics: int, entropy_value: float, k: int, beta: float) -> float:
    """INF = (1−β)·T/K + β·H/log K. K <= 1: log K = 0, so the entropy term is 0 (no diversity
    is possible on a one-topic platform); K = 0 makes the novelty term 0 too."""
    novelty = ratio(new_topics, k)
    diversity = ratio(entropy_value, math.log(k)) if k > 1 else 0.0
    return clip01((1.0 - beta) * novelty + beta * diversity)


def pre(*, posts: int, n: int, net_likes: int, n_agents: int, n_likes: int, beta: float) -> float:
    """PRE = (1−β)·posts/actions + β·net_likes/((|V|−1)·N), the whole clipped to [0, 1].

    ``n`` is the action count (denominator of the first term), ``n_likes`` the N of the second;
    the likes ratio itself is bounded to [−1, 1] (it cannot exceed it in rounds mode).
    """
    den = (n_agents - 1) * n_likes
    likes = 0.0 if den <= 0 else max(-1.0, min(1.0, net_likes / den))
    return clip01((1.0 - beta) * ratio(posts, n) + beta * likes)


def coord(*, mentions: int, items: int, replied: int, last_dmers: int, beta: float) -> float:
    """COORD = (1−β)·mentions_of(u)/|posts and comments| + β·replied/|last window's DMers|."""
    return clip01((1.0 - beta) * ratio(mentions, items) + beta * ratio(replied, last_dmers))


def emo(*, u_pos: float, u_neg: float, beta: float, eps: float) -> float:
    """EMO = ½·(1 + (U⁺ + β·U⁻)/(U⁺ + |β|·U⁻ + ε)); 0.5 when nothing (non-neutral) was received."""
    return clip01(0.5 * (1.0 + (u_pos + beta * u_neg) / (u_pos + abs(beta) * u_neg + eps)))


def total(components: Mapping[str, float], lambdas: Mapping[str, float]) -> float:
    """R = Σ λ_r·R_r."""
    return sum(lambdas.get(c, 0.0) * components[c] for c in COMPONENTS)
