"""`vllm bench latency`: one batch end to end, `num_iters` times, at output_len N and again at output_len 1.

latency(1) is prefill plus one token; (latency(N) - latency(1)) / (N - 1) is the steady decode time per token.
The seed divided latency(N) by N, which spreads prefill over the decode steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studykit.energy import telemetry_energy
from studykit.engine import cmdline
from studykit.stages.latency.params import LatencyParams
from studykit.engine import roofline
from studykit.engine.telemetry import Telemetry
from studykit.stages.latency.result import LatencyResult
from studykit.evidence.rundir import RunLayout
from studykit.plan import Step
from studykit.engine.benchjson import NUM, BenchParseError, check_ran, load_bench_json
from studykit.stages.benchtools import command_entry, engine_window, telemetry_charts


def latency_args(p: LatencyParams, output_len: int | None = None, output_json: str | Path | None = None) -> list[str]:
    args = ["--input-len", str(p.input_len), "--output-len", str(output_len or p.output_len),
            "--batch-size", str(p.batch_size), "--num-iters-warmup", str(p.num_iters_warmup),
            "--num-iters", str(p.num_iters)]
    if output_json:
        args += ["--output-json", str(output_json)]
    return args + list(p.extra_args)


def parse_latency_json(path: str | Path) -> dict[str, Any]:
    """Flat record: vLLM's avg_latency, latencies, percentiles (seconds) plus p50/p90/p99_latency_s."""
    data = load_bench_json(path, {"avg_latency": NUM, "latencies": list, "percentiles": dict})
    lat = data["latencies"]
    if not lat or not all(isinstance(x, NUM) for x in lat):
        raise BenchParseError(f"{path}: 'latencies' should be a non-empty list of numbers, got {lat!r:.80}")
    pct = {str(k): v for k, v in data["percentiles"].items()}
    missing = [k for k in ("50", "90", "99") if not isinstance(pct.get(k), NUM)]
    if missing:
        raise BenchParseError(f"{path}: percentiles lack numeric {missing}; present {sorted(pct)}")
    rec = {"avg_latency": float(data["avg_latency"]), "latencies": [float(x) for x in lat], "percentiles": pct,
           "num_iters_measured": len(lat)}
    for k in ("50", "90", "99"):
        rec[f"p{k}_latency_s"] = float(pct[k])
    return rec


def derive(p: LatencyParams, full: dict[str, Any], one: dict[str, Any] | None) -> dict[str, Any]:
    """Tokens/s of the full run, and prefill / steady decode split when the output_len 1 run exists."""
    n, b = p.output_len, p.batch_size
    out = {"output_tokens_per_s": b * n / full["avg_latency"],
           "total_tokens_per_s": b * (p.input_len + n) / full["avg_latency"],
           "naive_ms_per_token": full["avg_latency"] * 1000 / n}  # the seed's way, kept for comparison
    if one is not None:
        decode_s = (full["avg_latency"] - one["avg_latency"]) / (n - 1)
        out.update({"prefill_ms": one["avg_latency"] * 1000, "decode_ms_per_token": decode_s * 1000,
                    "decode_tokens_per_s_per_seq": 1 / decode_s if decode_s > 0 else None})
    return out


def window_output_tokens(p: LatencyParams, output_len: int, iters_measured: int) -> int:
    """Output tokens generated inside a run's telemetry window (engine ready to the end of the bench): vLLM runs its
    warm-up iterations after the engine is ready, so they count with the measured ones; each iteration is one
    batch of batch_size prompts of output_len tokens (ignore_eos, one sequence per prompt)."""
    return p.batch_size * output_len * (p.num_iters_warmup + iters_measured)


RUNS = (("latency", None), ("prefill", 1))  # name, output_len (None: the study's)


def plan(study, model_dir: Path, run_dir, port=None) -> list[Step]:
    raw = RunLayout(run_dir).raw_dir("latency")
    return [Step("latency", f"bench-latency-{name}", "command", cmdline.bench_argv(
        study, "latency", model_dir, latency_args(study.latency, out_len, raw / f"{name}.json"))) for name, out_len in RUNS]


def run(ctx, p: LatencyParams) -> LatencyResult:
    """Both benches, then the decode roofline; what was measured is kept if one fails (ctx.keep)."""
    data: dict[str, Any] = {"params": p.model_dump(), "commands": [], "telemetry": [], "runs": {}}
    with ctx.keep(data):
        idle = ctx.idle_power()
        data.update(idle)
        for (name, out_len), step in zip(RUNS, ctx.plan()):
            out_json = ctx.raw_dir / f"{name}.json"
            with Telemetry(ctx.study.platform, label=name) as tel:
                rec = ctx.run_step(step)
            data["telemetry"].append({**tel.to_dict(), **engine_window(rec)})
            data["commands"].append(command_entry(rec, run=name))
            check_ran(rec, out_json)
            run = data["runs"][name] = {"output_len": out_len or p.output_len, "raw": str(out_json),
                                        **parse_latency_json(out_json)}
            tokens = window_output_tokens(p, run["output_len"], run["num_iters_measured"])
            data["telemetry"][-1].update(telemetry_energy(data["telemetry"][-1], tokens, idle.get("idle_power_w")))
        full, one = data["runs"]["latency"], data["runs"]["prefill"]
        data.update({k: full[k] for k in ("avg_latency", "p50_latency_s", "p90_latency_s", "p99_latency_s")})
        data.update(derive(p, full, one))
        # the probe runs on the cores the engine was bound to (read from its log)
        data["roofline"] = roofline.latency_roofline(ctx.study, ctx.model_dir, data.get("decode_ms_per_token"),
                                                     engine_log=ctx.raw_dir / "bench-latency-latency.log")
    return ctx.result(data)


def charts(ctx, result: LatencyResult) -> list[str]:
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    paths = []
    lat = result.runs["latency"].latencies
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.plot(range(1, len(lat) + 1), lat, marker="o")
    a1.set_xlabel("iteration")
    a1.set_ylabel("latency (s)")
    a1.set_title("per-iteration latency")
    a2.hist(lat, bins=min(20, max(3, len(lat))))
    for k, style in (("p50_latency_s", "--"), ("p99_latency_s", ":")):
        a2.axvline(getattr(result, k), linestyle=style, color="k", label=k)
    a2.set_xlabel("latency (s)")
    a2.set_title("distribution")
    a2.legend(fontsize=7)
    paths.append(ctx.save_figure(fig, "latencies"))
    return paths + telemetry_charts(ctx, result.telemetry)
