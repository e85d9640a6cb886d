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
from studykit.stages.benchtools import effective_params
from studykit.stages.deploy.stage import chat_frame, deploy_failures, gates_frame, real_gate_with_chat, start_gate
from studykit.runner.context import open_stage

ctx = open_stage("deploy", run_dir, params_path)
p = effective_params(ctx, "deploy", globals())
print("model checkpoint:", ctx.model_dir)

# %% [markdown]
# ## Dummy-weight gate
# `--load-format dummy` skips reading the weights: it proves the architecture, config and platform work.

# %%
dummy = start_gate(ctx, "dummy-gate") if dummy_gate else None
gates_frame([dummy])

# %% [markdown]
# ## Real-weight gate, `/v1/models` and the smoke chat
# The server the seed's quick start describes, timed to `/health`; then the model list and the smoke chat
# request (temperature 0), exactly as recorded in `commands.jsonl`.

# %%
real, chat, models = real_gate_with_chat(ctx) if real_gate else (None, None, [])
gates_frame([dummy, real])

# %%
chat_frame(chat, models)

# %%
ctx.write_results(
    {"params": p.model_dump(mode="json"), "dummy_gate": dummy, "real_gate": real, "smoke_chat": chat,
     "models": models, "model_dir": str(ctx.model_dir), "server": "real-gate" if real else None},
    failures=deploy_failures(ctx.study, dummy, real, chat, models),
)
