"""NPU telemetry in the CPU sampler: recorded `npu-smi info` outputs (tests/data/ascend/, real hosts) replayed by a
fake `npu-smi` on PATH, one output per call, while the CPU part samples real processes; ends with a real
`vllm bench latency` on CPU sampled that way."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from datetime import timezone
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, tiny_study
from fake_npu_smi import calls, install_fake_npu_smi

from studykit.engine.telemetry import NPU_GIVE_UP_AFTER, Telemetry, chart

ASCEND = ROOT / "tests" / "data" / "ascend"
EIGHT_910B3 = ASCEND / "npu-smi-info-8x910b3-busy-container-3998.txt"  # vllm-ascend #3998
ONE_910B2_BUSY = ASCEND / "npu-smi-info-910b2-busy-5707-head.txt"  # vllm-ascend #5707
A3_WIDE = ASCEND / "npu-smi-info-a3-26.0rc2-wide-12980-head.txt"  # vllm-ascend #12980
NPU_KEY_PREFIX = "npu"


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir


def wait_for(tel: Telemetry, samples: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(tel.series) < samples and time.monotonic() < deadline:
        time.sleep(0.02)


def npu_keys(sample: dict) -> set[str]:
    return {k for k in sample if k.startswith(NPU_KEY_PREFIX)}


def test_each_call_is_reported_as_printed_per_chip(fake_bin, tmp_path):
    # Two different hosts' outputs in turn: the sampler reports what each call printed, chip by chip.
    install_fake_npu_smi(fake_bin, [EIGHT_910B3, ONE_910B2_BUSY])
    with Telemetry("npu", interval_s=0.05, label="serve") as tel:
        wait_for(tel, 4)
    assert not tel.errors, tel.errors
    first, later = tel.series[0], tel.series[-1]
    assert {"cpu_percent", "rss_mib", "processes"} <= set(first)  # the CPU part, in the same sample
    assert npu_keys(first) == {f"npu{i}_0_{m}" for i in range(8) for m in ("hbm_used_mb", "aicore_percent", "power_w")}
    assert (first["npu0_0_hbm_used_mb"], first["npu0_0_aicore_percent"], first["npu0_0_power_w"]) == (4487, 0, 94.3)
    assert first["npu7_0_hbm_used_mb"] == 4482
    assert (later["npu0_0_hbm_used_mb"], later["npu0_0_power_w"]) == (59891, 99.6)
    assert "npu7_0_hbm_used_mb" not in later
    s = tel.summary()
    assert s["max_npu0_0_hbm_used_mb"] == 59891 and 4487 < s["mean_npu0_0_hbm_used_mb"] < 59891
    assert len(calls(fake_bin)) == len(tel.series) and set(calls(fake_bin)) == {"info"}
    png = chart([tel.to_dict()], tmp_path / "npu.png")
    assert png and Path(png).stat().st_size > 1000


def test_power_only_when_reported(fake_bin):
    # A3: the second chip of an NPU prints '-' for power; its HBM and AICore are still sampled.
    install_fake_npu_smi(fake_bin, [A3_WIDE])
    with Telemetry("npu", interval_s=0.05) as tel:
        wait_for(tel, 2)
    sample = tel.series[0]
    assert sample["npu0_0_power_w"] == 162.6 and "npu0_1_power_w" not in sample
    assert (sample["npu0_1_hbm_used_mb"], sample["npu0_1_aicore_percent"]) == (2874, 0)


@pytest.mark.parametrize("sample,exit_code,why", [
    ("npu-smi-info-dcmi-8005-container-2698.txt", 255,
     "exited 255: DrvMngGetConsoleLogLevel failed. (g_conLogLevel=3) / dcmi module initialize failed. ret is -8005"),
    ("npu-smi-info-truncated.txt", 0, "cut short"),
])
def test_failing_npu_smi_is_counted_cpu_goes_on_then_given_up(fake_bin, sample, exit_code, why):
    install_fake_npu_smi(fake_bin, [ASCEND / sample], exit_code=exit_code)
    with Telemetry("npu", interval_s=0.02) as tel:
        wait_for(tel, NPU_GIVE_UP_AFTER + 5)
    assert len(tel.series) >= NPU_GIVE_UP_AFTER + 5 and not any(npu_keys(s) for s in tel.series)
    assert all("cpu_percent" in s for s in tel.series)
    assert len(calls(fake_bin)) == NPU_GIVE_UP_AFTER  # then it is not asked again
    assert why in tel.errors[0] and "not asked again" in tel.errors[-1]
    assert tel.summary()["failed_samples"] == {"npu": NPU_GIVE_UP_AFTER}


def test_npu_smi_missing(tmp_path):
    with Telemetry("npu", interval_s=0.02, npu_smi=[str(tmp_path / "no-such-npu-smi"), "info"]) as tel:
        wait_for(tel, NPU_GIVE_UP_AFTER + 1)
    assert "FileNotFoundError" in tel.errors[0] and tel.series and not any(npu_keys(s) for s in tel.series)


def test_cpu_platform_never_asks_npu_smi(fake_bin):
    install_fake_npu_smi(fake_bin, [EIGHT_910B3])
    with Telemetry("cpu", interval_s=0.02) as tel:
        wait_for(tel, 3)
    assert calls(fake_bin) == [] and not any(npu_keys(s) for s in tel.series)


def test_unknown_platform_named():
    with pytest.raises(ValueError, match="'gpu' is unknown; allowed: cpu, npu"):
        Telemetry("gpu")


@pytest.mark.e2e
def test_real_cpu_bench_sampled_with_replayed_npu_smi(tmp_path, fake_bin, default_model_dir):
    from studykit.engine import cmdline
    from studykit.stages.latency.stage import latency_args
    from studykit.params import load_study

    study = load_study(tiny_study(tmp_path, {"latency": {"input_len": 8, "output_len": 8, "batch_size": 1,
                                                          "num_iters_warmup": 1, "num_iters": 2}}))
    out_json = tmp_path / "latency.json"
    argv = cmdline.bench_argv(study, "latency", default_model_dir, latency_args(study.latency, output_json=out_json))
    if shutil.which("flock"):  # one vLLM at a time on a shared machine
        argv = ["flock", "/tmp/studykit-vllm.lock", *argv]
    env = {**os.environ, **cmdline.platform_env(study),
           "PYTHONPATH": f"{ROOT / 'lib'}:{os.environ.get('PYTHONPATH', '')}"}
    install_fake_npu_smi(fake_bin, [EIGHT_910B3, EIGHT_910B3, ONE_910B2_BUSY])
    with Telemetry("npu", interval_s=0.5, label="latency") as tel:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and out_json.is_file(), proc.stderr[-3000:]
    assert not tel.errors, tel.errors
    # every sample holds both parts; npu-smi was asked once per sample
    assert len(tel.series) >= 10 and len(calls(fake_bin)) == len(tel.series)
    assert all("cpu_percent" in s and "npu0_0_hbm_used_mb" in s for s in tel.series)
    s = tel.summary()
    # vLLM really ran in the sampled tree (CPU% is low when other work shares the 2 cores, so the bar is low)
    assert s["max_cpu_percent"] > 10 and s["max_rss_mib"] > 200 and s["max_processes"] >= 1
    assert [x["npu0_0_hbm_used_mb"] for x in tel.series[:3]] == [4487, 4487, 59891]
    assert s["max_npu0_0_hbm_used_mb"] == 59891
    # nothing of the bench is left (its whole tree was this test's child)
    assert not [p for p in psutil.Process().children(recursive=True) if p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE and "vllm" in " ".join(p.cmdline()).lower()]
    print(f"\nreal CPU bench: {len(tel.series)} samples, max cpu {s['max_cpu_percent']} %, "
          f"max rss {s['max_rss_mib']} MiB, python {sys.version.split()[0]}")


def test_engine_window_from_the_recorded_bench_log_and_the_chart_shades_it(tmp_path):
    """The measured part of a bench's telemetry starts at vLLM's init-engine line (engine start-up is shaded
    apart); a log without that line gives no window rather than a guess."""
    from datetime import datetime, timedelta

    from studykit.stages.benchtools import engine_window
    from studykit.evidence.journal import CommandRecord
    from studykit.engine.telemetry import chart

    log = Path(__file__).parent / "data" / "logs" / "startup" / "cpu-bench-latency.log"
    ready_line = next(line for line in log.read_text().splitlines() if "init engine" in line)
    stamp = datetime.strptime(re.search(r"(\d\d-\d\d \d\d:\d\d:\d\d)", ready_line).group(1), "%m-%d %H:%M:%S")
    ready_local = stamp.replace(year=2026).astimezone()
    started = ready_local - timedelta(seconds=31)
    rec = CommandRecord("latency", "bench-latency-latency", [], "", {},
                        started.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"), seconds=60.0, log=str(log))
    window = engine_window(rec)
    assert window["window_s"] == [31.0, 60.0] and "init-engine" in window["window_how"]
    assert engine_window(CommandRecord("x", "y", [], "", {}, rec.started_utc, seconds=60.0,
                                       log=str(tmp_path / "none.log"))) == {}
    series = [{"t_s": t, "cpu_percent": 50.0, "rss_mib": 900.0} for t in range(0, 60, 5)]
    path = chart([{"label": "latency", "series": series, **window}], tmp_path / "t.png")
    assert Path(path).stat().st_size > 0
