"""End to end on CPU with real vLLM: the latency, throughput and serve notebooks through `studykit run` with
tiny sizes, and a server killed mid-bench. Run under `flock /tmp/studykit-vllm.lock`."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import run_cli, tiny_study

TINY = {"stages": ["latency", "throughput", "serve"],
        "latency": {"input_len": 8, "output_len": 8, "batch_size": 1, "num_iters_warmup": 1, "num_iters": 2},
        "throughput": {"input_len": 8, "output_len": 8, "num_prompts": 4},
        "serve": {"input_len": 8, "output_len": 8, "num_prompts": 4, "request_rates": [float("inf"), 4],
                  "num_warmups": 1, "goodput": {"ttft_ms": 60000}}}


def load(path):
    return json.loads(Path(path).read_text())


def test_perf_stages_e2e(tmp_path, default_model_dir, no_vllm_left):
    p = tiny_study(tmp_path, TINY)
    r = run_cli("run", str(p), env={"STUDYKIT_OUTPUTS": str(tmp_path / "o"), "MPLBACKEND": "agg"})
    (run,) = list((tmp_path / "o").glob("*/*/run.json"))
    run_dir = run.parent
    info = load(run)
    statuses = {s: v["status"] for s, v in info["stages"].items()}
    assert r.returncode == 0 and statuses == dict.fromkeys(TINY["stages"], "passed"), (r.stdout[-3000:], r.stderr[-3000:])

    lat = load(run_dir / "results" / "latency.json")
    raw_full = load(run_dir / "raw" / "latency" / "latency.json")
    raw_one = load(run_dir / "raw" / "latency" / "prefill.json")
    assert lat["avg_latency"] == raw_full["avg_latency"] and lat["p99_latency_s"] == raw_full["percentiles"]["99"]
    assert lat["decode_ms_per_token"] == pytest.approx(
        (raw_full["avg_latency"] - raw_one["avg_latency"]) / 7 * 1000)
    assert lat["checks"] and all(c["status"] == "passed" for c in lat["checks"])
    assert lat["roofline"]["efficiency_percent"] > 0 and lat["roofline"]["limit"]["bandwidth_gbps"] > 0
    assert all(t["series"] for t in lat["telemetry"]) and max(
        s["rss_mib"] for s in lat["telemetry"][0]["series"]) > 100  # the engine's memory was seen

    tp = load(run_dir / "results" / "throughput.json")
    raw_tp = load(run_dir / "raw" / "throughput" / "throughput.json")
    for k in ("requests_per_second", "tokens_per_second", "total_num_tokens", "elapsed_time"):
        assert tp[k] == raw_tp[k]
    assert tp["total_num_tokens"] == 4 * 16 and tp["total_output_tokens"] == 32
    printed = tp["vllm_printed"]
    assert (printed["total_prompt_tokens"], printed["total_output_tokens"]) == (32, 32)
    assert printed["output_tokens_per_s"] == pytest.approx(tp["output_tokens_per_s"], abs=0.006)

    sv = load(run_dir / "results" / "serve.json")
    assert [x["request_rate"] for x in sv["points"]] == ["inf", "4"]
    for run_rec in sv["runs"]:
        raw = load(run_rec["raw"])
        for k in ("request_throughput", "output_throughput", "mean_ttft_ms", "p99_tpot_ms", "completed",
                  "request_goodput"):
            assert run_rec[k] == raw[k], k
        assert raw["completed"] == 4 and raw["failed"] == 0
    assert all(c["status"] == "passed" for c in sv["checks"])
    for point in sv["points"]:  # one repeat: the point's "mean" is vLLM's own number
        (run_rec,) = [r for r in sv["runs"] if r["name"] in point["runs"]]
        assert point["metrics"]["p99_ttft_ms"] == {"mean": run_rec["p99_ttft_ms"], "n": 1, "ci95_low": None,
                                                   "ci95_high": None, "ci95_half_width": None, "stdev": None}
    # one server for all points
    cmds = [json.loads(x) for x in (run_dir / "commands.jsonl").read_text().splitlines()]
    serve_cmds = [c for c in cmds if c["stage"] == "serve"]
    assert sum(" serve " in f" {c['command']} " and "bench" not in c["command"] for c in serve_cmds) == 1
    charts = sorted(x.name for x in (run_dir / "charts").glob("*.png"))
    for name in ("latency-latencies", "latency-telemetry", "throughput-telemetry", "serve-throughput-vs-rate",
                 "serve-latency-vs-rate", "serve-ttft-over-time", "serve-tradeoff", "serve-telemetry"):
        assert f"{name}.png" in charts


def test_server_dies_mid_bench(tmp_path, default_model_dir, no_vllm_left):
    from studykit.bench.serve import run_serve
    from studykit.stage import StageFailed, open_stage

    p = tiny_study(tmp_path, {"serve": {"input_len": 8, "output_len": 64, "num_prompts": 8,
                                        "request_rates": [float("inf"), 1.0], "num_warmups": 0}})
    run_dir = tmp_path / "run"
    ctx = open_stage("serve", str(run_dir), str(p))
    first = ctx.raw_dir / "rate-inf-rep-1.json"
    killed = {}

    def killer():
        # let the first point finish, then kill the server while the second (8 requests at 1/s) is running
        deadline = time.monotonic() + 300
        while not first.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)
        (pid_file,) = ctx.layout.pids.glob("*.pid")  # the stage's own server
        killed["pid"] = int(pid_file.read_text().split()[0])
        os.killpg(killed["pid"], signal.SIGKILL)

    result = {}
    threading.Thread(target=killer, daemon=True).start()
    with pytest.raises(StageFailed):
        try:
            run_serve(ctx, result)
        except Exception as err:
            ctx.fail(err, partial=result)
    assert killed, "the server was never killed: the first point did not finish"
    doc = load(run_dir / "results" / "serve.json")
    assert doc["status"] == "failed"
    assert "died" in doc["error"] and "last lines of" in doc["error"]
    # the first point survived in the results and on disk
    assert [r["name"] for r in doc["runs"]] == ["rate-inf-rep-1"] and doc["runs"][0]["completed"] == 8
    assert first.is_file() and (ctx.raw_dir / "bench-serve-rate-1-rep-1.log").is_file()
