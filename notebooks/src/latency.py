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
from studykit import checks, roofline
from studykit.bench import effective_params, telemetry_charts
from studykit.bench.latency import charts, run_latency
from studykit.stage import open_stage

ctx = open_stage("latency", run_dir, params_path)
p = effective_params(ctx, "latency", dict(input_len=input_len, output_len=output_len, batch_size=batch_size,
                                         num_iters_warmup=num_iters_warmup, num_iters=num_iters,
                                         extra_args=extra_args))
print("model checkpoint:", ctx.model_dir)

# %% [markdown]
# ## Run the benches (output_len N, then output_len 1)

# %%
result = {"params": p.model_dump()}
try:
    run_latency(ctx, p, result)
except Exception as err:
    ctx.fail(err, partial=result)
{k: result[k] for k in ("avg_latency", "p50_latency_s", "p90_latency_s", "p99_latency_s", "output_tokens_per_s",
                        "prefill_ms", "decode_ms_per_token", "naive_ms_per_token")}

# %% [markdown]
# ## Roofline of decode

# %%
result["roofline"] = roofline.latency_roofline(ctx.study, ctx.model_dir, result.get("decode_ms_per_token"))
result["roofline"]

# %% [markdown]
# ## Charts and checks

# %%
result["charts"] = charts(ctx, result) + telemetry_charts(ctx, result["telemetry"])
result["checks"] = checks.latency_checks(p, result)
checks.table(result["checks"])

# %%
ctx.write_results(result, failures=checks.failed(result["checks"]))
