"""Decisions with stated confidence: a paired difference's 95 % interval against a tolerance.

A gate passes when the whole interval lies inside the tolerance (equivalence: the data exclude a difference as
large as the tolerance), fails when the whole interval lies outside it, and is `inconclusive` when it straddles a
bound — then `items_to_settle` says how many items, at the observed rates, would decide it. A point estimate
inside the tolerance is not a pass: with few items the interval can still reach past it.

Paired proportions (the same items scored by the reference and by vLLM) use Agresti and Min's interval (Statistics
in Medicine 24:729-740, 2005: add 0.5 to each cell of the 2x2 table, then Wald), which does not collapse to
[0, 0] when no item is discordant, the usual outcome of a port that works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Outcome = Literal["passed", "failed", "inconclusive"]


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    method: str


def z_value(confidence: float = 0.95) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def paired_difference(only_candidate: int, only_reference: int, n: int, confidence: float = 0.95) -> Interval:
    """candidate − reference accuracy on n paired items, from the discordant counts: only_candidate items only the
    candidate got right, only_reference items only the reference got right."""
    if n <= 0 or only_candidate < 0 or only_reference < 0 or only_candidate + only_reference > n:
        raise ValueError(f"paired counts do not fit: only_candidate {only_candidate}, only_reference "
                         f"{only_reference}, n {n} (need 0 <= each, their sum <= n, n > 0)")
    b, c = only_reference, only_candidate
    centre = (c - b) / (n + 2)
    sd = math.sqrt((b + c + 1) - (c - b) ** 2 / (n + 2)) / (n + 2)
    z = z_value(confidence)
    return Interval((c - b) / n, max(-1.0, centre - z * sd), min(1.0, centre + z * sd),
                    "Agresti-Min (2005), 0.5 added to each cell")


def decide(low: float, high: float, tolerance: float) -> Outcome:
    """Equivalence: passed when [low, high] lies within [−tolerance, +tolerance], failed when it lies wholly
    outside, inconclusive when it straddles a bound."""
    if tolerance < 0:
        raise ValueError(f"tolerance {tolerance} is negative; allowed: >= 0")
    if -tolerance <= low and high <= tolerance:
        return "passed"
    if high < -tolerance or low > tolerance:
        return "failed"
    return "inconclusive"


def items_to_settle(only_candidate: int, only_reference: int, n: int, tolerance: float,
                    confidence: float = 0.95, limit: int = 1_000_000) -> int | None:
    """Items that would settle an inconclusive paired comparison if the discordant rates stayed as observed; None
    when no number up to `limit` would (an estimate sitting on the tolerance)."""
    def outcome(scale: float) -> Outcome:
        m = max(1, round(n * scale))
        iv = paired_difference(round(only_candidate * scale), round(only_reference * scale), m, confidence)
        return decide(iv.low, iv.high, tolerance)

    if outcome(1) != "inconclusive":
        return n
    hi = 2.0
    while outcome(hi) == "inconclusive":
        hi *= 2
        if n * hi > limit:
            return None
    lo = 1.0
    while round(n * hi) - round(n * lo) > 1:
        mid = (lo + hi) / 2
        if outcome(mid) == "inconclusive":
            lo = mid
        else:
            hi = mid
    return round(n * hi)
