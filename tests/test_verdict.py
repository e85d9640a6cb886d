"""The statistical gate: intervals checked against an independent implementation, decisions at every edge."""

from __future__ import annotations

import math

import pytest

from studykit.verdict import decide, items_to_settle, paired_difference


def agresti_min_reference(b: int, c: int, n: int) -> tuple[float, float]:
    """Agresti's own R code for the interval (`diffpropci`, published with Agresti and Min 2005), transcribed:
    diff <- (c-b)/(n+2); sd <- sqrt((b+c+1)-(c-b)^2/(n+2))/(n+2); diff -/+ qnorm(0.975) * sd."""
    z = 1.959963984540054
    diff = (c - b) / (n + 2)
    sd = math.sqrt((b + c + 1) - (c - b) ** 2 / (n + 2)) / (n + 2)
    return max(-1, diff - z * sd), min(1, diff + z * sd)


@pytest.mark.parametrize("b,c,n", [(3, 1, 106), (0, 0, 106), (12, 2, 50), (5, 9, 100), (0, 30, 30)])
def test_interval_matches_the_published_formula(b, c, n):
    iv = paired_difference(only_candidate=c, only_reference=b, n=n)
    low, high = agresti_min_reference(b, c, n)
    assert (iv.low, iv.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert iv.estimate == pytest.approx((c - b) / n)


def test_no_discordant_item_does_not_collapse_to_zero():
    iv = paired_difference(0, 0, 106)
    # by hand: sd = sqrt(1) / 108, half width 1.96 / 108 = 0.01815
    assert iv.low == pytest.approx(-1.959964 / 108, abs=1e-6) and iv.high == pytest.approx(1.959964 / 108, abs=1e-6)


def test_the_issue_case_reads_inconclusive():
    """studykit_mc in the golden run: 106 items, 3 only the reference got right, 1 only vLLM: the point estimate
    -0.019 is inside 0.05 but the interval reaches below -0.05 (by the formula: centre -2/108 = -0.0185,
    sd sqrt(5 - 4/108)/108 = 0.02063, low -0.0589)."""
    iv = paired_difference(only_candidate=1, only_reference=3, n=106)
    assert iv.low == pytest.approx(-0.0185185 - 1.959964 * 0.0206277, abs=1e-5)
    assert decide(iv.low, iv.high, 0.05) == "inconclusive"
    settle = items_to_settle(1, 3, 106, 0.05)
    assert settle is not None and settle > 106
    # at that many items (same rates) the interval fits; one scale step less it does not
    k = settle / 106
    assert decide(*_bounds(round(1 * k), round(3 * k), settle), 0.05) == "passed"


def _bounds(c, b, n):
    iv = paired_difference(c, b, n)
    return iv.low, iv.high


@pytest.mark.parametrize("low,high,tol,want", [
    (-0.01, 0.02, 0.05, "passed"), (-0.05, 0.05, 0.05, "passed"), (-0.06, 0.01, 0.05, "inconclusive"),
    (0.01, 0.07, 0.05, "inconclusive"), (-0.2, -0.06, 0.05, "failed"), (0.051, 0.3, 0.05, "failed"),
    (0.0, 0.0, 0.0, "passed")])
def test_decide_at_every_edge(low, high, tol, want):
    assert decide(low, high, tol) == want


def test_bad_counts_and_tolerance_are_named():
    with pytest.raises(ValueError, match="only_candidate 5, only_reference 6, n 10"):
        paired_difference(5, 6, 10)
    with pytest.raises(ValueError, match="tolerance -0.1 is negative"):
        decide(0, 0, -0.1)


def test_a_clear_drop_fails_and_needs_no_more_items():
    # 30 items only the reference got right of 100: -0.3, far outside 0.05
    iv = paired_difference(0, 30, 100)
    assert decide(iv.low, iv.high, 0.05) == "failed"
    assert items_to_settle(0, 30, 100, 0.05) == 100
