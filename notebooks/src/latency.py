# %% [markdown]
# # Latency
# `vllm bench latency` on one batch, as the seed report ran it, plus the same shape with output_len 1: the
# difference gives the steady decode time per token, (latency(N) - latency(1)) / (N - 1), which the seed's
# "total latency / 128" mixed with prefill. Consistency checks, telemetry (CPU%, RSS of the vllm processes)
# and the memory roofline of decode are stored with the numbers in `results/latency.json`.

# %% parameters
run_dir = ""  # help: run directory made by `studykit run`; empty makes a fresh one (stepping by hand)
params_path = ""  # help: study YAML; empty means the run's params.yaml, or the default study
input_len = 32  # help: prompt tokens per request (--input-len)
output_len = 32  # help: generated tokens per request (--output-len); > 1 to derive decode time
batch_size = 1  # help: --batch-size
num_iters_warmup = 2  # help: --num-iters-warmup
num_iters = 5  # help: --num-iters
extra_args = []  # help: more vllm bench latency arguments, verbatim

# %%
from studykit.stages.latency import checks
from studykit.engine import roofline
from studykit.stages.benchtools import effective_params, telemetry_charts
from studykit.stages.latency.stage import charts, run_latency
from studykit.display import checks_frame, metrics_frame
from studykit.runner.context import open_stage

ctx = open_stage("latency", run_dir, params_path)
p = effective_params(ctx, "latency", globals())
print("model checkpoint:", ctx.model_dir)
print("\n".join(step.command for step in ctx.plan()))

# %% [markdown]
# ## Run the benches (output_len N, then output_len 1)
# Each `vllm bench latency` starts its own engine, warms up `num_iters_warmup` times (not measured), then times
# `num_iters` end-to-end batches. Avg and percentiles are vLLM's; rows marked `derived` are computed here from
# the two runs (the formula is in the `source` column).

# %%
result = {"params": p.model_dump()}
try:
    run_latency(ctx, p, result)
except Exception as err:
    ctx.fail(err, partial=result)
metrics_frame("latency", result).loc[lambda df: ~df.index.str.startswith(("Decode weight", "Memory", "Share"))]

# %% [markdown]
# ## Roofline of decode
# Each decode step of one sequence reads every weight once: weight bytes / steady decode time is the memory
# traffic decode achieves, against the bandwidth limit (a copy probe on CPU, the card's spec on NPU).

# %%
# the probe runs on the cores the engine was bound to (read from its log)
result["roofline"] = roofline.latency_roofline(ctx.study, ctx.model_dir, result.get("decode_ms_per_token"),
                                               engine_log=ctx.raw_dir / "bench-latency-latency.log")
metrics_frame("latency", result, prefix="roofline")

# %% [markdown]
# ## Charts
# Per-iteration latency and its distribution; then CPU % and resident memory of the vLLM processes while each
# bench ran (engine start-up included).

# %%
result["charts"] = charts(ctx, result) + telemetry_charts(ctx, result["telemetry"])

# %% [markdown]
# ## Checks
# vLLM's percentiles recomputed from its own per-iteration latencies, the iteration count, the command against
# the params, and decode time > 0. A failed check fails the stage; `not_run` says why it could not run.

# %%
result["checks"] = checks.latency_checks(p, result)
checks_frame(result["checks"])

# %%
ctx.write_results(result, failures=checks.failed(result["checks"]))
