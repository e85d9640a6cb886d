from __future__ import annotations

import math

import pytest

from studykit.stats import aggregate, mean_ci95, t975


def test_ci_hand_computed():
    # values 10, 12, 14: mean 12, sd 2, n 3, t(0.975, 2) = 4.303 -> half width 4.303 * 2 / sqrt(3) = 4.9687
    ci = mean_ci95([10, 12, 14])
    assert ci["mean"] == 12 and ci["stdev"] == pytest.approx(2.0) and ci["n"] == 3
    assert ci["ci95_half_width"] == pytest.approx(4.303 * 2 / math.sqrt(3))
    assert ci["ci95_low"] == pytest.approx(12 - 4.9687, abs=1e-3)


def test_ci_two_values_and_single():
    ci = mean_ci95([1.0, 3.0])  # sd sqrt(2), t(1) = 12.706 -> half = 12.706 * sqrt(2)/sqrt(2) = 12.706
    assert ci["ci95_half_width"] == pytest.approx(12.706)
    one = mean_ci95([5.0])
    assert one["mean"] == 5.0 and one["ci95_low"] is None


def test_t_table_edges():
    assert t975(1) == 12.706 and t975(30) == 2.042
    assert 1.96 < t975(60) < 2.042 and t975(1000) == pytest.approx(1.95996, abs=1e-4)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t975(0)
    with pytest.raises(ValueError):
        mean_ci95([])


def test_aggregate_skips_non_numbers():
    out = aggregate([{"a": 1, "b": "x"}, {"a": 3, "b": None}], ["a", "b"])
    assert set(out) == {"a"} and out["a"]["mean"] == 2


def test_vllm_seconds_is_the_union_of_command_intervals():
    from studykit.runner.execute import union_seconds

    # A bench (2..5) inside a server's lifetime (0..10) is not counted twice; a later command adds its own time.
    assert union_seconds([(0, 10), (2, 5), (8, 12), (20, 21)]) == 13
    assert union_seconds([]) == 0
