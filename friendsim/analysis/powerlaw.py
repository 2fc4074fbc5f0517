"""Discrete power-law fit of degree sequences (Clauset, Shalizi & Newman 2009), numpy/scipy only.

* Model: p(x) = x^(−α) / ζ(α, x_min) for integers x ≥ x_min (ζ = Hurwitz zeta).
* α: discrete maximum likelihood for each candidate x_min (bounded scalar optimisation of
  −α·Σ ln x − n·ln ζ(α, x_min)); standard error (α − 1)/√n_tail.
* x_min: the candidate (every distinct value leaving at least ``min_tail`` points in the tail)
  minimising the Kolmogorov–Smirnov distance between the empirical and fitted CDFs of the tail
  (the largest difference at any integer x ≥ x_min, values between the observed ones included).
  A candidate whose likelihood still rises at the upper bound of α (:data:`ALPHA_BOUNDS`; a tail
  of one value, or one too steep for a power law) has no estimate and is skipped: the bound is
  not the MLE.
* Alternatives on the same tail: discrete exponential p(x) = (1 − e^(−λ)) e^(−λ(x − x_min)) (MLE
  closed form) and discretised lognormal p(x) ∝ F(x + ½) − F(x − ½) truncated at x_min − ½
  (MLE by Nelder–Mead). Vuong's test: R = Σ (ln p_pl − ln p_alt), normalised R/(σ√n), two-sided
  p = erfc(|R| / (σ √(2n))); R > 0 with small p favours the power law.

The exponent of degree/(n−1) is that of the degree: scaling does not change α, so degrees are
fitted as integers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, special

ALPHA_BOUNDS = (1.0001, 12.0)
DEFAULT_MIN_TAIL = 10
MAX_XMIN_CANDIDATES = 400


class PowerLawDataError(ValueError):
    """The data cannot be fitted (non-integer or non-positive values)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Comparison:
    """Vuong likelihood-ratio comparison of the power law with one alternative."""

    alternative: str
    loglik_ratio: float
    normalized_ratio: float
    p_value: float
    params: dict[str, float] = field(default_factory=dict)

    @property
    def favours(self) -> str:
        """ "power_law", the alternative, or "undecided" (p ≥ 0.1)."""
        if self.p_value >= 0.1 or self.loglik_ratio == 0:
            return "undecided"
        return "power_law" if self.loglik_ratio > 0 else self.alternative


@dataclass(frozen=True, kw_only=True, slots=True)
class PowerLawFit:
    """Result of :func:`fit_power_law`."""

    alpha: float
    alpha_se: float
    xmin: int
    ks: float
    n: int
    n_tail: int
    comparisons: tuple[Comparison, ...]

    def comparison(self, alternative: str) -> Comparison:
        for c in self.comparisons:
            if c.alternative == alternative:
                return c
        raise KeyError(alternative)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "alpha_se": self.alpha_se,
            "xmin": self.xmin,
            "ks": self.ks,
            "n": self.n,
            "n_tail": self.n_tail,
            "comparisons": {
                c.alternative: {
                    "loglik_ratio": c.loglik_ratio,
                    "normalized_ratio": c.normalized_ratio,
                    "p_value": c.p_value,
                    "favours": c.favours,
                    "params": c.params,
                }
                for c in self.comparisons
            },
        }


def _alpha_mle(xmin: int, n: int, sum_log: float) -> float | None:
    """The discrete MLE of α, ``None`` when it lies beyond ``ALPHA_BOUNDS[1]`` (the negative
    log-likelihood is convex in α, so it still falls at the bound exactly then)."""

    def nll(a: float) -> float:
        return a * sum_log + n * math.log(special.zeta(a, xmin))

    hi = ALPHA_BOUNDS[1]
    if nll(hi) <= nll(hi - 1e-4):
        return None
    res = optimize.minimize_scalar(
        nll, bounds=ALPHA_BOUNDS, method="bounded", options={"xatol": 1e-6}
    )
    return float(res.x)


def _ks(tail_sorted: np.ndarray, alpha: float, xmin: int) -> float:
    """max over every integer x ≥ ``xmin`` of |empirical CDF − model CDF| (CSN eq. 3.9).

    Between two observed values the empirical CDF stays flat while the model's rises, so the
    largest gap there is at the integer just below the next observed value: the CDFs are
    compared at each observed value and just below it, which covers every integer."""
    values, counts = np.unique(tail_sorted, return_counts=True)
    emp = np.cumsum(counts) / len(tail_sorted)
    z = special.zeta(alpha, xmin)
    model = 1.0 - special.zeta(alpha, values + 1.0) / z
    below = 1.0 - special.zeta(alpha, values) / z
    emp_below = np.concatenate(([0.0], emp[:-1]))
    return float(max(np.max(np.abs(emp - model)), np.max(np.abs(emp_below - below))))


def _pl_logpdf(x: np.ndarray, alpha: float, xmin: int) -> np.ndarray:
    return -alpha * np.log(x) - math.log(special.zeta(alpha, xmin))


def _exp_logpdf(x: np.ndarray, xmin: int) -> tuple[np.ndarray, dict[str, float]]:
    excess = float(x.mean() - xmin)
    lam = math.log1p(1.0 / excess) if excess > 0 else 50.0
    return math.log(-math.expm1(-lam)) - lam * (x - xmin), {"lambda": lam}


def _lognorm_logpdf_params(x: np.ndarray, xmin: int, mu: float, sigma: float) -> np.ndarray:
    lo = (np.log(x - 0.5) - mu) / sigma
    hi = (np.log(x + 0.5) - mu) / sigma
    # Standard normal cdf/sf as ``special.ndtr`` (what ``scipy.stats.norm`` evaluates, without
    # its per-call argument handling, which dominated the Nelder-Mead loop).
    ndtr = special.ndtr
    mass = np.where(lo > 0, ndtr(-lo) - ndtr(-hi), ndtr(hi) - ndtr(lo))
    tail = ndtr(-((math.log(xmin - 0.5) - mu) / sigma)) if xmin > 0.5 else 1.0
    return np.log(np.maximum(mass, 1e-300)) - math.log(max(tail, 1e-300))


def _lognorm_logpdf(x: np.ndarray, xmin: int) -> tuple[np.ndarray, dict[str, float]]:
    logs = np.log(x)
    start = np.array([float(logs.mean()), math.log(max(float(logs.std()), 0.1))])

    def nll(theta: np.ndarray) -> float:
        sigma = math.exp(min(theta[1], 5.0))
        return -float(_lognorm_logpdf_params(x, xmin, float(theta[0]), sigma).sum())

    res = optimize.minimize(
        nll, start, method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-7, "maxiter": 2000}
    )
    mu, sigma = float(res.x[0]), math.exp(min(float(res.x[1]), 5.0))
    return _lognorm_logpdf_params(x, xmin, mu, sigma), {"mu": mu, "sigma": sigma}


def vuong(ll_a: np.ndarray, ll_b: np.ndarray) -> tuple[float, float, float]:
    """(R, R/(σ√n), two-sided p) for pointwise log-likelihoods of two non-nested models."""
    d = ll_a - ll_b
    n = len(d)
    r = float(d.sum())
    sigma = float(d.std())
    if n == 0 or sigma == 0:
        return r, 0.0, 1.0
    return r, r / (sigma * math.sqrt(n)), float(special.erfc(abs(r) / (sigma * math.sqrt(2 * n))))


def fit_power_law(
    data: Sequence[int] | np.ndarray,
    *,
    min_tail: int = DEFAULT_MIN_TAIL,
    xmin: int | None = None,
) -> PowerLawFit | None:
    """Fit a discrete power law to positive integers ``data``; ``None`` if fewer than
    ``min_tail`` values or if no candidate x_min has an estimate of α within the bounds.
    ``xmin`` fixes x_min instead of choosing it by KS distance."""
    x = np.asarray(data, dtype=np.float64)
    if x.size and (np.any(x < 1) or np.any(x != np.round(x))):
        raise PowerLawDataError("power-law data must be positive integers (e.g. degrees > 0)")
    x = np.sort(x)
    if len(x) < min_tail:
        return None
    logs = np.log(x)
    suffix_log = np.cumsum(logs[::-1])[::-1]
    uniq, first = np.unique(x, return_index=True)
    if xmin is not None:
        cands = [(int(xmin), int(np.searchsorted(x, xmin)))]
    else:
        cands = [
            (int(u), int(i)) for u, i in zip(uniq, first, strict=True) if len(x) - i >= min_tail
        ]
        if len(cands) > MAX_XMIN_CANDIDATES:
            cands = cands[:MAX_XMIN_CANDIDATES]
        if not cands:
            cands = [(int(uniq[0]), 0)]
    best: tuple[float, int, float, int] | None = None
    for xm, i in cands:
        n_tail = len(x) - i
        if n_tail < 2:
            continue
        a = _alpha_mle(xm, n_tail, float(suffix_log[i]))
        if a is None:
            continue
        d = _ks(x[i:], a, xm)
        if best is None or d < best[0]:
            best = (d, xm, a, i)
    if best is None:
        return None
    ks, xm, alpha, i = best
    tail = x[i:]
    ll_pl = _pl_logpdf(tail, alpha, xm)
    comps = []
    for name, fn in (("exponential", _exp_logpdf), ("lognormal", _lognorm_logpdf)):
        ll_alt, params = fn(tail, xm)
        r, nr, p = vuong(ll_pl, ll_alt)
        comps.append(
            Comparison(
                alternative=name, loglik_ratio=r, normalized_ratio=nr, p_value=p, params=params
            )
        )
    return PowerLawFit(
        alpha=alpha,
        alpha_se=(alpha - 1.0) / math.sqrt(len(tail)),
        xmin=xm,
        ks=ks,
        n=len(x),
        n_tail=len(tail),
        comparisons=tuple(comps),
    )


def sample_discrete_power_law(
    alpha: float, xmin: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Integers from p(x) ∝ x^(−α), x ≥ xmin, by exact inversion of the discrete CDF for
    x < 10⁴·xmin and CSN's continuous approximation beyond (tail mass there is negligible)."""
    top = int(10_000 * xmin)
    support = np.arange(xmin, top + 1, dtype=np.float64)
    pmf = support**-alpha / special.zeta(alpha, xmin)
    cdf = np.cumsum(pmf)
    r = rng.random(size)
    idx = np.searchsorted(cdf, r)
    out = np.empty(size, dtype=np.int64)
    inside = idx < len(support)
    out[inside] = support[idx[inside]].astype(np.int64)
    far = ~inside
    if far.any():
        u = rng.random(int(far.sum()))
        out[far] = np.floor((top + 0.5) * (1 - u) ** (-1.0 / (alpha - 1.0)) + 0.5).astype(np.int64)
    return out
