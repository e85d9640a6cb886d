"""The functional stage's checks: prefix-cache hits against the whole shared blocks the later requests reuse (vLLM's
own counters), a prompt longer than the per-step token budget completing (chunked prefill), and graph mode
against eager (not_run unless the study asks for it). The report's summary selects these ids."""

from __future__ import annotations

from studykit.checks import check, not_run
from studykit.schema.base import Check
from studykit.stages.functional.params import FunctionalParams
from studykit.stages.functional.result import FunctionalResult


def checks(p: FunctionalParams, result: FunctionalResult) -> list[Check]:
    return [chunked_prefill(result), prefix_caching(result), graph_vs_eager(result)]


def chunked_prefill(result: FunctionalResult) -> Check:
    cid, name = "functional.chunked_prefill", "prompt longer than max_num_batched_tokens completes"
    metric, cp = "functional.chunked_prefill_prompt_tokens", result.chunked_prefill
    if cp is None:
        return not_run(cid, name, "the long prompt was not sent", metric)
    # a prompt within the budget fits one step and says nothing about chunking
    longer = cp.prompt_tokens > cp.max_num_batched_tokens
    return check(cid, name, cp.completed and longer,
                 f"{cp.prompt_tokens} prompt tokens, budget {cp.max_num_batched_tokens} per step; "
                 f"{'completed' if cp.completed else 'did not complete'}", True, cp.completed and longer, metric)


def prefix_caching(result: FunctionalResult) -> Check:
    cid, name = "functional.prefix_caching", "prefix cache hits = whole shared blocks x later requests"
    metric, pc = "functional.prefix_cache_hit_tokens", result.prefix_caching
    if pc is None:
        return not_run(cid, name, "the prefix-cache requests were not sent", metric)
    if pc.enabled not in ("True", "true"):
        return not_run(cid, name, f"prefix caching is off in the server's cache config (enabled={pc.enabled})", metric)
    if pc.expected_hit_tokens is None:
        return not_run(cid, name, "the server's cache config reports no block size", metric)
    return check(cid, name, pc.hit_tokens == pc.expected_hit_tokens,
                 pc.why_no_hits or f"{pc.requests - 1} requests x {pc.prefix_full_blocks} blocks x {pc.block_size} "
                                   f"tokens", pc.expected_hit_tokens, pc.hit_tokens, metric)


def graph_vs_eager(result: FunctionalResult) -> Check:
    cid, name = "functional.graph_vs_eager", "graph and eager give the same greedy tokens"
    ge = result.graph_vs_eager
    if ge is None or ge.status != "measured":
        return not_run(cid, name, (ge.reason if ge else None) or "not measured")
    # `identical` is written from the two token lists; a record where they disagree is not a pass
    same = bool(ge.identical) and ge.graph_tokens == ge.eager_tokens
    return check(cid, name, same, f"{len(ge.graph_tokens or [])} greedy tokens", True, same)
