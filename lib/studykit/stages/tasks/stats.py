"""Parity statistics for per-item 0/1 scores of two backends on the same items (pure functions).

- each backend's score: the proportion correct with a Wilson 95 % interval (good near 0 and 1, where small
  models and easy tasks sit; the Wald interval collapses there);
- the paired difference (candidate - reference) with the Wald interval for paired proportions:
  d = (b - c) / n, var = ((b + c) - (b - c)^2 / n) / n^2, where b = items only the candidate gets right and
  c = items only the reference gets right (Agresti, Categorical Data Analysis, 10.1);
- McNemar's exact test: under "no difference" each discordant item is a fair coin, so
  p = min(1, 2 * P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2); no discordant items gives p = 1.
"""

from __future__ import annotations

import math
from statistics import NormalDist

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


def paired_difference_ci95(only_candidate: int, only_reference: int, n: int) -> tuple[float, float, float]:
    """(difference candidate - reference, low, high) from the discordant counts b, c over n paired items."""
    if n <= 0:
        raise ValueError(f"a paired difference needs at least one item, got n={n}")
    b, c = only_candidate, only_reference
    if b < 0 or c < 0 or b + c > n:
        raise ValueError(f"discordant counts b={b}, c={c} do not fit n={n} items")
    d = (b - c) / n
    half = Z95 * math.sqrt(max(0.0, (b + c) - (b - c) ** 2 / n)) / n
    return d, d - half, d + half


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
    d, low, high = paired_difference_ci95(b, c, n)
    out["delta"] = {"value": d, "ci95_low": low, "ci95_high": high}
    out["only_candidate_correct"] = b
    out["only_reference_correct"] = c
    out["mcnemar_exact_p"] = mcnemar_exact_p(b, c)
    return out
