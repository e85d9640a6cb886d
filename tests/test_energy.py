"""Energy per token: on npu-smi power samples recorded from real hosts (tests/data/ascend/, replayed by a fake
npu-smi through the real telemetry sampler), and on RAPL counters of a fake sysfs tree (read around a window, or
sampled into a telemetry series, wraps included); the idle power the runner records and the stages read. Expected
values are computed here by hand or with numpy, not with studykit.energy."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from fake_npu_smi import install_fake_npu_smi
from studykit.energy import (EnergyError, RaplWindow, idle_power, rapl_delta_uj, rapl_not_run, telemetry_energy,
                              window_energy)
from studykit.engine.telemetry import Telemetry
from studykit.evidence.ascend import parse_npu_smi_info

ASCEND = Path(__file__).parent / "data" / "ascend"
# npu 0 chip 0 power on three real hosts: 99.6 W (910B2), 78.0 W (910ProB), 73.4 W (8-card DDR table)
RECORDED = [ASCEND / "npu-smi-info-910b2-busy-5707-head.txt", ASCEND / "npu-smi-info-910probe-ddr-1047-head.txt",
            ASCEND / "npu-smi-info-8card-busy-ddr-mindcluster.txt"]


NO_RAPL = "this host exposes no RAPL power: /sys/class/powercap does not exist"
WINDOW_UNKNOWN = "the measured window is not known (window_s missing: its start or end was not found)"
NO_IDLE = ("not measured: the runner measures it before any engine starts, and this stage ran without it "
           "(results/idle_power.json does not exist)")
HOST_HAS_NO_RAPL = pytest.mark.skipif(rapl_not_run() != NO_RAPL, reason="this host exposes RAPL")


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


# npu 0 chip 0 of the recorded tables at 0, 1, 2, 3, 4 s: 99.6, 78.0, 73.4, 99.6, 78.0 W
POWER_TABLES = [RECORDED[0], RECORDED[1], RECORDED[2], RECORDED[0], RECORDED[1]]
# over [0.25, 3.5] s, by hand: the start interpolates to 99.6 + (78 - 99.6) x 0.25 = 94.2 W, the end to
# (99.6 + 78) / 2 = 88.8 W; trapezoids 0.75 x (94.2 + 78) / 2 + (78 + 73.4) / 2 + (73.4 + 99.6) / 2
# + 0.5 x (99.6 + 88.8) / 2 = 64.575 + 75.7 + 86.5 + 47.1
HAND_WINDOW, HAND_JOULES = [0.25, 3.5], 273.875


def power_telemetry(label: str, tokens: int, window_s: list[float] = HAND_WINDOW, idle_power_w: float | None = None,
                    scale: float = 1.0) -> dict:
    """A bench's telemetry entry with the recorded npu-smi power of npu 0 chip 0 (x scale) at 0..4 s, and the
    energy row of its window as the bench stages add it."""
    series = [{"t_s": s["t_s"], "npu0_0_power_w": s["npu0_0_power_w"] * scale}
              for s in samples_at([0.0, 1.0, 2.0, 3.0, 4.0], POWER_TABLES)]
    entry = {"label": label, "platform": "npu", "series": series, "window_s": list(window_s), "window_how": "test"}
    entry.update(telemetry_energy(entry, tokens, idle_power_w))
    return entry


# Wrong inputs each bench stage's energy check must fail on: tokens the stage did not count, no energy, a window
# sampled over 3.5 of its 7.75 s.
WRONG_ENERGY = {"token count not the stage's": {"extra_tokens": 1}, "zero joules": {"scale": 0.0},
                "coverage below 0.8": {"window_s": [0.25, 8.0]}}


def wrong_power_telemetry(label: str, tokens: int, wrong: str) -> dict:
    how = WRONG_ENERGY[wrong]
    return power_telemetry(label, tokens + how.get("extra_tokens", 0), how.get("window_s", HAND_WINDOW),
                           scale=how.get("scale", 1.0))


def no_rapl_telemetry(label: str, tokens: int) -> dict:
    """A CPU bench's telemetry entry on a host without RAPL, with its energy row (the reason)."""
    entry = {"label": label, "platform": "cpu", "series": [{"t_s": 0.0, "cpu_percent": 1.0}], "window_s": [0.0, 1.0]}
    entry.update(telemetry_energy(entry, tokens))
    return entry


# The bench stages' energy table as the report shows power_telemetry's window (273.875 J over 3.25 s, one sample a
# second, idle 45 W): the cells every stage shares, after its J/token, tokens/J and dynamic J/token.
ENERGY_HEADERS = {"en": ["Window", "J per output token", "Output tokens per J",
                         "Dynamic J per token (idle power taken out)", "Mean power (W)", "Sampling interval (s)",
                         "Coverage", "Source / why not measured"],
                  "zh": ["窗口", "单 token 能耗 (J)", "每焦耳输出 token 数", "单 token 动态能耗 (J,扣除空闲功率)",
                         "平均功率 (W)", "采样间隔 (s)", "覆盖率", "来源 / 未测原因"]}
IDLE_LINE = {"en": "Idle power (before any engine started): 45.000 W", "zh": "空闲功率(任何引擎启动前):45.000 W"}
NOT_RUN_LINE = {"en": f"Energy: not measured. {NO_RAPL}", "zh": "能耗:未测量。本机未提供 RAPL 功率:/sys/class/powercap 不存在"}


def energy_row(lang: str, label: str, per_token: str, per_joule: str, dynamic: str) -> dict:
    # 273.875 J / 3.25 s = 84.269 W
    return dict(zip(ENERGY_HEADERS[lang], [label, per_token, per_joule, dynamic, "84.269", "1.000", "100.0 %",
                                           "npu-smi power_w (npu0_0_power_w)"]))


def energy_section(tmp_path: Path, stage: str, result, lang: str) -> tuple[list[dict] | None, str]:
    """The stage's energy table (rows as {header: cell}; None when the section says it in one line) and its
    section's text."""
    from conftest import stage_section
    from test_report import tables

    text = stage_section(tmp_path, stage, result, lang)
    found = [t for t in tables(text) if t and list(t[0]) == ENERGY_HEADERS[lang]]
    return (found[0] if found else None), text


def test_power_telemetry_by_hand():
    e = power_telemetry("x", 160, idle_power_w=45.0)["energy"]
    assert e["joules"] == pytest.approx(HAND_JOULES) and e["sampled_s"] == pytest.approx(3.25)
    assert e["dynamic_joules"] == pytest.approx(HAND_JOULES - 45.0 * 3.25)
    low = wrong_power_telemetry("x", 160, "coverage below 0.8")["energy"]
    assert low["coverage"] == pytest.approx(3.75 / 7.75)


def test_bad_windows():
    series = samples_at([0.0, 1.0], RECORDED[:2])
    with pytest.raises(EnergyError, match="end must be after the start"):
        window_energy(series, [1.0, 1.0])
    with pytest.raises(EnergyError, match="fewer than two power samples"):
        window_energy(series, [5.0, 6.0])
    with pytest.raises(EnergyError, match="no npu<N>_<chip>_power_w nor rapl_<domain>_uj"):
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


# --- RAPL counters sampled into a telemetry series ---

RANGE = 262_143_328_850  # max_energy_range_uj of a real package domain


def rapl_series(times: list[float], counters: list[int], domain: str = "intel-rapl:0") -> list[dict]:
    return [{"t_s": t, f"rapl_{domain}_uj": uj} for t, uj in zip(times, counters)]


def test_rapl_samples_with_a_wrap_and_edges_interpolated():
    # the counter wraps between 1.0 and 1.5 s; unwrapped by hand, in µJ since the first sample:
    counters = [RANGE - 3_000_000, RANGE - 1_000_000, RANGE - 200_000, 1_300_000, 3_300_000]
    unwrapped = [0, 2_000_000, 2_800_000, 2_800_000 + 200_000 + 1_300_000, 4_300_000 + 2_000_000]
    times = [0.0, 0.5, 1.0, 1.5, 2.0]
    series = rapl_series(times, counters)
    e = window_energy(series, [0.25, 1.75], output_tokens=30,
                      max_energy_range_uj={"intel-rapl:0": RANGE})
    at = np.interp([0.25, 1.75], times, unwrapped)
    assert e.source == "rapl" and e.domains == ["intel-rapl:0"]
    assert e.joules == pytest.approx((at[1] - at[0]) / 1e6)  # 5.3 J - 1 J
    assert e.joules == pytest.approx(4.3)
    assert e.coverage == pytest.approx(1.0) and e.samples == 3 and e.interval_s == pytest.approx(0.5)
    assert e.mean_power_w == pytest.approx(4.3 / 1.5) and e.joules_per_token == pytest.approx(4.3 / 30)
    # past the last sample: only the sampled span, and coverage says how much
    e2 = window_energy(series, [0.25, 3.0], max_energy_range_uj={"intel-rapl:0": RANGE})
    assert e2.joules == pytest.approx((unwrapped[-1] - at[0]) / 1e6)
    assert e2.sampled_s == pytest.approx(1.75) and e2.coverage == pytest.approx(1.75 / 2.75)
    # a wrap without the range to undo it is named, not guessed
    with pytest.raises(EnergyError, match="went down"):
        window_energy(series, [0.25, 1.75])


def test_rapl_domains_are_summed():
    times = [0.0, 1.0, 2.0]
    series = [{**a, **b} for a, b in zip(rapl_series(times, [0, 1_000_000, 3_000_000]),
                                         rapl_series(times, [10, 500_010, 1_000_010], "intel-rapl:1"))]
    e = window_energy(series, [0.0, 2.0])
    assert e.domains == ["intel-rapl:0", "intel-rapl:1"] and e.joules == pytest.approx(3.0 + 1.0)


def test_rapl_too_few_reads_in_the_window():
    with pytest.raises(EnergyError, match="fewer than two RAPL counter reads"):
        window_energy(rapl_series([0.0, 1.0], [0, 5]), [2.0, 3.0])


def test_real_sampler_reads_a_fake_powercap_and_the_window_gets_its_energy(tmp_path):
    root = rapl_tree(tmp_path / "powercap", {"intel-rapl:0": (RANGE - 1_500_000, RANGE)})
    counter = root / "intel-rapl:0" / "energy_uj"
    written = counter.with_name("energy_uj.next")
    key = "rapl_intel-rapl:0_uj"
    with Telemetry("cpu", interval_s=0.05, powercap=root) as tel:
        deadline = time.monotonic() + 20
        step = 0
        # 0.5 J per step, past the top of the range on the fourth
        while sum(key in s for s in tel.series) < 12 and time.monotonic() < deadline:
            step += 1
            # replaced whole, as sysfs shows it: write_text truncates first, and a read in between sees no number
            written.write_text(str((RANGE - 1_500_000 + 500_000 * step) % RANGE))
            os.replace(written, counter)
            time.sleep(0.07)
    doc = tel.to_dict()
    assert doc["rapl_max_energy_range_uj"] == {"intel-rapl:0": RANGE}
    pts = [(s["t_s"], s[key]) for s in doc["series"] if key in s]
    assert len(pts) >= 12 and "mean_" + key not in doc["summary"]  # a cumulative counter has no mean
    assert any(b < a for (_, a), (_, b) in zip(pts, pts[1:]))  # the sampler saw the wrap
    start, end = pts[1][0], pts[-2][0]
    # independent: unwrap by hand (add the range after each drop), difference between two samples
    total, unwrapped = 0, [0]
    for (_, a), (_, b) in zip(pts, pts[1:]):
        total += b - a if b >= a else b + RANGE - a
        unwrapped.append(total)
    row = telemetry_energy({**doc, "window_s": [start, end]}, output_tokens=7)
    assert row["energy"]["joules"] == pytest.approx((unwrapped[-2] - unwrapped[1]) / 1e6)
    assert row["energy"]["output_tokens"] == 7 and row["energy"]["coverage"] == pytest.approx(1.0)


@HOST_HAS_NO_RAPL
def test_no_rapl_here_every_row_says_why():
    with Telemetry("cpu", interval_s=0.05) as tel:
        time.sleep(0.2)
    doc = {**tel.to_dict(), "window_s": [0.0, 0.2]}
    assert "rapl_max_energy_range_uj" not in doc
    assert telemetry_energy(doc, 10) == {"energy_not_run": NO_RAPL}
    # without power samples the missing window is not the reason: the host is
    assert telemetry_energy({**doc, "window_s": None}, 10) == {"energy_not_run": NO_RAPL}
    t0 = time.monotonic()
    assert idle_power("cpu") == {"idle_not_run": NO_RAPL}
    assert time.monotonic() - t0 < 1.0  # nothing to wait for


def test_window_not_known_is_the_reason_when_power_was_sampled():
    entry = {**power_telemetry("x", 10), "window_s": None}
    assert telemetry_energy(entry, 10) == {"energy_not_run": WINDOW_UNKNOWN}


def test_idle_power_on_npu_from_the_replayed_npu_smi(tmp_path, monkeypatch):
    install_fake_npu_smi(tmp_path / "bin", [RECORDED[0]])  # 99.6 W on npu 0 chip 0, every call
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert idle_power("npu", seconds=0.6) == {"idle_power_w": pytest.approx(99.6)}


# --- the idle power the runner records, as a stage reads it ---

def test_stage_reads_the_runners_idle_power_or_says_why(tmp_path):
    from conftest import tiny_study
    from studykit.evidence.rundir import write_json
    from studykit.runner.context import open_stage

    ctx = open_stage("latency", str(tmp_path / "run"), str(tiny_study(tmp_path)))
    assert ctx.idle_power() == {"idle_not_run": NO_IDLE}
    write_json(ctx.layout.results / "idle_power.json", {"idle_power_w": 41.5})
    assert ctx.idle_power() == {"idle_power_w": 41.5}
    # a resume measured again: the newest is the one its stages read
    write_json(ctx.layout.results / "idle_power.resume-20260101T000000Z.json", {"idle_power_w": 40.0})
    assert ctx.idle_power() == {"idle_power_w": 40.0}


@HOST_HAS_NO_RAPL
def test_runner_records_the_idle_power_once_before_the_stages(tmp_path):
    from conftest import tiny_study
    from studykit.evidence.rundir import RunLayout, read_json
    from studykit.runner.execute import _measure_idle_power

    from studykit.params import load_study

    layout = RunLayout(tmp_path / "run")
    layout.make_dirs()
    study = load_study(tiny_study(tmp_path))
    said = []
    _measure_idle_power(layout, study, resume=False, log=said.append)
    assert read_json(layout.results / "idle_power.json") == {"idle_not_run": NO_RAPL}
    assert said == [f"  idle power not measured: {NO_RAPL}"]
    _measure_idle_power(layout, study, resume=True, log=said.append)  # beside the first, never over it
    assert len(list(layout.results.glob("idle_power.resume-*.json"))) == 1
