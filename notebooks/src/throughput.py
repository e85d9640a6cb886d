# %% [markdown]
# # Throughput
# `vllm bench throughput` with the random dataset at the requested lengths (`--random-input-len/-output-len`:
# plain `--input-len` is overridden by the dataset defaults, which is how the seed's table came to count
# 1,024-token prompts). vLLM's JSON has no output token count: output tokens and output tokens/s are derived
# from num_prompts x output_len and cross-checked with the totals vLLM prints. Results in `results/throughput.json`.

# %% tags=["parameters"]
run_dir = ""  # help: run directory made by `studykit run`; empty makes a fresh one (stepping by hand)
params_path = ""  # help: study YAML; empty means the run's params.yaml, or the default study
input_len = 32  # help: prompt tokens per request (--random-input-len)
output_len = 32  # help: generated tokens per request (--random-output-len)
num_prompts = 20  # help: --num-prompts
extra_args = []  # help: more vllm bench throughput arguments, verbatim

# %%
from studykit.display import checks_frame, metrics_frame
from studykit.runner.context import open_stage
from studykit.stages.throughput import checks, stage

ctx = open_stage("throughput", run_dir, params_path)
p = ctx.params(globals())
print("model checkpoint:", ctx.model_dir)
print("\n".join(step.command for step in stage.plan(ctx.study, ctx.model_dir, ctx.run_dir, ctx.port)))

# %% [markdown]
# ## Run the bench
# All `num_prompts` prompts go to the offline engine at once. Requests/s and total tokens/s are vLLM's; the
# token split and output tokens/s are derived (see `source`), and vLLM's printed counts are shown beside them.

# %%
result = stage.run(ctx, p)
metrics_frame("throughput", result)

# %% [markdown]
# ## Telemetry
# CPU % and resident memory of the vLLM processes while the bench ran (engine start-up included).

# %%
result.charts = stage.charts(ctx, result)

# %% [markdown]
# ## Checks
# Token totals against num_prompts x length (vLLM's JSON and its printed counts), the derived output tokens/s
# against vLLM's printed one, the request count, the command against the params. A failed check fails the stage;
# `not_run` says why it could not run.

# %%
result.checks = checks.checks(p, result)
checks_frame(result.checks)

# %%
ctx.write(result)
