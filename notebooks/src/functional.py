# %% [markdown]
# # Functional checks, measured
# The seed listed prefix caching, chunked prefill and graph mode as working because they are "on by default".
# Here each is exercised on a running server and read back from vLLM's own counters and start-up log.

# %% tags=["parameters"]
run_dir = ""  # help: run directory made by `studykit run`; empty makes a fresh one (stepping by hand)
params_path = ""  # help: study YAML; empty means the run's params.yaml, or the default study
prefix_tokens = 256  # help: length of the shared prefix for the prefix-cache check
prefix_requests = 4  # help: requests sharing the prefix
graph_vs_eager = False  # help: compare graph and eager servers (slow on cpu)
max_num_batched_tokens = 256  # help: token budget per step for the chunked-prefill check (a longer prompt must still complete)

# %%
from studykit.display import checks_frame, metrics_frame
from studykit.runner.context import open_stage
from studykit.stages.functional import checks, stage

ctx = open_stage("functional", run_dir, params_path)
p = ctx.params(globals())
print("model checkpoint:", ctx.model_dir)
print("\n".join(step.command for step in stage.plan(ctx.study, ctx.model_dir, ctx.run_dir, ctx.port)))

# %% [markdown]
# ## Prefix caching and chunked prefill on one server, then graph mode against eager (when asked for)
# Prefix caching: sequential requests share a long prefix; hits and queries are vLLM's own counters from
# `/metrics` (tokens), and only whole KV blocks are cached. Chunked prefill: a prompt longer than the per-step
# token budget must still complete. Graph against eager: the same greedy request on a second server of the other
# mode (off by default on CPU, where graph compilation takes minutes).

# %%
result = stage.run(ctx, p)
metrics_frame("functional", result)

# %%
stage.features_frame(result)

# %% [markdown]
# ## Not exercised
# Tensor parallelism and multi-modal input are not run here: why each does not apply (or that it is configured /
# present but not checked), read from the study and the checkpoint's config.json.

# %%
result.not_applicable

# %% [markdown]
# ## Checks
# Prefix-cache hits against the whole shared blocks the later requests reuse, the long prompt completing, and
# graph against eager (`not_run` when not asked for). A failed check fails the stage.

# %%
result.checks = checks.checks(p, result)
checks_frame(result.checks)

# %%
ctx.write(result)
