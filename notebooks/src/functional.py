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
from studykit import checks
from studykit.stages.accuracy.stage import load_tokenizer
from studykit.display import checks_frame
from studykit.stages.benchtools import effective_params
from studykit.stages.functional.stage import (batched_tokens_budget, chunked_prefill_check, complete, engine_config_flags,
                                 functional_checks, not_applicable, prefix_cache_check)
from studykit.runner.context import open_stage

ctx = open_stage("functional", run_dir, params_path)
p = effective_params(ctx, "functional", globals())
study = ctx.study
tokenizer = load_tokenizer(ctx.model_dir, study.model.trust_remote_code)
name = study.model.name_served
budget, _ = batched_tokens_budget(study)
steps = {s.label: s for s in ctx.plan()}
results = {"params": p.model_dump(mode="json"), "not_applicable": not_applicable(study, ctx.model_dir),
           "server": "functional"}
print("\n".join(step.command for step in ctx.plan()))

# %% [markdown]
# ## Prefix caching and chunked prefill on one server
# Prefix caching: sequential requests share a long prefix; hits and queries are vLLM's own counters from
# `/metrics` (tokens), and only whole KV blocks are cached. Chunked prefill: a prompt longer than the per-step
# token budget must still complete.

# %%
probe = tokenizer("Write a haiku about the sea.")["input_ids"]
try:
    with ctx.server_for(steps["functional"]) as srv:
        flags = engine_config_flags(srv.log_path)
        results["engine_flags"] = flags
        results["prefix_caching"] = prefix_cache_check(srv, name, tokenizer, p.prefix_tokens, p.prefix_requests,
                                                       ctx.commands)
        results["chunked_prefill"] = chunked_prefill_check(srv, name, tokenizer, budget, flags, ctx.commands)
        base_tokens = complete(srv.base_url, name, probe, 16)["tokens"]
except Exception as err:
    ctx.fail(err, results)
import pandas as pd

pd.DataFrame([results["prefix_caching"]]).T.rename(columns={0: "prefix caching"}).join(
    pd.DataFrame([results["chunked_prefill"]]).T.rename(columns={0: "chunked prefill"}), how="outer")

# %% [markdown]
# ## Graph mode against eager (when asked for) and the checks

# %%
other = next((s for label, s in steps.items() if label in ("functional-graph", "functional-eager")), None)
if other is not None:
    with ctx.server_for(other) as srv:
        other_tokens = complete(srv.base_url, name, probe, 16)["tokens"]
    graph, eager = (other_tokens, base_tokens) if other.label == "functional-graph" else (base_tokens, other_tokens)
    results["graph_vs_eager"] = {"status": "measured", "identical": graph == eager, "eager_tokens": eager,
                                 "graph_tokens": graph}
else:
    results["graph_vs_eager"] = {"status": "not applicable",
                                 "reason": ("graph compilation on CPU takes minutes; set functional.graph_vs_eager: "
                                            "true to compare" if study.platform == "cpu"
                                            else "functional.graph_vs_eager is false")}
results["graph_vs_eager"]

# %%
results["checks"] = functional_checks(results)
checks_frame(results["checks"])

# %%
ctx.write_results(results, failures=checks.failed(results["checks"]))
