"""Writes the fixture run directories the report tests read: complete/, failed/ and reference/.

    .venv/bin/python tests/data/runs/make_fixtures.py

The deploy results, environment, commands and server log are those of a real default-study run on this
machine (outputs/smollm2-135m-cpu/20261125T022531Z); the measurement results have the shapes the stages write
(vLLM's bench JSON names, a "checks" list per stage). The checkpoint is a tiny real safetensors file so the
parameter count is read the way it is for a real run. Output is deterministic; commit it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
STAMP = {"deploy": ("2026-11-25T02:25:32.714Z", "2026-11-25T02:26:49.656Z"),
         "latency": ("2026-11-25T02:26:50.000Z", "2026-11-25T02:28:10.500Z"),
         "throughput": ("2026-11-25T02:28:11.000Z", "2026-11-25T02:29:20.250Z"),
         "serve": ("2026-11-25T02:29:21.000Z", "2026-11-25T02:31:40.125Z"),
         "accuracy": ("2026-11-25T02:31:41.000Z", "2026-11-25T02:33:02.000Z"),
         "functional": ("2026-11-25T02:33:03.000Z", "2026-11-25T02:34:30.000Z"),
         "report": ("2026-11-25T02:34:31.000Z", "2026-11-25T02:34:36.000Z")}
MODEL = "/root/.cache/studykit/models/smollm2-135m-instruct-bfloat16"
ENV = "HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=2"
FLAGS = "--dtype bfloat16 --max-model-len 2048 --max-num-seqs 16 --enforce-eager"


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def tiny_checkpoint(d: Path) -> None:
    """A 2-layer llama-shaped checkpoint (fp16), config.json and the kit's manifest."""
    from safetensors.numpy import save_file

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    h, inter, vocab, layers, heads, kv = 32, 64, 128, 2, 4, 2
    hd = h // heads
    t = {"model.embed_tokens.weight": (vocab, h), "model.norm.weight": (h,)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t |= {p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv * hd, h),
              p + "self_attn.v_proj.weight": (kv * hd, h), p + "self_attn.o_proj.weight": (h, h),
              p + "mlp.gate_proj.weight": (inter, h), p + "mlp.up_proj.weight": (inter, h),
              p + "mlp.down_proj.weight": (h, inter), p + "input_layernorm.weight": (h,),
              p + "post_attention_layernorm.weight": (h,)}
    save_file({k: rng.standard_normal(s).astype(np.float16) for k, s in sorted(t.items())},
              str(d / "model.safetensors"))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h,
              "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv, "head_dim": hd, "vocab_size": vocab, "max_position_embeddings": 8192,
              "hidden_act": "silu", "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
              "tie_word_embeddings": True, "dtype": "float16"}
    (d / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    files = []
    for p in sorted(d.iterdir()):
        if p.name != "studykit-manifest.json":
            files.append({"file": p.name, "bytes": p.stat().st_size,
                          "sha256": hashlib.sha256(p.read_bytes()).hexdigest()})
    manifest = {"source": "builtin", "id": "smollm2-135m-instruct", "built_from": "fixture (tiny llama)",
                "built_from_sha256": "0" * 64, "dtype": "float16", "files": files}
    (d / "studykit-manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def chart(path: Path, xs, ys, title: str, xlabel: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    ax.plot(xs, ys, marker="o")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def cmd(stage, label, command, start, end, seconds, is_vllm=True, argv=None, log=None, extra=None):
    return {"stage": stage, "label": label, "argv": argv or [], "command": command,
            "env": {"VLLM_CPU_KVCACHE_SPACE": "2", "HF_HUB_OFFLINE": "1"} if is_vllm else {},
            "started_utc": start, "ended_utc": end, "seconds": seconds, "returncode": 0, "is_vllm": is_vllm,
            "log": log, "extra": extra or {}}


def stage_doc(stage: str, data: dict, failures=()) -> dict:
    start, end = STAMP[stage]
    return {"stage": stage, "study": "smollm2-135m-cpu", "status": "failed" if failures else "passed",
            "failures": list(failures), "started_utc": start, "ended_utc": end, "wall_seconds": 60.5, **data}


def results() -> dict[str, dict]:
    latencies = [0.4981, 0.5012, 0.5047, 0.4995, 0.5103]
    latency = stage_doc("latency", {
        "input_len": 32, "output_len": 32, "batch_size": 1,
        "avg_latency": 0.50276, "latencies": latencies,
        "percentiles": {"10": 0.49866, "25": 0.4995, "50": 0.5012, "75": 0.5047, "90": 0.50808, "99": 0.51008},
        "decode_ms_per_token": 14.21, "prefill_ms": 61.7,
        "roofline": {"weight_bytes": 269060552, "memory_bandwidth_gbps": 18.4, "min_decode_ms_per_token": 14.62,
                     "measured_decode_ms_per_token": 14.21, "bandwidth_utilization": 1.029},
        "checks": [
            {"name": "latency count equals --num-iters", "passed": True, "detail": "5 latencies for num_iters=5",
             "metric": "avg_latency"},
            {"name": "avg_latency is the mean of latencies", "passed": True, "detail": "0.50276 == mean(latencies)",
             "metric": "avg_latency"},
            {"name": "decode time per token within the roofline bound", "passed": False,
             "detail": "measured 14.21 ms/token is below the 14.62 ms/token memory-bandwidth floor",
             "metric": "roofline.measured_decode_ms_per_token"},
        ]})
    throughput = stage_doc("throughput", {
        "input_len": 32, "output_len": 32, "num_prompts": 20,
        "elapsed_time": 3.8125, "num_requests": 20, "total_num_tokens": 1280, "total_input_tokens": 640,
        "total_output_tokens": 640, "requests_per_second": 5.2459, "tokens_per_second": 335.74,
        "output_tokens_per_s": 167.87,
        "checks": [
            {"name": "prompt tokens equal num_prompts × input_len", "passed": True, "detail": "640 == 20 × 32",
             "metric": "total_input_tokens"},
            {"name": "output tokens equal num_prompts × output_len", "passed": True, "detail": "640 == 20 × 32",
             "metric": "total_output_tokens"},
        ]})
    point = {"request_rate": 10.0, "max_concurrency": None, "num_prompts": 20, "completed": 20, "failed": 0,
             "duration": 4.4312, "total_input_tokens": 640, "total_output_tokens": 640,
             "request_throughput": 4.5135, "output_throughput": 144.43, "total_token_throughput": 288.86,
             "max_output_tokens_per_s": 176.0, "mean_ttft_ms": 95.12, "median_ttft_ms": 88.4, "p99_ttft_ms": 201.9,
             "mean_tpot_ms": 28.41, "median_tpot_ms": 28.02, "p99_tpot_ms": 33.7, "mean_itl_ms": 28.39,
             "median_itl_ms": 27.9, "p99_itl_ms": 41.2}
    point2 = {**point, "request_rate": 2.0, "duration": 10.2401, "request_throughput": 1.9531,
              "output_throughput": 62.5, "total_token_throughput": 125.0, "max_output_tokens_per_s": 96.0,
              "mean_ttft_ms": 60.33, "median_ttft_ms": 58.1, "p99_ttft_ms": 90.02, "mean_tpot_ms": 17.8,
              "median_tpot_ms": 17.5, "p99_tpot_ms": 20.3, "mean_itl_ms": 17.79, "median_itl_ms": 17.4,
              "p99_itl_ms": 25.6}
    serve = stage_doc("serve", {
        **{k: v for k, v in point.items() if k not in ("max_concurrency",)},
        "points": [point2, point],
        "ci": {"mean_ttft_ms": {"mean": 95.12, "low": 90.05, "high": 100.19, "n": 3},
               "output_throughput": {"mean": 144.43, "low": 140.2, "high": 148.66, "n": 3}},
        "checks": [
            {"name": "every request completed", "passed": True, "detail": "20/20", "metric": "completed"},
            {"name": "output tokens equal completed × output_len", "passed": True, "detail": "640 == 20 × 32",
             "metric": "total_output_tokens"},
        ]})
    accuracy = stage_doc("accuracy", {
        "prompts": 5, "max_new_tokens": 16, "reference_dtype": "float32",
        "token_agreement": 0.9625, "matching_tokens": 77, "compared_tokens": 80,
        "top1_agreement": 0.9875, "mean_kl": 0.0031, "max_kl": 0.0412,
        "checks": [
            {"name": "free-running token agreement ≥ 0.9", "passed": True, "detail": "0.9625 (77/80)",
             "metric": "token_agreement"},
            {"name": "teacher-forced top-1 agreement ≥ 0.95", "passed": True, "detail": "0.9875",
             "metric": "top1_agreement"},
            {"name": "teacher-forced mean KL ≤ 0.05", "passed": True, "detail": "0.0031 nats", "metric": "mean_kl"},
        ]})
    functional = stage_doc("functional", {
        "prefix_cache_queries": 1024, "prefix_cache_hits": 768, "prefix_cache_hit_rate": 0.75,
        "checks": [
            {"name": "prefix cache hits on a shared prefix", "passed": True, "detail": "768/1024 tokens hit",
             "metric": "prefix_cache_hit_rate"},
            {"name": "chunked prefill enabled", "passed": True, "detail": "vLLM default on this platform"},
            {"name": "multi-modal", "passed": None, "detail": "N/A: text-only model"},
        ]})
    return {"latency": latency, "throughput": throughput, "serve": serve, "accuracy": accuracy,
            "functional": functional}


def bench_commands() -> list[dict]:
    m = MODEL
    out = []
    s, e = STAMP["latency"]
    out.append(cmd("latency", "bench latency", f"{ENV} vllm bench latency --model {m} {FLAGS} --input-len 32 "
                   "--output-len 32 --batch-size 1 --num-iters-warmup 2 --num-iters 5 --output-json "
                   "raw/latency/latency.json", s, e, 79.1))
    s, e = STAMP["throughput"]
    out.append(cmd("throughput", "bench throughput", f"{ENV} vllm bench throughput --model {m} {FLAGS} "
                   "--dataset-name random --random-input-len 32 --random-output-len 32 --num-prompts 20 "
                   "--output-json raw/throughput/throughput.json", s, e, 68.0))
    s, e = STAMP["serve"]
    out.append(cmd("serve", "bench serve rate 2.0", "vllm bench serve --base-url http://127.0.0.1:41234 --model "
                   "smollm2-135m-instruct --tokenizer " + m + " --dataset-name random --random-input-len 32 "
                   "--random-output-len 32 --num-prompts 20 --request-rate 2.0 --seed 0",
                   "2026-11-25T02:30:05.000Z", "2026-11-25T02:30:20.000Z", 15.0))
    out.append(cmd("serve", "bench serve rate 10.0", "vllm bench serve --base-url http://127.0.0.1:41234 --model "
                   "smollm2-135m-instruct --tokenizer " + m + " --dataset-name random --random-input-len 32 "
                   "--random-output-len 32 --num-prompts 20 --request-rate 10.0 --seed 0",
                   "2026-11-25T02:30:21.000Z", "2026-11-25T02:30:30.000Z", 9.0))
    out.append(cmd("serve", "serve", f"{ENV} vllm serve {m} --served-model-name smollm2-135m-instruct --host "
                   f"127.0.0.1 --port 41234 {FLAGS}", s, "2026-11-25T02:31:39.000Z", 138.0,
                   log="logs/serve-serve.log"))
    return out


def complete(src: Path, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    (out / "results").mkdir(parents=True)
    tiny_checkpoint(out / "model")
    study = yaml.safe_load((src / "params.yaml").read_text())
    (out / "params.yaml").write_text(yaml.safe_dump(study, sort_keys=False, allow_unicode=True))
    deploy = json.loads((src / "results" / "deploy.json").read_text())
    deploy["model_dir"] = "model"  # relative: the fixture's own tiny checkpoint
    write_json(out / "results" / "deploy.json", deploy)
    shutil.copy(src / "results" / "environment.json", out / "results" / "environment.json")
    for stage, doc in results().items():
        write_json(out / "results" / f"{stage}.json", doc)
    records = [json.loads(line) for line in (src / "commands.jsonl").read_text().splitlines() if line.strip()]
    records += bench_commands()
    (out / "commands.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    log = (src / "logs" / "deploy-real-gate.log").read_text(errors="replace").splitlines()
    (out / "logs").mkdir()
    (out / "logs" / "deploy-real-gate.log").write_text("\n".join(log) + "\n")
    (out / "logs" / "serve-serve.log").write_text(
        "(APIServer pid=7) WARNING 11-25 02:29:31 [cpu.py:224] Triton is not installed. triton-cpu is expected on x86 CPUs.\n"
        "(APIServer pid=7) INFO 11-25 02:29:50 [api_server.py:1] Starting vLLM API server\n")
    r = results()
    chart(out / "charts" / "latency-iterations.png", range(1, 6), r["latency"]["latencies"], "latency per iteration",
          "iteration", "s")
    pts = r["serve"]["points"]
    chart(out / "charts" / "serve-ttft.png", [p["request_rate"] for p in pts], [p["mean_ttft_ms"] for p in pts],
          "mean TTFT vs request rate", "request rate (req/s)", "ms")
    run = {"study": "smollm2-135m-cpu", "params_source": "/work/main/params/smollm2-135m-cpu.yaml",
           "params_sha256": "fixture", "run_dir": str(out.name), "started_utc": "2026-11-25T02:25:31.306Z",
           "requested_stages": ["deploy", "latency", "throughput", "serve", "accuracy", "functional", "report"],
           "stages": {}, "ended_utc": "2026-11-25T02:34:36.500Z", "status": "passed"}
    vllm_s = {"deploy": 75.654, "latency": 79.1, "throughput": 68.0, "serve": 162.0, "accuracy": 40.2,
              "functional": 80.0, "report": 0.0}
    for stage, (s, e) in STAMP.items():
        run["stages"][stage] = {"status": "passed", "started_utc": s, "ended_utc": e, "wall_seconds": 80.25,
                                "vllm_seconds": vllm_s[stage], "error": None, "notebook": f"notebooks/{stage}.ipynb",
                                "results": f"results/{stage}.json"}
    write_json(out / "run.json", run)


def failed(complete_dir: Path, out: Path) -> None:
    """latency failed (partial results kept), serve requested but skipped, a failing throughput check."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(complete_dir, out)
    run = json.loads((out / "run.json").read_text())
    err = ("StageFailed: latency failed: vllm bench latency exited with code 1: RuntimeError: Engine core "
           "initialization failed. See root cause above.")
    run["stages"]["latency"].update(status="failed", error=err)
    del run["stages"]["serve"]
    run["status"] = "failed"
    write_json(out / "run.json", run)
    lat = json.loads((out / "results" / "latency.json").read_text())
    partial = {k: lat[k] for k in ("stage", "study", "started_utc", "ended_utc", "wall_seconds", "input_len",
                                   "output_len", "batch_size")}
    partial.update(status="failed", failures=[err.removeprefix("StageFailed: latency failed: ")],
                   error=err, prefill_ms=61.7)
    write_json(out / "results" / "latency.json", partial)
    (out / "results" / "serve.json").unlink()
    (out / "charts" / "serve-ttft.png").unlink()
    (out / "charts" / "latency-iterations.png").unlink()
    thr = json.loads((out / "results" / "throughput.json").read_text())
    thr["total_input_tokens"] = 5120
    thr["checks"][0].update(passed=False, detail="5120 != 20 × 32 = 640: the random dataset overrode --input-len")
    write_json(out / "results" / "throughput.json", thr)
    with open(out / "commands.jsonl") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    records = [r for r in records if r["stage"] != "serve"]
    for r in records:
        if r["stage"] == "latency":
            r["returncode"] = 1
    (out / "commands.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def reference(complete_dir: Path, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(complete_dir, out)
    study = yaml.safe_load((out / "params.yaml").read_text())
    study["report"]["reference"] = "params/reference/seed-bitcpm4-0.5b-ascend.yaml"
    (out / "params.yaml").write_text(yaml.safe_dump(study, sort_keys=False, allow_unicode=True))


def main() -> None:
    src = HERE.parents[2] / "outputs" / "smollm2-135m-cpu" / "20261125T022531Z"
    complete(src, HERE / "complete")
    failed(HERE / "complete", HERE / "failed")
    reference(HERE / "complete", HERE / "reference")
    for d in ("complete", "failed", "reference"):
        print(HERE / d)


if __name__ == "__main__":
    main()
