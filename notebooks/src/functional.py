# %% [markdown]
# # Functional checks, measured
# The seed listed prefix caching, chunked prefill and graph mode as working because they are "on by default".
# Here each is exercised on a running server and read back from vLLM's own counters and start-up log.

# %% parameters
run_dir = ""  # help: run directory made by `studykit run`; empty makes a fresh one (stepping by hand)
params_path = ""  # help: study YAML; empty means the run's params.yaml, or the default study
prefix_tokens = 256  # help: length of the shared prefix for the prefix-cache check
prefix_requests = 4  # help: requests sharing the prefix
graph_vs_eager = False  # help: compare graph and eager servers (slow on cpu)
max_num_batched_tokens = 256  # help: token budget per step for the chunked-prefill check (a longer prompt must still complete)

# %%
from studykit.accuracy import load_tokenizer
from studykit.functional import (chunked_prefill_check, complete, engine_config_flags, not_applicable,
                                 prefix_cache_check)
from studykit.checks import failed
from studykit.functional import functional_checks
from studykit.stage import open_stage

ctx = open_stage("functional", run_dir, params_path)
study = ctx.study
tokenizer = load_tokenizer(ctx.model_dir, study.model.trust_remote_code)
name = study.model.name_served
budget = study.server.max_num_batched_tokens or max_num_batched_tokens
extra = [] if study.server.max_num_batched_tokens else ["--max-num-batched-tokens", str(budget)]
results = {"not_applicable": not_applicable(study, ctx.model_dir)}

# %%
probe = tokenizer("Write a haiku about the sea.")["input_ids"]
try:
    with ctx.server("functional", extra=extra) as srv:
        flags = engine_config_flags(srv.log_path)
        results["engine_flags"] = flags
        results["prefix_caching"] = prefix_cache_check(srv, name, tokenizer, prefix_tokens, prefix_requests, ctx.commands)
        results["chunked_prefill"] = chunked_prefill_check(srv, name, tokenizer, budget, flags, ctx.commands)
        base_tokens = complete(srv.base_url, name, probe, 16)["tokens"]
except Exception as err:
    ctx.fail(err, results)
results["prefix_caching"], results["chunked_prefill"]

# %%
if graph_vs_eager and study.enforce_eager:
    with ctx.server("functional-graph", enforce_eager=False) as srv:
        graph_tokens = complete(srv.base_url, name, probe, 16)["tokens"]
    results["graph_vs_eager"] = {"status": "measured", "identical": graph_tokens == base_tokens,
                                 "eager_tokens": base_tokens, "graph_tokens": graph_tokens}
elif graph_vs_eager:
    with ctx.server("functional-eager", enforce_eager=True) as srv:
        eager_tokens = complete(srv.base_url, name, probe, 16)["tokens"]
    results["graph_vs_eager"] = {"status": "measured", "identical": eager_tokens == base_tokens,
                                 "eager_tokens": eager_tokens, "graph_tokens": base_tokens}
else:
    results["graph_vs_eager"] = {"status": "not applicable",
                                 "reason": ("graph compilation on CPU takes minutes; set functional.graph_vs_eager: true to compare"
                                            if study.platform == "cpu" else "functional.graph_vs_eager is false")}
results["graph_vs_eager"]

# %%
results["checks"] = functional_checks(results)
ctx.write_results(results, failures=failed(results["checks"]))
