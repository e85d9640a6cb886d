# %% [markdown]
# # Accuracy against the fp32 reference
# transformers on CPU (greedy, full-vocabulary log-probabilities) against the vLLM server, free-running and
# teacher-forced. Every token id and log-probability used is stored in `results/accuracy.json` (full reference
# distributions in `raw/accuracy/reference_logprobs.npz`), so anyone can recompute the summary.

# %% tags=["parameters"]
run_dir = ""  # help: run directory made by `studykit run`; empty makes a fresh one (stepping by hand)
params_path = ""  # help: study YAML; empty means the run's params.yaml, or the default study
prompts_file = "builtin:default"  # help: JSONL prompt file ({"id","text","chat"} per line) or 'builtin:default'
max_new_tokens = 16  # help: tokens generated per prompt (the seed's 16)
top_k_logprobs = 20  # help: logprobs vLLM returns per position
reference_dtype = "float32"  # help: dtype of the transformers reference (the seed's float32)
min_token_agreement = 0.9  # help: threshold on the free-running agreement up to the first real divergence
near_tie_margin = 0.25  # help: a divergence is a near tie when p_ref(own token) - p_ref(vLLM token) is at most this
min_top1_agreement = 0.95  # help: teacher-forced top-1 agreement threshold
max_mean_kl = 0.05  # help: teacher-forced mean KL threshold (nats)

# %%
from studykit.display import checks_frame, metrics_frame
from studykit.runner.context import open_stage
from studykit.stages.accuracy import checks, stage

ctx = open_stage("accuracy", run_dir, params_path)
p = ctx.params(globals())
print("model checkpoint:", ctx.model_dir)
print("\n".join(step.command for step in stage.plan(ctx.study, ctx.model_dir, ctx.run_dir, ctx.port)))

# %% [markdown]
# ## Reference, then vLLM
# The prompt file is checked first (a bad one fails here, before any model loads). The transformers reference
# generates first (greedy, full-vocabulary log-probabilities, kept in `raw/accuracy/reference_logprobs.npz`);
# then one vLLM server answers every request: free-running greedy (twice, for determinism) and teacher-forced
# (vLLM scores the reference's own continuation with `prompt_logprobs`, so both models see the same context at
# every position).

# %%
result = stage.run(ctx, p)
metrics_frame("accuracy", result)

# %% [markdown]
# ## Per prompt
# Free-running agreement and where the two sequences first part; teacher-forced top-1 agreement, probability
# error and KL over each prompt's positions.

# %%
stage.per_prompt_table(result)

# %% [markdown]
# ## Free-running divergences: near ties and real ones
# At each prompt's first divergence, the reference's probability of its own token and of vLLM's token on the
# shared context (the margin), and vLLM's probabilities of both where it returned them. A margin within
# `near_tie_margin` is a near tie (bf16 against fp32 can flip it); only real divergences count against the gate.

# %%
stage.divergence_table(result)

# %% [markdown]
# ## Probability error per position

# %%
result.charts = stage.charts(ctx, result)

# %% [markdown]
# ## Checks
# Each against its threshold in the parameters: free-running agreement up to the first real divergence,
# teacher-forced top-1 agreement and mean KL, and the same greedy output in two passes. A failed check fails the
# stage; `not_run` says why it could not run.

# %%
result.checks = checks.checks(p, result)
checks_frame(result.checks)

# %%
ctx.write(result)
