"""Parity statistics against values worked out by hand (arithmetic in the comments)."""

import pytest
from studykit.stages.tasks.stats import mcnemar_exact_p, parity, wilson_ci95


def test_wilson_8_of_10():
    # p = 0.8, z^2 = 3.8415, denom = 1.38415, centre = (0.8 + 0.19207) / 1.38415 = 0.71680,
    # half = 1.95996 * sqrt(0.016 + 0.0096037) / 1.38415 = 0.22655 -> (0.4902, 0.9434)
    low, high = wilson_ci95(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_all_correct_stays_inside_unit_interval():
    # p = 1: centre = (1 + z^2/2n) / denom, half = z * sqrt(z^2 / 4n^2) / denom = (z^2 / 2n) / denom
    # -> high = 1, low = 1 / (1 + z^2/n) = 1 / 1.38415 = 0.72247 for n = 10
    low, high = wilson_ci95(10, 10)
    assert high == pytest.approx(1.0)
    assert low == pytest.approx(0.72247, abs=1e-4)


def test_paired_difference_is_agresti_min_3_vs_7_of_100():
    # Agresti-Min: 0.5 added to each cell, b = 3 only the candidate, c = 7 only the reference, n = 100:
    # centre (3 - 7) / 102 = -0.039216; sd sqrt((10 + 1) - 16/102) / 102 = sqrt(10.843137) / 102 = 0.032283;
    # half 1.959964 * 0.032283 = 0.063274 -> (-0.102490, 0.024058); the estimate stays (3 - 7) / 100
    out = parity([1] * 7 + [0] * 3 + [1] * 40 + [0] * 50, [0] * 7 + [1] * 3 + [1] * 40 + [0] * 50)
    assert out["delta"]["value"] == pytest.approx(-0.04)
    assert out["delta"]["ci95_low"] == pytest.approx(-0.102490, abs=1e-5)
    assert out["delta"]["ci95_high"] == pytest.approx(0.024058, abs=1e-5)
    assert out["delta"]["method"].startswith("Agresti-Min")


def test_paired_difference_does_not_collapse_without_discordant_items():
    # no discordant item of 50: centre 0, sd sqrt(1) / 52, half 1.959964 / 52 = 0.037692 (Wald gave [0, 0])
    out = parity([1] * 20 + [0] * 30, [1] * 20 + [0] * 30)
    assert (out["delta"]["ci95_low"], out["delta"]["ci95_high"]) == (pytest.approx(-0.037692, abs=1e-6),
                                                                     pytest.approx(0.037692, abs=1e-6))


def test_mcnemar_exact_by_hand():
    # b + c = 10, min = 3: P(X <= 3) = (1 + 10 + 45 + 120) / 1024 = 176/1024; p = 2 * 0.171875
    assert mcnemar_exact_p(3, 7) == pytest.approx(0.34375)
    assert mcnemar_exact_p(7, 3) == pytest.approx(0.34375)
    # 0 vs 6: P(X <= 0) = 1/64; p = 2/64
    assert mcnemar_exact_p(0, 6) == pytest.approx(0.03125)
    # 1 vs 1: P(X <= 1) = 3/4; doubled is capped at 1
    assert mcnemar_exact_p(1, 1) == 1.0
    assert mcnemar_exact_p(0, 0) == 1.0


def test_parity_counts_discordant_items_in_item_order():
    ref = [1, 1, 1, 0, 0, 1, 0, 1]
    cand = [1, 0, 1, 1, 0, 0, 0, 1]
    out = parity(ref, cand)
    # reference 5/8, candidate 4/8; only the candidate right: item 3; only the reference: items 1 and 5
    assert out["reference"]["correct"] == 5 and out["candidate"]["correct"] == 4
    assert out["only_candidate_correct"] == 1 and out["only_reference_correct"] == 2
    assert out["delta"]["value"] == pytest.approx(-1 / 8)
    # m = 3, min = 1: P(X <= 1) = 4/8; p = 1
    assert out["mcnemar_exact_p"] == 1.0


@pytest.mark.parametrize("bad", [([1, 0], [1]), ([1, 0.5], [1, 1])])
def test_parity_rejects_unpaired_or_non_binary_scores(bad):
    with pytest.raises(ValueError):
        parity(*bad)
