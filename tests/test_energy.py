"""Energy per token: on npu-smi power samples recorded from real hosts (tests/data/ascend/, replayed by a fake
npu-smi through the real telemetry sampler), and on RAPL counters of a fake sysfs tree. Expected values are
computed here by hand or with numpy, not with studykit.energy."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from fake_npu_smi import install_fake_npu_smi
from studykit.energy import EnergyError, RaplWindow, rapl_delta_uj, rapl_not_run, window_energy
from studykit.engine.telemetry import Telemetry
from studykit.evidence.ascend import parse_npu_smi_info

ASCEND = Path(__file__).parent / "data" / "ascend"
# npu 0 chip 0 power on three real hosts: 99.6 W (910B2), 78.0 W (910ProB), 73.4 W (8-card DDR table)
RECORDED = [ASCEND / "npu-smi-info-910b2-busy-5707-head.txt", ASCEND / "npu-smi-info-910probe-ddr-1047-head.txt",
            ASCEND / "npu-smi-info-8card-busy-ddr-mindcluster.txt"]


def samples_at(times: list[float], files: list[Path]) -> list[dict]:
    """Telemetry-shaped samples: the recorded tables parsed by the kit's npu-smi parser, at chosen times."""
    out = []
    for t, f in zip(times, files):
        s = {"t_s": t}
        for chip in parse_npu_smi_info(f.read_text()):
            if chip.get("power_w") is not None:
                s[f"npu{chip['npu_id']}_{chip['chip_id']}_power_w"] = chip["power_w"]
        out.append(s)
    return out


def test_hand_computed_window():
    series = samples_at([0.0, 0.5, 1.0], RECORDED[:1] + RECORDED[1:2] + RECORDED[:1])
    # npu0_0: 99.6, 78.0, 99.6 -> 0.5*(99.6+78)/2 + 0.5*(78+99.6)/2 = 88.8 J; npu1_0 only in the 910ProB table
    e = window_energy(series, [0.0, 1.0], output_tokens=40, idle_power_w=50.0)
    assert e.domains == ["npu0_0_power_w", "npu1_0_power_w"]
    assert e.joules == pytest.approx(88.8)
    assert e.coverage == pytest.approx(1.0) and e.samples == 3 and e.interval_s == pytest.approx(0.5)
    assert e.joules_per_token == pytest.approx(88.8 / 40) and e.tokens_per_joule == pytest.approx(40 / 88.8)
    assert e.dynamic_joules == pytest.approx(88.8 - 50.0) and e.dynamic_joules_per_token == pytest.approx(38.8 / 40)


def test_window_edges_interpolated_and_coverage():
    # samples at 0, 1, 2, 3 s (99.6, 78.0, 73.4, 99.6 W on npu0_0); window [0.5, 2.5]
    series = samples_at([0.0, 1.0, 2.0, 3.0], [RECORDED[0], RECORDED[1], RECORDED[2], RECORDED[0]])
    series = [{k: v for k, v in s.items() if k in ("t_s", "npu0_0_power_w")} for s in series]
    e = window_energy(series, [0.5, 2.5])
    t = np.array([0.5, 1.0, 2.0, 2.5])
    p = np.interp(t, [0.0, 1.0, 2.0, 3.0], [99.6, 78.0, 73.4, 99.6])
    assert e.joules == pytest.approx(float(np.trapezoid(p, t)))
    assert e.coverage == pytest.approx(1.0) and e.samples == 2
    # no sample after the window end: the energy stops at the last sample and coverage says so
    e2 = window_energy(series[:3], [0.5, 2.5])
    assert e2.sampled_s == pytest.approx(1.5) and e2.coverage == pytest.approx(0.75)
    assert e2.joules == pytest.approx(float(np.trapezoid(p[:3], t[:3])))


def test_replayed_npu_smi_through_the_sampler(tmp_path, monkeypatch):
    install_fake_npu_smi(tmp_path / "bin", RECORDED + RECORDED + RECORDED)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    with Telemetry("npu", interval_s=0.05) as tel:
        deadline = time.monotonic() + 20
        while len([s for s in tel.series if "npu0_0_power_w" in s]) < 9 and time.monotonic() < deadline:
            time.sleep(0.05)
    # npu 0 chip 0 is in every recorded table; the other chips are in one host's table only
    series = [{"t_s": s["t_s"], "npu0_0_power_w": s["npu0_0_power_w"]} for s in tel.series if "npu0_0_power_w" in s]
    assert len(series) >= 9 and len({s["npu0_0_power_w"] for s in series}) == 3
    start, end = series[1]["t_s"], series[-2]["t_s"]
    e = window_energy(series, [start, end], output_tokens=100)
    # independent: numpy over the samples inside the window (it starts and ends on a sample)
    pts = [(s["t_s"], s["npu0_0_power_w"]) for s in series if start <= s["t_s"] <= end]
    expected = float(np.trapezoid([p for _, p in pts], [t for t, _ in pts]))
    assert e.joules == pytest.approx(expected, rel=1e-9)
    assert e.coverage == pytest.approx(1.0)
    assert e.samples == len(series) - 2
    assert e.interval_s == pytest.approx(float(np.median(np.diff([s["t_s"] for s in series[1:-1]]))))
    assert e.joules_per_token == pytest.approx(expected / 100)


def test_bad_windows():
    series = samples_at([0.0, 1.0], RECORDED[:2])
    with pytest.raises(EnergyError, match="end must be after the start"):
        window_energy(series, [1.0, 1.0])
    with pytest.raises(EnergyError, match="fewer than two power samples"):
        window_energy(series, [5.0, 6.0])
    with pytest.raises(EnergyError, match="no npu<N>_<chip>_power_w"):
        window_energy([{"t_s": 0.0, "cpu_percent": 10.0}], [0.0, 1.0])
    with pytest.raises(EnergyError, match="output_tokens 0"):
        window_energy(series, [0.0, 1.0], output_tokens=0)


# --- RAPL on a fake sysfs tree ---

def rapl_tree(root: Path, domains: dict[str, tuple[int, int]]) -> Path:
    """domains: name -> (energy_uj, max_energy_range_uj); a subdomain intel-rapl:0:0 is added under each package
    (as Linux lays them out) and must not be summed."""
    for name, (uj, max_range) in domains.items():
        d = root / name
        d.mkdir(parents=True)
        (d / "energy_uj").write_text(f"{uj}\n")
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
        (d / "name").write_text("package-0\n")
        sub = root / f"{name}:0"
        sub.mkdir()
        (sub / "energy_uj").write_text("5\n")
    return root


def test_rapl_with_wraparound(tmp_path):
    root = rapl_tree(tmp_path / "powercap", {"intel-rapl:0": (262_143_000_000, 262_143_328_850),
                                             "intel-rapl:1": (1_000_000, 262_143_328_850)})
    assert rapl_not_run(root) is None
    with RaplWindow(root) as w:
        # package 0 wraps past its range; package 1 gains 2.5 J
        (root / "intel-rapl:0" / "energy_uj").write_text("4000000")
        (root / "intel-rapl:1" / "energy_uj").write_text("3500000")
        (root / "intel-rapl:0:0" / "energy_uj").write_text("999999999")
    e = w.energy(output_tokens=10)
    wrapped_uj = 262_143_328_850 - 262_143_000_000 + 4_000_000  # by hand: to the top of the range, then from 0
    assert e.domains == ["intel-rapl:0", "intel-rapl:1"]
    assert e.joules == pytest.approx((wrapped_uj + 2_500_000) / 1e6)
    assert e.joules_per_token == pytest.approx(e.joules / 10) and e.coverage == 1.0


def test_rapl_delta_cannot_unwrap_without_range():
    assert rapl_delta_uj(10, 25, 0) == 15
    with pytest.raises(EnergyError, match="went down"):
        rapl_delta_uj(25, 10, 0)


def test_rapl_not_run_reasons(tmp_path):
    assert rapl_not_run(tmp_path / "nothing") == f"this host exposes no RAPL power: {tmp_path / 'nothing'} does not exist"
    (tmp_path / "powercap" / "dtpm").mkdir(parents=True)
    assert rapl_not_run(tmp_path / "powercap") == (
        f"this host exposes no RAPL power: {tmp_path / 'powercap'} has no intel-rapl domain")
    with pytest.raises(EnergyError, match="no intel-rapl domain"):
        RaplWindow(tmp_path / "powercap")
