"""Discrete power-law fitting (CSN) on seeded synthetic samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from friendsim.analysis.powerlaw import (
    PowerLawDataError,
    fit_power_law,
    sample_discrete_power_law,
    vuong,
)


@pytest.mark.parametrize(("alpha", "xmin"), [(2.5, 1), (2.2, 4), (3.0, 2)])
def test_recovers_exponent_and_prefers_power_law_over_exponential(alpha: float, xmin: int) -> None:
    x = sample_discrete_power_law(alpha, xmin, 5000, np.random.default_rng(7))
    assert x.min() >= xmin
    fit = fit_power_law(x)
    assert fit is not None
    assert fit.alpha == pytest.approx(alpha, abs=0.1)
    assert fit.xmin <= 3 * xmin  # KS picks a small x_min on pure power-law data
    assert fit.alpha_se == pytest.approx((fit.alpha - 1) / math.sqrt(fit.n_tail))
    exp = fit.comparison("exponential")
    assert exp.loglik_ratio > 0 and exp.p_value < 0.01 and exp.favours == "power_law"


def test_fixed_xmin_matches_closed_form_region() -> None:
    x = sample_discrete_power_law(2.5, 1, 5000, np.random.default_rng(1))
    fit = fit_power_law(x, xmin=1)
    assert fit is not None and fit.xmin == 1 and fit.n_tail == 5000
    # discrete MLE is a maximum: nearby exponents have lower likelihood
    from scipy import special

    def ll(a: float) -> float:
        return float(-a * np.log(x).sum() - len(x) * math.log(special.zeta(a, 1)))

    assert ll(fit.alpha) >= ll(fit.alpha + 0.01) and ll(fit.alpha) >= ll(fit.alpha - 0.01)


def test_exponential_data_prefers_exponential() -> None:
    x = np.random.default_rng(42).geometric(0.3, 2000)
    fit = fit_power_law(x, xmin=1)
    assert fit is not None
    exp = fit.comparison("exponential")
    assert exp.loglik_ratio < 0 and exp.p_value < 0.01 and exp.favours == "exponential"
    # geometric(p) on {1, 2, ...} is the discrete exponential with λ = −ln(1 − p)
    assert exp.params["lambda"] == pytest.approx(-math.log(0.7), abs=0.03)


def test_lognormal_data_prefers_lognormal_and_recovers_parameters() -> None:
    rng = np.random.default_rng(42)
    x = np.round(np.exp(rng.normal(2.0, 1.0, 5000))).astype(int)
    fit = fit_power_law(x[x >= 2], xmin=2)
    assert fit is not None
    ln = fit.comparison("lognormal")
    assert ln.favours == "lognormal"
    assert ln.params["mu"] == pytest.approx(2.0, abs=0.1)
    assert ln.params["sigma"] == pytest.approx(1.0, abs=0.1)


def test_vuong_statistic_by_hand() -> None:
    a = np.array([0.0, 0.0, 0.0, 0.0])
    b = np.array([-1.0, -1.0, -3.0, -3.0])
    r, nr, p = vuong(a, b)
    # d = (1, 1, 3, 3): R = 8, σ = 1 → R/(σ√n) = 4, p = erfc(8/√8)
    assert r == pytest.approx(8.0) and nr == pytest.approx(4.0)
    assert p == pytest.approx(math.erfc(8 / math.sqrt(8)))


def test_bad_and_small_data() -> None:
    assert fit_power_law([1, 2, 3]) is None
    with pytest.raises(PowerLawDataError):
        fit_power_law([0, 1, 2] * 10)
    with pytest.raises(PowerLawDataError):
        fit_power_law([1.5] * 20)
    d = fit_power_law(sample_discrete_power_law(2.5, 1, 500, np.random.default_rng(0)))
    assert d is not None
    out = d.to_dict()
    assert set(out["comparisons"]) == {"exponential", "lognormal"}


def test_a_tail_whose_likelihood_rises_past_the_alpha_bound_has_no_fit() -> None:
    # all one value: the likelihood grows without end in α; a narrow tail just above x_min:
    # its MLE (about 16.3) lies beyond the bound of 12, which used to be reported as α
    assert fit_power_law([3] * 20) is None
    steep = [18] * 7 + [19] * 4 + [20] * 2 + [21]
    assert fit_power_law(steep, min_tail=5, xmin=18) is None
    chosen = fit_power_law(steep, min_tail=5)
    assert chosen is None or chosen.alpha < 11.9


def test_a_steep_power_law_inside_the_bound_is_still_fitted() -> None:
    x = sample_discrete_power_law(8.0, 1, 5000, np.random.default_rng(3))
    fit = fit_power_law(x, xmin=1)
    assert fit is not None and fit.alpha == pytest.approx(8.0, abs=0.3)


@pytest.mark.parametrize(
    "x",
    [
        [1] * 10 + [50] * 10,  # one wide gap: the model's CDF rises to almost 1 inside it
        [2, 2, 2, 3, 3, 5, 9, 9, 14, 40, 41, 300],
        sample_discrete_power_law(2.2, 2, 60, np.random.default_rng(5)).tolist(),
    ],
)
def test_ks_is_the_largest_cdf_gap_at_every_integer_of_the_tail(x: list[int]) -> None:
    from scipy import special

    xmin = min(x)
    fit = fit_power_law(x, xmin=xmin, min_tail=5)
    assert fit is not None
    tail = np.sort(np.asarray(x))
    every = np.arange(xmin, int(tail.max()) + 1)
    emp = np.searchsorted(tail, every, side="right") / len(tail)
    model = 1.0 - special.zeta(fit.alpha, every + 1.0) / special.zeta(fit.alpha, xmin)
    assert fit.ks == pytest.approx(float(np.max(np.abs(emp - model))), abs=1e-12)
