"""Mean and Student-t 95% confidence interval over repeats (scipy is not installed: a t table suffices)."""

from __future__ import annotations

import math
import statistics
from typing import Iterable

# Two-sided 95% Student t quantiles t(0.975, df) for df = 1..30; beyond 30 the normal 1.96 is within 2%.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    return statistics.NormalDist().inv_cdf(0.975) if df > 120 else 1.96 + 2.5 / df


def mean_ci95(values: Iterable[float]) -> dict[str, float | int | None]:
    """{"mean", "ci95_low", "ci95_high", "ci95_half_width", "stdev", "n"}; with n = 1 the interval is None."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("mean_ci95 needs at least one value")
    n = len(xs)
    mean = statistics.fmean(xs)
    if n == 1:
        return {"mean": mean, "ci95_low": None, "ci95_high": None, "ci95_half_width": None, "stdev": None, "n": 1}
    sd = statistics.stdev(xs)
    half = t975(n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "ci95_low": mean - half, "ci95_high": mean + half, "ci95_half_width": half,
            "stdev": sd, "n": n}


def aggregate(records: list[dict], keys: Iterable[str]) -> dict[str, dict]:
    """Per numeric key: mean and CI over the records (repeats of one point)."""
    out = {}
    for key in keys:
        vals = [r[key] for r in records if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        if vals:
            out[key] = mean_ci95(vals)
    return out
