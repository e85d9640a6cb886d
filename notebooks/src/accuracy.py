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
max_real_divergences = 0  # help: free-running positions allowed to diverge for real (judged on the reference's context)
near_tie_margin = None  # help: both engines' margin between the two tokens at most this for a near tie; None: 4 x the calibration's top-2 margin shift
max_near_tie_kl = None  # help: KL at a near tie's position at most this (nats); None: 4 x the calibration's largest per-position KL
min_top1_agreement = None  # help: teacher-forced top-1 agreement threshold; None: from the calibration's top-1 disagreements
max_mean_kl = None  # help: teacher-forced mean KL threshold (nats); None: 3 x the calibration's mean KL

# %%
from studykit.display import checks_frame, metrics_frame
from studykit.runner.context import open_stage
from studykit.stages.accuracy import checks, stage

ctx = open_stage("accuracy", run_dir, params_path)
p = ctx.params(globals())
print("model checkpoint:", ctx.model_dir)
print("\n".join(step.command for step in stage.plan(ctx.study, ctx.model_dir, ctx.run_dir, ctx.port)))

# %% [markdown]
# ## Reference, calibration, then vLLM
# The prompt file is checked first (a bad one fails here, before any model loads). The transformers reference
# generates first (greedy, full-vocabulary log-probabilities, kept in `raw/accuracy/reference_logprobs.npz`).
# The calibration runs the same checkpoint in the other dtype (bfloat16 for a float32 reference) over the
# reference's continuation: its rounding noise, times a stated multiple, gives every threshold the parameters
# leave empty (`threshold_basis` in the result). Then one vLLM server answers every request: free-running greedy,
# resumed from the reference's prefix after each divergence so every position is judged on the reference's
# context (the plain request twice, for determinism), and teacher-forced (vLLM scores the reference's own
# continuation with `prompt_logprobs`, so both models see the same context at every position).

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
# Every position where vLLM's token differs from the reference's, on the reference's context: both engines'
# probabilities of the two tokens, both margins and the KL there. A near tie needs vLLM to have emitted its own
# top token, both margins within `near_tie_margin` and the KL within `max_near_tie_kl`; anything else is a real
# divergence, and real divergences beyond `max_real_divergences` fail the stage.

# %%
stage.divergence_table(result)

# %% [markdown]
# ## Probability error per position

# %%
result.charts = stage.charts(ctx, result)

# %% [markdown]
# ## Checks
# Each against the threshold the run recorded (calibration x multiple, or the parameters' value): real
# free-running divergences, teacher-forced top-1 agreement and mean KL, and the same greedy output in two passes. A failed check fails the
# stage; `not_run` says why it could not run.

# %%
result.checks = checks.checks(p, result)
checks_frame(result.checks)

# %%
ctx.write(result)
