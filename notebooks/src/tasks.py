# %% [markdown]
# # Task accuracy: lm-evaluation-harness on vLLM and on the fp32 reference
# The study's lm-eval tasks run twice with the same command line: on transformers (lm-eval `hf`, CPU, the
# reference dtype) and on the study's `vllm serve` (lm-eval `local-completions`). Per-item logs of both runs are
# in `raw/tasks/`; `results/tasks.json` pairs them item by item (repeated prompts and items a log-likelihood tie
# decided on either backend left out, and counted): each score with a 95 % CI, the paired difference with its
# Agresti-Min interval judged against the tolerance, McNemar's exact p-value and the discordant items.

# %% tags=["parameters"]
run_dir = ""  # help: run directory made by `studykit run`; empty makes a fresh one (stepping by hand)
params_path = ""  # help: study YAML; empty means the run's params.yaml, or the default study
tasks = ["studykit_mc", "studykit_gen"]  # help: lm-eval task or group names (the kit's offline tasks by default)
limit = None  # help: items per task (lm-eval --limit); None: all
num_fewshot = None  # help: lm-eval --num_fewshot; None: the task own setting
max_gen_toks = None  # help: cap on generated tokens per item; None: the task own setting
batch_size = 16  # help: lm-eval --batch_size for both backends
num_concurrent = 2  # help: concurrent requests lm-eval sends to the vLLM server
reference_dtype = "float32"  # help: dtype of the transformers reference (lm-eval hf)
metrics = {}  # help: task -> 'metric,filter' to compare (default: the first of the task)
max_abs_delta = 0.05  # help: tolerance of the paired gate: the 95 % interval of vLLM - reference within +-this passes
accept_inconclusive = False  # help: an inconclusive paired gate (interval across a bound) passes the stage
rtol = 0.05  # help: the vllm-ascend tolerance: fail when abs(vLLM score - baseline) exceeds rtol times baseline
baselines = {}  # help: task -> recorded baseline score (0..1) of vLLM on this model
include_path = []  # help: more lm-eval task directories (YAML)
data_dir = None  # help: local dataset directory for hub tasks (filled by `studykit data fetch`)
datasets = []  # help: hub datasets the tasks read ({dataset_path, modelscope_id, revision}), fetched into data_dir

# %%
from studykit.display import checks_frame
from studykit.runner.context import open_stage
from studykit.stages.tasks import checks, stage

ctx = open_stage("tasks", run_dir, params_path)
p = ctx.params(globals())
print("\n".join(step.command for step in stage.plan(ctx.study, ctx.model_dir, ctx.run_dir, ctx.port)))

# %% [markdown]
# ## Both backends, then the paired comparison
# Every task name, data file and dataset directory is checked before any model loads. One row per task: each
# backend's score with its 95 % interval (Wilson), the paired difference vLLM − reference with its Agresti-Min
# interval and the gate's outcome (with the items that would settle an inconclusive one), the items only one
# backend got right, McNemar's exact p on those, and the repeated prompts and ties left out.

# %%
result = stage.run(ctx, p)
stage.summary_table(result)

# %% [markdown]
# ## The items the two backends answer differently

# %%
stage.discordant_table(result)

# %% [markdown]
# ## Scores with their intervals

# %%
result.charts = stage.charts(ctx, result)

# %% [markdown]
# ## Checks
# Per task: compared, both backends scored the same items, a parse check per side (lm-eval's per-item log
# averages to its own aggregate), the paired gate (passed, failed or inconclusive against ±max_abs_delta), and
# vLLM within rtol of a recorded baseline (a point comparison). A failed or inconclusive (not accepted) check
# fails the stage; `not_run` says why it could not run.

# %%
result.checks = checks.checks(p, result)
checks_frame(result.checks)

# %%
ctx.write(result)
