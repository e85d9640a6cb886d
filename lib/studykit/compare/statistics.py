"""The change of each metric between two runs, its 95 % interval, a test suited to the data, Holm's correction
across the metrics, and the verdict.

- per-request / per-iteration samples: change of the mean (B / A − 1) with a percentile bootstrap interval
  (2,000 resamples, fixed seed) and Welch's t-test (a latency stage has 5 iterations: a rank test cannot reach
  p < 0.05 after correction with so few);
- paired items with 0/1 scores (tasks): difference of the scores with Agresti–Min's paired interval and
  McNemar's exact test on the discordant items;
- paired continuous values (accuracy, per prompt): mean difference with a bootstrap interval over prompts and the
  Wilcoxon signed-rank test;
- one value per run: the change alone, judged against the noise floor (no test is possible).

Multiple comparisons: Benjamini–Hochberg over every metric with a test (false discovery rate 5 %).
Verdict: `worse` / `better` when the corrected test rejects "no change" (or, for one value per run, always) and
the change itself lies beyond the noise margin; `same within noise` otherwise; `not comparable` when the shape
differs. The margin is the measured run-to-run noise floor of the metric (benchmarks/noise_floor.py) when given,
else a stated default: run-to-run differences on one host are larger than the spread inside one run, so a test
on a run's own samples alone would call every rerun different.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from studykit.compare.samples import Measured
from studykit.verdict import paired_difference

DEFAULT_MARGIN = {"relative": 0.05, "tasks": 0.05, "accuracy.mean_kl": 0.001, "accuracy.top1_agreement": 0.02}
BOOTSTRAP = 2000
ALPHA = 0.05


@dataclass
class Change:
    key: str
    label: str
    unit: str
    a: float | None
    b: float | None
    change: float | None  # relative (B / A − 1) or, for paired metrics, absolute (B − A)
    relative: bool
    ci_low: float | None
    ci_high: float | None
    test: str
    p_value: float | None
    p_adjusted: float | None
    n_a: int
    n_b: int
    margin: float
    verdict: str
    why: str
    normalised: float | None = None
    probe: str | None = None


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _bootstrap_ratio(a: list[float], b: list[float], rng: random.Random) -> tuple[float, float]:
    ratios = []
    for _ in range(BOOTSTRAP):
        ma = _mean([rng.choice(a) for _ in a])
        mb = _mean([rng.choice(b) for _ in b])
        ratios.append(mb / ma - 1 if ma else float("nan"))
    ratios.sort()
    return ratios[int(0.025 * BOOTSTRAP)], ratios[int(0.975 * BOOTSTRAP) - 1]


def _bootstrap_mean(d: list[float], rng: random.Random) -> tuple[float, float]:
    means = sorted(_mean([rng.choice(d) for _ in d]) for _ in range(BOOTSTRAP))
    return means[int(0.025 * BOOTSTRAP)], means[int(0.975 * BOOTSTRAP) - 1]


def compare_metric(a: Measured, b: Measured, margin: float | None = None, seed: int = 0) -> Change:
    """The change of one metric from run A to run B, before the correction across metrics."""
    rng = random.Random(f"{seed}:{a.key}")
    base = dict(key=a.key, label=a.label, unit=a.unit, a=a.value, b=b.value, probe=a.probe)
    if a.shape != b.shape:
        differ = {k: (a.shape.get(k), b.shape.get(k)) for k in set(a.shape) | set(b.shape)
                  if a.shape.get(k) != b.shape.get(k)}
        return Change(**base, change=None, relative=True, ci_low=None, ci_high=None, test="—", p_value=None,
                      p_adjusted=None, n_a=0, n_b=0, margin=0.0, verdict="not comparable",
                      why="shape differs: " + ", ".join(f"{k} {x!r} → {y!r}" for k, (x, y) in sorted(differ.items())))
    if a.kind == "paired":
        return _paired(a, b, base, margin, rng)
    m = DEFAULT_MARGIN["relative"] if margin is None else margin
    if not a.values or not b.values or not a.value:
        return Change(**base, change=None, relative=True, ci_low=None, ci_high=None, test="—", p_value=None,
                      p_adjusted=None, n_a=len(a.values), n_b=len(b.values), margin=m, verdict="not comparable",
                      why="no value in one of the runs")
    change = b.value / a.value - 1
    if a.kind == "samples" and b.kind == "samples" and len(a.values) > 1 and len(b.values) > 1:
        from scipy.stats import ttest_ind

        low, high = _bootstrap_ratio(a.values, b.values, rng)
        p = float(ttest_ind(a.values, b.values, equal_var=False).pvalue)
        if p != p:  # identical constant samples: no evidence of a change
            p = 1.0
        return Change(**base, change=change, relative=True, ci_low=low, ci_high=high, test="Welch t",
                      p_value=p, p_adjusted=None, n_a=len(a.values), n_b=len(b.values), margin=m, verdict="",
                      why=f"bootstrap interval of the mean's change over {len(a.values)} and {len(b.values)} values")
    return Change(**base, change=change, relative=True, ci_low=None, ci_high=None, test="none (one value each)",
                  p_value=None, p_adjusted=None, n_a=len(a.values), n_b=len(b.values), margin=m, verdict="",
                  why="one value per run: judged against the noise margin only")


def _paired(a: Measured, b: Measured, base: dict, margin: float | None, rng: random.Random) -> Change:
    keys = sorted(set(a.pairs) & set(b.pairs))
    family = "tasks" if a.key.startswith("tasks.") else a.key
    m = DEFAULT_MARGIN.get(family, DEFAULT_MARGIN["relative"]) if margin is None else margin
    if not keys:
        return Change(**base, change=None, relative=False, ci_low=None, ci_high=None, test="—", p_value=None,
                      p_adjusted=None, n_a=len(a.pairs), n_b=len(b.pairs), margin=m, verdict="not comparable",
                      why="no item or prompt in common")
    xa, xb = [a.pairs[k] for k in keys], [b.pairs[k] for k in keys]
    diffs = [y - x for x, y in zip(xa, xb)]
    base = {**base, "a": _mean(xa), "b": _mean(xb)}
    if set(xa) | set(xb) <= {0.0, 1.0}:
        from scipy.stats import binomtest

        only_b = sum(1 for x, y in zip(xa, xb) if y > x)
        only_a = sum(1 for x, y in zip(xa, xb) if x > y)
        iv = paired_difference(only_candidate=only_b, only_reference=only_a, n=len(keys))
        p = float(binomtest(only_b, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
        return Change(**base, change=iv.estimate, relative=False, ci_low=iv.low, ci_high=iv.high,
                      test="McNemar exact", p_value=p, p_adjusted=None, n_a=len(keys), n_b=len(keys), margin=m,
                      verdict="", why=f"{len(keys)} paired items; {only_a} right only in A, {only_b} only in B")
    from scipy.stats import wilcoxon

    low, high = _bootstrap_mean(diffs, rng)
    nonzero = [d for d in diffs if d != 0]
    p = float(wilcoxon(nonzero).pvalue) if len(nonzero) >= 2 else 1.0
    return Change(**base, change=_mean(diffs), relative=False, ci_low=low, ci_high=high,
                  test="Wilcoxon signed-rank", p_value=p, p_adjusted=None, n_a=len(keys), n_b=len(keys), margin=m,
                  verdict="", why=f"{len(keys)} paired prompts")


def benjamini_hochberg(p_values: list[float | None]) -> list[float | None]:
    """Benjamini–Hochberg adjusted p-values (q-values) of the p-values that exist; None stays None."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    m = len(present)
    running = 1.0
    for rank in range(m - 1, -1, -1):
        p, i = present[rank]
        running = min(running, p * m / (rank + 1))
        out[i] = min(1.0, running)
    return out


def settle(changes: list[Change], lower_is_better: dict[str, bool]) -> list[Change]:
    """Benjamini–Hochberg across every metric with a test, then each metric's verdict."""
    for c, adj in zip(changes, benjamini_hochberg([c.p_value for c in changes])):
        c.p_adjusted = adj
        if c.verdict:  # not comparable already
            continue
        worse_sign = 1 if lower_is_better[c.key] else -1
        beyond_up, beyond_down = c.change > c.margin, c.change < -c.margin
        significant = c.p_adjusted is None or c.p_adjusted < ALPHA
        if significant and (beyond_up or beyond_down):
            c.verdict = "worse" if (beyond_up and worse_sign > 0) or (beyond_down and worse_sign < 0) else "better"
        else:
            c.verdict = "same within noise"
            if not significant:
                c.why += f"; adjusted p {c.p_adjusted:.3g} >= {ALPHA}"
            else:
                c.why += f"; the change is within the ±{c.margin:g} noise margin"
    return changes
