# %% [markdown]
# # Latency
# `vllm bench latency` on one batch, as the seed report ran it, plus the same shape with output_len 1: the
# difference gives the steady decode time per token, (latency(N) - latency(1)) / (N - 1), which the seed's
# "total latency / 128" mixed with prefill. Consistency checks, telemetry (CPU%, RSS of the vllm processes)
# and the memory roofline of decode are stored with the numbers in `results/latency.json`.

# %% tags=["parameters"]
run_dir = ""  # help: run directory made by `studykit run`; empty makes a fresh one (stepping by hand)
params_path = ""  # help: study YAML; empty means the run's params.yaml, or the default study
input_len = 32  # help: prompt tokens per request (--input-len)
output_len = 32  # help: generated tokens per request (--output-len); > 1 to derive decode time
batch_size = 1  # help: --batch-size
num_iters_warmup = 2  # help: --num-iters-warmup
num_iters = 5  # help: --num-iters
extra_args = []  # help: more vllm bench latency arguments, verbatim

# %%
from studykit.display import checks_frame, metrics_frame
from studykit.runner.context import open_stage
from studykit.stages.latency import checks, stage

ctx = open_stage("latency", run_dir, params_path)
p = ctx.params(globals())
print("model checkpoint:", ctx.model_dir)
print("\n".join(step.command for step in stage.plan(ctx.study, ctx.model_dir, ctx.run_dir, ctx.port)))

# %% [markdown]
# ## Run the benches (output_len N, then output_len 1), then the roofline of decode
# Each `vllm bench latency` starts its own engine, warms up `num_iters_warmup` times (not measured), then times
# `num_iters` end-to-end batches. Avg and percentiles are vLLM's; rows marked `derived` are computed here from
# the two runs (the formula is in the `source` column). Each decode step of one sequence reads every weight
# once: weight bytes / steady decode time is the memory traffic decode achieves, against the bandwidth limit
# (a copy probe on the engine's cores on CPU, the card's spec on NPU).

# %%
result = stage.run(ctx, p)
metrics_frame("latency", result)

# %% [markdown]
# ## Charts
# Per-iteration latency and its distribution; then CPU % and resident memory of the vLLM processes while each
# bench ran (engine start-up included).

# %%
result.charts = stage.charts(ctx, result)

# %% [markdown]
# ## Checks
# vLLM's percentiles recomputed from its own per-iteration latencies (a parse check), the iteration count, the
# command against the params, and decode time > 0. A failed check fails the stage; `not_run` says why it could
# not run.

# %%
result.checks = checks.checks(p, result)
checks_frame(result.checks)

# %%
ctx.write(result)
