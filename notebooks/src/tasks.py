# %% [markdown]
# # Task accuracy: lm-evaluation-harness on vLLM and on the fp32 reference
# The study's lm-eval tasks run twice with the same command line: on transformers (lm-eval `hf`, CPU, the
# reference dtype) and on the study's `vllm serve` (lm-eval `local-completions`). Per-item logs of both runs are
# in `raw/tasks/`; `results/tasks.json` pairs them item by item: each score with a 95 % CI, the paired
# difference with its CI, McNemar's exact p-value and the discordant items with both answers.

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
max_abs_delta = 0.05  # help: fail when |vLLM score - reference score| exceeds this
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
# backend's score with its 95 % interval (Wilson), the paired difference vLLM − reference with its interval, the
# items only one backend got right, and McNemar's exact p on those.

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
# Per task: compared, both backends scored the same items, each side's per-item score equals lm-eval's own
# aggregate, |vLLM − reference| within max_abs_delta, and vLLM within rtol of a recorded baseline. A failed check
# fails the stage; `not_run` says why it could not run.

# %%
result.checks = checks.checks(p, result)
checks_frame(result.checks)

# %%
ctx.write(result)
