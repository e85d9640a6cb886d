# %% [markdown]
# # Online serving
# `vllm bench serve` with the random dataset against one server started for all points (or an existing
# `base_url`): warm-up requests first (`--num-warmups`), then one run per request rate x max concurrency,
# `repeats` times each (mean and 95% Student-t interval per metric). Per-request detail is saved under
# `raw/serve/`; numbers keep vLLM's names (`request_throughput`, `output_throughput`, `p99_ttft_ms`, ...).

# %% tags=["parameters"]
run_dir = ""  # help: run directory made by `studykit run`; empty makes a fresh one (stepping by hand)
params_path = ""  # help: study YAML; empty means the run's params.yaml, or the default study
base_url = None  # help: bench an existing server instead of starting one
input_len = 32  # help: prompt tokens per request (--random-input-len)
output_len = 32  # help: generated tokens per request (--random-output-len)
num_prompts = 20  # help: --num-prompts per point
request_rates = [10.0]  # help: --request-rate per point; "inf" sends all at once; "auto" sweeps (see sweep_rates)
sweep_rates = 3  # help: with request_rates "auto": rates between the synchronous and the saturated throughput
max_concurrency = []  # help: --max-concurrency per point, crossed with the rates; empty: unlimited
repeats = 1  # help: runs per point; > 1 gives mean and 95% confidence interval
num_warmups = 2  # help: --num-warmups before each point (not measured)
goodput = None  # help: SLOs for goodput, e.g. {"ttft_ms": 500, "tpot_ms": 50}
seed = 0  # help: --seed of the random dataset
extra_args = []  # help: more vllm bench serve arguments, verbatim

# %%
from studykit.display import checks_frame, metrics_frame
from studykit.runner.context import open_stage
from studykit.stages.serve import checks, stage

ctx = open_stage("serve", run_dir, params_path)
p = ctx.params(globals())
print("model checkpoint:", ctx.model_dir)
print("\n".join(step.command for step in stage.plan(ctx.study, ctx.model_dir, ctx.run_dir, ctx.port)))

# %% [markdown]
# ## Server (once for all points), the bench runs, and the roofline per point
# The headline point's numbers first (the first point), then one row per sweep point (request rate x max
# concurrency). Every number is vLLM's own; with `repeats` > 1 a point shows the mean over its runs and the
# 95 % confidence half-width (Student t) beside it.

# %%
result = stage.run(ctx, p)
metrics_frame("serve", result)

# %%
stage.serve_table(result)

# %% [markdown]
# A decode step reads the weights once for every running sequence: weight bytes / mean TPOT is the memory
# traffic each point achieves against the bandwidth limit (a lower bound: prefill shares those steps).

# %%
stage.roofline_table(result)

# %% [markdown]
# ## Charts
# Throughput and TTFT/TPOT percentiles against the request rate, the tokens/s vs TPOT trade-off, per-request
# TTFT over time, and CPU % / memory of the vLLM processes.

# %%
result.charts = stage.charts(ctx, result)

# %% [markdown]
# ## Checks
# Per run: all requests completed, token totals against num_prompts x length, vLLM's mean TTFT and mean E2E
# latency recomputed from its own per-request values; per command: the point is one the params plan and the
# flags match the params. A failed check fails the stage; `not_run` says why it could not run.

# %%
result.checks = checks.checks(p, result)
checks_frame(result.checks)

# %%
ctx.write(result)
