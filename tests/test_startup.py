"""Start-up breakdown from vLLM's own log lines, on real CPU logs of this machine and vllm-ascend logs from public
issues (tests/data/logs/startup/README.md says where each comes from)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from studykit.engine.startup import startup_breakdown

LOGS = Path(__file__).parent / "data" / "logs" / "startup"
ROOT = Path(__file__).resolve().parents[1]


def reported(result: dict) -> dict:
    """The timed parts the log reported (the rest must be None); process_first_log_s is tested on its own."""
    return {k: v for k, v in result.items()
            if v is not None and k not in ("log", "process_first_log_s", "process_to_first_log_s")}


def test_cpu_serve_real_gate():
    out = startup_breakdown(LOGS / "cpu-serve-real-gate.log")
    assert reported(out) == {"weights_load_s": 1.59, "model_init_s": 0.291476, "engine_init_s": 10.66,
                             "log_span_end": "application startup complete", "log_span_s": 54.0}


def test_each_process_first_log_line_shows_spawn_and_import_time():
    # vllm serve on CPU: API server, then the engine core process, then its worker, each importing vLLM first
    out = startup_breakdown(LOGS / "cpu-serve-real-gate.log")
    assert out["process_first_log_s"] == {"APIServer": 0.0, "EngineCore": 17.0, "VllmWorker-0": 34.0, "Worker": 34.0}
    assert startup_breakdown(LOGS / "npu-vllm-ascend-1487-qwen3-8b.log")["process_first_log_s"] is None  # no prefixes


def test_cpu_dummy_weights_have_no_weight_loading_line():
    out = startup_breakdown(LOGS / "cpu-serve-dummy-gate.log")
    assert out["weights_load_s"] is None
    assert out["engine_init_s"] == 2.33
    assert out["log_span_s"] == 65.0


def test_cpu_bench_latency_is_ready_at_engine_init():
    out = startup_breakdown(LOGS / "cpu-bench-latency.log")
    assert reported(out) == {"weights_load_s": 0.91, "model_init_s": 0.494265, "engine_init_s": 14.39,
                             "log_span_end": "init engine", "log_span_s": 89.0}


def test_process_to_ready_counts_the_import_time_before_the_first_log_line():
    # commands.jsonl of that run: the real gate started 07:26:27.652 UTC; log stamps are local time of the host
    # (UTC there), so the start is given in this machine's zone to keep the test zone-independent.
    started = datetime(2026, 11, 26, 7, 26, 27, 652000).astimezone()
    out = startup_breakdown(LOGS / "cpu-serve-real-gate.log", started_at=started)
    assert out["process_to_ready_s"] == pytest.approx(74.348)
    assert out["process_to_first_log_s"] == pytest.approx(20.348)  # first stamp 07:26:48
    assert out["process_to_ready_s"] == pytest.approx(out["process_to_first_log_s"] + out["log_span_s"])


@pytest.mark.parametrize("name, expected", [
    ("npu-vllm-ascend-1487-qwen3-8b.log", {"weights_load_s": 5.95, "model_load_gib": 15.2684,
                                           "torch_compile_s": 14.83}),
    ("npu-vllm-ascend-2125-moe-dp4.log", {"weights_load_s": 10.44}),  # 4 engines: the slowest
    ("npu-vllm-ascend-5044-qwen3-8b-eager.log", {"engine_init_s": 1.96, "log_span_end": "init engine",
                                                 "log_span_s": 10.0}),
    ("npu-vllm-ascend-9071-glm5-dp2-tp8.log", {"graph_capture_s": 83.0, "graph_capture_gib": 0.75}),
    ("npu-vllm-ascend-9691-profiling.log", {"profiling_s": 12.74}),
])
def test_vllm_ascend_logs(name, expected):
    assert reported(startup_breakdown(LOGS / name)) == expected


def test_lines_vllm_does_not_print_leave_every_field_none(tmp_path):
    log = tmp_path / "other.log"
    log.write_text("INFO 11-26 07:26:48 [model.py:733] Resolved architecture: LlamaForCausalLM\n"
                   "weights loaded quickly, about 3 seconds\n")
    out = startup_breakdown(log)
    assert all(out[f] is None for f in ("weights_load_s", "model_init_s", "model_load_s", "model_load_gib",
                                        "profiling_s", "torch_compile_s", "graph_capture_s", "graph_capture_gib",
                                        "engine_init_s"))
    assert out["log_span_s"] is None and out["log_span_end"] is None


def test_gpu_wordings_and_compilation_from_the_init_line(tmp_path):
    # Wording of vLLM 0.32.0's gpu_model_runner.py and core.py format strings.
    log = tmp_path / "gpu.log"
    log.write_text(
        "(EngineCore_DP0 pid=441) INFO 11-24 11:43:20 [core.py:93] Initializing a V1 LLM engine\n"
        "(EngineCore_DP0 pid=441) INFO 11-24 11:43:54 [gpu_model_runner.py:3341] Model loading took 2.0513 GiB "
        "memory and 27.200487 seconds\n"
        "(EngineCore_DP0 pid=441) INFO 11-24 11:44:20 [mm_encoder_model_runner.py:95] Encoder graph capturing "
        "finished in 5 secs, took 0.10 GiB (3 graphs)\n"
        "(EngineCore_DP0 pid=441) INFO 11-24 11:44:21 [gpu_model_runner.py:6582] Graph capturing finished in 3 "
        "secs, took 0.49 GiB\n"
        "(EngineCore_DP0 pid=441) INFO 11-24 11:44:21 [core.py:402] init engine (profile, create kv cache, warmup "
        "model) took 25.10 s (compilation: 19.69 s)\n"
        "(APIServer pid=1) INFO 11-24 11:44:25 [entry.py:140] Starting vLLM server on http://0.0.0.0:8000\n")
    out = startup_breakdown(log)
    assert reported(out) == {"model_load_s": 27.200487, "model_load_gib": 2.0513, "graph_capture_s": 3.0,
                             "graph_capture_gib": 0.49, "engine_init_s": 25.1, "torch_compile_s": 19.69,
                             "log_span_end": "starting vllm server", "log_span_s": 65.0}


def test_the_torch_compile_line_wins_over_the_init_line(tmp_path):
    log = tmp_path / "c.log"
    log.write_text("INFO 01-01 00:00:10 [monitor.py:34] torch.compile took 7.50 s in total\n"
                   "INFO 01-01 00:00:20 [core.py:402] init engine (profile, create kv cache, warmup model) took "
                   "12.00 s (compilation: 7.51 s)\n")
    assert startup_breakdown(log)["torch_compile_s"] == 7.5


def test_span_across_new_year(tmp_path):
    log = tmp_path / "ny.log"
    log.write_text("INFO 12-31 23:59:50 [api_utils.py:286] non-default args: {}\n"
                   "INFO 01-01 00:00:15 [entry.py:140] Starting vLLM server on http://127.0.0.1:8000\n")
    assert startup_breakdown(log)["log_span_s"] == 25.0


def test_missing_log_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.log"):
        startup_breakdown(tmp_path / "nope.log")


def test_process_to_ready_is_none_without_a_ready_line():
    started = datetime(2025, 6, 29, 6, 16, 0, tzinfo=timezone.utc)
    out = startup_breakdown(LOGS / "npu-vllm-ascend-1487-qwen3-8b.log", started_at=started)
    assert out["process_to_ready_s"] is None


def _study_speed():
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_speed", ROOT / "benchmarks" / "study_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_speed_counts_engine_starts_and_their_ready_seconds(tmp_path):
    """benchmarks/study_speed.py on a run made of the recorded CPU logs and their commands.jsonl records."""
    import json

    from studykit.evidence.journal import vllm_argv

    speed = _study_speed()
    records = [
        {"stage": "deploy", "label": "real-gate", "argv": vllm_argv("serve", "/m", "--port", "1"), "is_vllm": True,
         "started_utc": "2026-11-26T07:26:27.652Z", "ended_utc": "2026-11-26T07:27:47.688Z", "seconds": 80.036,
         "log": str(LOGS / "cpu-serve-real-gate.log"), "extra": {"ready_seconds": 76.274}},
        {"stage": "latency", "label": "bench-latency-latency", "argv": vllm_argv("bench", "latency", "--model", "/m"),
         "is_vllm": True, "started_utc": "2026-11-26T07:27:49.904Z", "ended_utc": "2026-11-26T07:30:27.770Z",
         "seconds": 157.866, "log": str(LOGS / "cpu-bench-latency.log"), "extra": {}},
        {"stage": "serve", "label": "bench-serve", "argv": vllm_argv("bench", "serve", "--base-url", "x"),
         "is_vllm": True, "started_utc": "2026-11-26T07:31:00.000Z", "ended_utc": "2026-11-26T07:31:10.000Z",
         "seconds": 10.0, "log": None, "extra": {}},
        {"stage": "deploy", "label": "smoke chat", "argv": [], "is_vllm": False, "started_utc": "2026-11-26T07:27:43Z",
         "ended_utc": "2026-11-26T07:27:43Z", "seconds": 0.0, "log": None, "extra": {}},
    ]
    (tmp_path / "commands.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "run.json").write_text(json.dumps({"started_utc": "2026-11-26T07:24:46.426Z", "stages": {
        "deploy": {"status": "passed", "ended_utc": "2026-11-26T07:27:48.220Z", "wall_seconds": 177.268},
        "latency": {"status": "passed", "ended_utc": "2026-11-26T07:30:30.000Z", "wall_seconds": 160.0}}}))
    starts = speed.engine_starts(tmp_path)
    # bench serve is a client of a server: not an engine start
    assert [(s["label"], s["kind"]) for s in starts] == [("real-gate", "serve"), ("bench-latency-latency", "bench latency")]
    assert starts[0]["ready_s"] == 76.274 and starts[0]["weights_load_s"] == 1.59
    started = datetime(2026, 11, 26, 7, 27, 49, 904000, tzinfo=timezone.utc)
    ready_local = datetime(2026, 11, 26, 7, 29, 46).astimezone()  # the init-engine line's stamp, host zone
    assert starts[1]["ready_s"] == pytest.approx((ready_local - started).total_seconds(), abs=1e-3)
    lines: list[str] = []
    figures = speed.report(tmp_path, out=lines.append)
    assert figures["study_wall_s"] == pytest.approx(383.574)  # run start 07:24:46.426 -> last command end 07:31:10
    assert figures["startup_s"] == pytest.approx(76.274 + starts[1]["ready_s"])
    assert figures["overhead"] == pytest.approx(160.0 / (157.866))
    assert any(line.startswith("engine starts") and "<= 6" in line for line in lines)


def test_process_to_ready_across_new_year(tmp_path):
    log = tmp_path / "ny.log"
    log.write_text("INFO 12-31 23:59:58 [api_utils.py:286] non-default args: {}\n"
                   "INFO 01-01 00:00:30 [entry.py:140] Starting vLLM server on http://127.0.0.1:8000\n")
    started = datetime(2026, 12, 31, 23, 59, 40).astimezone()
    assert startup_breakdown(log, started_at=started)["process_to_ready_s"] == 50.0


def test_process_to_ready_on_a_leap_day(tmp_path):
    log = tmp_path / "leap.log"
    log.write_text("INFO 02-29 10:00:00 [api_utils.py:286] non-default args: {}\n"
                   "INFO 02-29 10:00:20 [entry.py:140] Starting vLLM server on http://127.0.0.1:8000\n")
    started = datetime(2028, 2, 29, 9, 59, 50).astimezone()
    assert startup_breakdown(log, started_at=started)["process_to_ready_s"] == 30.0
