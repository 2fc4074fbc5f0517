"""Summary statistics shared by the sweep aggregate and the reports: mean with a Student-t
confidence interval, and its one-line rendering.

Kept in analysis (below sweep and report) so that both read the same numbers the same way.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

CONFIDENCE = 0.95
NO_CI_NOTE = "n=1: no confidence interval"


def mean_ci(values: Iterable[float | None], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean and Student-t confidence interval of the defined (non-``None``, finite) values.

    Returns ``n``, ``mean``, ``sd``, ``lower``, ``upper`` (and ``half_width``); with n = 0 or
    n = 1 the undefined fields are ``None`` and ``note`` says why.
    """
    from scipy import special

    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    out: dict[str, Any] = {"n": n, "mean": None, "sd": None, "lower": None, "upper": None}
    if n == 0:
        out["note"] = "no defined value"
        return out
    mean = statistics.fmean(xs)
    out["mean"] = mean
    if n == 1:
        out["note"] = NO_CI_NOTE
        return out
    sd = statistics.stdev(xs)
    # Student t quantile as ``special.stdtrit`` (what ``scipy.stats.t.ppf`` evaluates, without
    # importing scipy.stats: about 0.5 s of a report's CPU)
    half = float(special.stdtrit(n - 1, 0.5 + confidence / 2)) * sd / math.sqrt(n)
    out.update(sd=sd, lower=mean - half, upper=mean + half, half_width=half)
    return out


def format_stat(s: Mapping[str, Any] | None, digits: int = 4, *, of: int | None = None) -> str:
    """``mean [lower, upper]`` (or ``mean (n=1, no CI)``; ``—`` when undefined).

    ``of``: the number of replications (or pairs) the table's column stands for; when the
    statistic has fewer defined values (a metric undefined in some runs) its own n is shown,
    ``mean [lower, upper] (n=2 of 3)``, so that no interval reads as wider-based than it is.
    """
    if not s or s.get("mean") is None:
        return "—"
    tiny = 0.5 * 10.0**-digits

    def fmt(x: float) -> str:  # no "-0.0000" for values that round to zero
        return f"{0.0 if abs(x) < tiny else x:.{digits}f}"

    mean = fmt(s["mean"])
    n = f"n={s['n']}" if of is None or s["n"] >= of else f"n={s['n']} of {of}"
    if s.get("lower") is None:
        return f"{mean} ({n}, no CI)"
    text = f"{mean} [{fmt(s['lower'])}, {fmt(s['upper'])}]"
    return text if of is None or s["n"] >= of else f"{text} ({n})"
