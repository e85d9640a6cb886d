# %% [markdown]
# # Profile: why decode runs at this speed
# The study's `vllm serve` with vLLM's own torch profiler enabled (`--profiler-config`), and per concurrency (batch 1
# and the serve stage's saturated batch by default) a warm-up window, then the same streamed requests without the
# profiler and between `/start_profile` and `/stop_profile`, in the order off on on off. The first profiled window's
# trace splits each decode step into time inside the model's forward and time outside it (scheduler, sampler,
# Python, input prep); the two kinds of window give the profiler's overhead, and the unprofiled windows' spread what
# the host alone moves. Stored in `results/profile.json`, the traces in `raw/profile/`.

# %% tags=["parameters"]
run_dir = ""  # help: run directory made by `studykit run`; empty makes a fresh one (stepping by hand)
params_path = ""  # help: study YAML; empty means the run's params.yaml, or the default study
input_len = 32  # help: prompt tokens per request
output_len = 32  # help: tokens each request generates (max_tokens, ignore_eos): the decode window
concurrency = [1, "saturated"]  # help: requests at once per window: 1 is batch-1 decode; "saturated" serve's batch
warmup_requests = 1  # help: requests sent and not measured before the first window
repeats = 2  # help: windows of each kind (profiler off, on) per concurrency, in the order off on on off
outside_share_threshold = 0.5  # help: host-bound when more than this share of a decode step is outside the forward
max_overhead = 0.25  # help: largest |profiler overhead| (beyond the host's own spread) for a trace that counts
min_decode_steps = 8  # help: fewest decode steps a window's trace must hold for its split to count
top_ops = 10  # help: operators listed by self time

# %%
from studykit.display import checks_frame, metrics_frame
from studykit.runner.context import open_stage
from studykit.stages.profile import checks, stage

ctx = open_stage("profile", run_dir, params_path)
p = ctx.params(globals())
print("model checkpoint:", ctx.model_dir)
print("\n".join(step.command for step in stage.plan(ctx.study, ctx.model_dir, ctx.run_dir, ctx.port)))

# %% [markdown]
# ## Run the windows
# The server starts with the profiler configured but idle. Each window's requests stream their tokens; the time
# between a request's first and last token over the tokens in between is its steady decode time per token (vLLM's
# TPOT). The profiled window's trace (`raw/profile/c<concurrency>_*.pt.trace.json.gz`) is parsed per engine step:
# a step's period runs from its `execute_model` annotation to the next one's, inside the model is the
# `gpu_model_runner: forward` scope, the rest is outside it. Rows are the first window's (batch 1 by default);
# rows marked `derived` are computed here (the formula is in the `source` column).

# %%
result = stage.run(ctx, p)
metrics_frame("profile", result)

# %% [markdown]
# ## Charts
# Per decode step of each window's trace, time inside the model's forward and outside it, stacked; then CPU % and
# resident memory of the vLLM processes during the unprofiled windows.

# %%
result.charts = stage.charts(ctx, result)

# %% [markdown]
# ## Checks
# The server's profiler flag, the tokens each request produced, the trace found and parsed, enough decode steps,
# in-model + outside = period for every step, the overhead recomputed from the windows and within max_overhead (beyond
# the host's own spread), and the energy per token
# (`not_run` with the reason where the host exposes no power). A failed check fails the stage.

# %%
result.checks = checks.checks(p, result)
checks_frame(result.checks)

# %%
ctx.write(result)
