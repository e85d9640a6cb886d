"""The machine probe: real figures on this host's cores, bad arguments named."""

from __future__ import annotations

import os

import pytest

from studykit.engine.machine_probe import machine_probe, matmul_gflops


def test_probe_measures_both_on_the_given_cores_and_restores_affinity():
    before = os.sched_getaffinity(0)
    probe = machine_probe([min(before)])
    assert probe["cores"] == [min(before)] and probe["threads"] == 1
    assert probe["bandwidth_gbps"] > 0 and probe["compute_gflops"] > 0
    # the matmul's own timing: 2 n^3 flops over its best time is what it reports (by hand from its fields)
    assert probe["matmul"]["gflops"] >= probe["matmul"]["median_gflops"] > 0
    assert os.sched_getaffinity(0) == before


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="threads=0"):
        matmul_gflops(0)
    with pytest.raises(ValueError, match="dtype 'float8'"):
        matmul_gflops(1, "float8")
