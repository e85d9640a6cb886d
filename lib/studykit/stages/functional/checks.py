"""The functional stage's checks: prefix-cache hits against the whole shared blocks the later requests reuse (vLLM's
own counters), a prompt longer than the per-step token budget prefilled in several engine steps by vLLM's own counters (chunked prefill), and graph mode
against eager (not_run unless the study asks for it). The report's summary selects these ids."""

from __future__ import annotations

from studykit.checks import check, logged_args_match, not_run
from studykit.schema.base import Check
from studykit.stages.functional.params import FunctionalParams
from studykit.stages.functional.result import FunctionalResult


def checks(p: FunctionalParams, result: FunctionalResult) -> list[Check]:
    return [chunked_prefill(result), prefix_caching(result), graph_vs_eager(result), engine_args(result)]


def engine_args(result: FunctionalResult) -> Check:
    """The functional server's command against what vLLM says it parsed (studykit.checks.logged_args_match)."""
    if result.engine_args is None:
        return not_run("functional.engine_args_match_command", "vLLM's logged non-default args = the command's flags",
                       "the functional server's command and log were not recorded")
    return logged_args_match("functional", result.engine_args.command, result.engine_args.logged,
                             subject="functional")


def chunked_prefill(result: FunctionalResult) -> Check:
    """Chunked prefill from vLLM's own counters (vllm:iteration_tokens_total): the steps that processed the long
    prompt must have computed exactly its tokens plus the generated ones (a lost or repeated chunk fails), and
    passes when they show at least ceil(prompt / budget) prefill steps. vLLM 0.32 counts a prompt's tokens in the
    step that emits its first token (vllm/v1/metrics/stats.py, IterationStats.update_from_output), so a chunked
    prefill also reads as one step there: then the check says it cannot be shown (not_run), never passed. A prompt
    that completes proves nothing: an engine that ignores the budget completes it too."""
    cid, name = "functional.chunked_prefill", "long prompt prefilled in several engine steps (vLLM's counters)"
    metric, cp = "functional.chunked_prefill_prompt_tokens", result.chunked_prefill
    if cp is None:
        return not_run(cid, name, "the long prompt was not sent", metric)
    if cp.prefill_steps is None:
        return not_run(cid, name, "vLLM exported no vllm:iteration_tokens_total histogram on /metrics", metric)
    budget = cp.max_num_batched_tokens
    need = -(-cp.prompt_tokens // budget)
    want_tokens = cp.prompt_tokens + (cp.output_tokens or 0)
    counted = (f"{cp.prompt_tokens} prompt tokens, budget {budget} per step: {cp.prefill_steps} prefill steps "
               f"counted (at least {need} if chunked), {cp.engine_step_tokens} tokens computed by vLLM's count "
               f"({want_tokens} expected)")
    if not cp.completed or cp.engine_step_tokens != want_tokens:
        return check(cid, name, False, counted + ("" if cp.completed else "; did not complete"),
                     {"tokens": want_tokens}, {"tokens": cp.engine_step_tokens}, metric)
    if cp.prefill_steps < need:
        return not_run(cid, name, counted + "; vLLM counts the whole prompt in the step that emits the first token, "
                                            "so its counters cannot show the chunks", metric)
    return check(cid, name, True, counted, {"prefill_steps_at_least": need, "tokens": want_tokens},
                 {"prefill_steps": cp.prefill_steps, "tokens": cp.engine_step_tokens}, metric)


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
