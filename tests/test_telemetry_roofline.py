from __future__ import annotations

import subprocess
import sys
import time

import pytest

from studykit.engine.roofline import copy_bandwidth_gbps, roofline
from studykit.engine.telemetry import Telemetry, chart


def test_roofline_hand_computed():
    # 270 MB of weights read every 41.5 ms: 6.506 GB/s against 26 GB/s -> 25.02 %
    r = roofline(270_000_000, 0.0415, 26.0)
    assert r["achieved_gbps"] == pytest.approx(270 / 41.5)
    assert r["efficiency_percent"] == pytest.approx(100 * 270 / 41.5 / 26)
    assert r["bound_decode_ms_per_token"] == pytest.approx(270 / 26)


def test_copy_probe_reports_plausible_bandwidth():
    r = copy_bandwidth_gbps(size_mb=32, repeats=2)
    assert 0.1 < r["bandwidth_gbps"] < 2000 and r["bytes_moved_per_copy"] == 2 * 32 * 2**20


def test_telemetry_sees_a_busy_child(tmp_path):
    code = "import time\nx = bytearray(200 * 2**20)\nt = time.time()\nwhile time.time() - t < 3: pass\n"
    with Telemetry("cpu", interval_s=0.2, label="busy") as tel:
        proc = subprocess.Popen([sys.executable, "-c", code])
        proc.wait()
        time.sleep(0.3)
    s = tel.summary()
    assert s["samples"] >= 10
    assert s["max_cpu_percent"] > 50 and s["max_rss_mib"] > 150
    assert tel.series[-1]["processes"] == 0  # the child is gone at the end
    assert chart([tel.to_dict()], tmp_path / "t.png") and (tmp_path / "t.png").stat().st_size > 1000
