# %% [markdown]
# # Deploy check
# The seed report's functional gates, run for real: start with dummy weights (time to ready), start with
# the real weights (time to ready), list `/v1/models`, and send the smoke chat request. Every command is
# recorded in the run's `commands.jsonl`; the results land in `results/deploy.json`.

# %% tags=["parameters"]
run_dir = ""  # help: run directory made by `studykit run`; empty makes a fresh one (stepping by hand)
params_path = ""  # help: study YAML; empty means the run's params.yaml, or the default study
dummy_gate = True  # help: start once with --load-format dummy and time it to ready
real_gate = True  # help: start with the real weights and time it to ready
smoke_prompt = "say hi"  # help: user message of the smoke chat request (the seed's)
max_completion_tokens = 16  # help: max_completion_tokens of the smoke chat

# %%
from studykit.display import checks_frame, metrics_frame
from studykit.runner.context import open_stage
from studykit.stages.deploy import checks, stage

ctx = open_stage("deploy", run_dir, params_path)
p = ctx.params(globals())
print("model checkpoint:", ctx.model_dir)
print("\n".join(step.command for step in stage.plan(ctx.study, ctx.model_dir, ctx.run_dir, ctx.port)))

# %% [markdown]
# ## The gates
# The dummy-weight gate first: `--load-format dummy` skips reading the weights, so it proves the architecture,
# config and platform work. Then the server the seed's quick start describes, with the real weights, timed to
# `/health`; on it `/v1/models` and the smoke chat request (temperature 0), exactly as recorded in
# `commands.jsonl`. A gate that does not get to ready is recorded with its error, not raised.

# %%
result = stage.run(ctx, p)
metrics_frame("deploy", result)

# %%
stage.gates_frame(result)

# %%
stage.chat_frame(result)

# %% [markdown]
# ## Checks
# Each gate asked for got to ready (a failed gate fails the stage, naming the engine's own error when the log
# has one), each gate's command loads the weights it claims, the smoke request matches the params, its reply has
# text within max_completion_tokens, and `/v1/models` lists the served name. `not_run` says why a check could
# not run.

# %%
result.checks = checks.checks(p, result)
checks_frame(result.checks)

# %%
ctx.write(result)
