"""Parity statistics for per-item 0/1 scores of two backends on the same items (pure functions).

- each backend's score: the proportion correct with a Wilson 95 % interval (good near 0 and 1, where small
  models and easy tasks sit; the Wald interval collapses there);
- the paired difference (candidate - reference) with Agresti and Min's interval (studykit.verdict): 0.5 added to
  each cell of the 2x2 table, so it does not collapse to [0, 0] when no item is discordant, the usual outcome of
  a port that works (the Wald interval for paired proportions did);
- McNemar's exact test: under "no difference" each discordant item is a fair coin, so
  p = min(1, 2 * P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2); no discordant items gives p = 1.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from studykit.verdict import paired_difference

Z95 = NormalDist().inv_cdf(0.975)


def _binary(scores: list[float], what: str) -> list[int]:
    bad = [s for s in scores if s not in (0, 1)]
    if bad:
        raise ValueError(f"{what}: per-item scores must be 0 or 1 for these statistics, got {bad[:5]!r}")
    return [int(s) for s in scores]


def wilson_ci95(correct: int, n: int) -> tuple[float, float]:
    if n <= 0:
        raise ValueError(f"a score interval needs at least one item, got n={n}")
    if not 0 <= correct <= n:
        raise ValueError(f"correct must be within 0..{n}, got {correct}")
    p, z2 = correct / n, Z95 ** 2
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact_p(only_candidate: int, only_reference: int) -> float:
    b, c = only_candidate, only_reference
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    m = b + c
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(b, c) + 1)) / 2 ** m
    return min(1.0, 2 * tail)


def parity(reference_scores: list[float], candidate_scores: list[float]) -> dict:
    """Everything the stage reports for one task, from per-item scores in the same item order."""
    if len(reference_scores) != len(candidate_scores):
        raise ValueError(f"paired scores need the same items: reference has {len(reference_scores)}, "
                         f"candidate {len(candidate_scores)}")
    ref = _binary(reference_scores, "reference")
    cand = _binary(candidate_scores, "candidate")
    n = len(ref)
    b = sum(1 for r, v in zip(ref, cand) if v and not r)
    c = sum(1 for r, v in zip(ref, cand) if r and not v)
    out = {"items": n}
    for name, scores in (("reference", ref), ("candidate", cand)):
        k = sum(scores)
        low, high = wilson_ci95(k, n)
        out[name] = {"correct": k, "score": k / n, "ci95_low": low, "ci95_high": high}
    iv = paired_difference(only_candidate=b, only_reference=c, n=n)
    out["delta"] = {"value": iv.estimate, "ci95_low": iv.low, "ci95_high": iv.high, "method": iv.method}
    out["only_candidate_correct"] = b
    out["only_reference_correct"] = c
    out["mcnemar_exact_p"] = mcnemar_exact_p(b, c)
    return out
