"""The throughput stage's checks: token totals against num_prompts x length (vLLM's JSON and the counts it
prints), the derived output tokens/s against the one vLLM prints, the request count, each command against the
params, the energy per output token; and `seed_table_checks` for a published throughput table (the seed's)."""

from __future__ import annotations

from studykit.checks import REL_TOL, argv_has, check, energy_per_token, not_run, rate_agreement, token_totals
from studykit.schema.base import Check
from studykit.stages.throughput.params import ThroughputParams
from studykit.stages.throughput.result import ThroughputResult


def checks(p: ThroughputParams, result: ThroughputResult) -> list[Check]:
    out = token_totals("throughput", p.num_prompts, p.input_len, p.output_len, total_tokens=result.total_num_tokens,
                       where="vLLM JSON: ")
    printed = result.vllm_printed
    out += token_totals("throughput", p.num_prompts, p.input_len, p.output_len,
                        prompt_tokens=printed.total_prompt_tokens, output_tokens=printed.total_output_tokens,
                        where="vLLM printed: ", missing_reason="vLLM printed no 'Total num ... tokens' line",
                        metrics={"prompt": "throughput.printed_prompt_tokens",
                                 "output": "throughput.printed_output_tokens"})
    cid, name = "throughput.output_rate_matches_printed", "derived output tokens/s = vLLM's printed output tokens/s"
    if printed.output_tokens_per_s is None or result.output_tokens_per_s is None:
        out.append(not_run(cid, name, "vLLM printed no 'Throughput: ... output tokens/s' line",
                           "throughput.output_tokens_per_s"))
    else:
        derived, shown = result.output_tokens_per_s, printed.output_tokens_per_s
        # vLLM prints 2 decimals: allow that rounding on top of the relative tolerance
        out.append(check(cid, name, abs(derived - shown) <= max(REL_TOL * shown, 0.006),
                         f"num_requests x output_len / elapsed_time = {derived:.2f}; vLLM printed {shown:.2f}",
                         shown, round(derived, 4), "throughput.output_tokens_per_s"))
    out.append(check("throughput.num_requests_match", "num_requests = num_prompts",
                     result.num_requests == p.num_prompts,
                     f"{result.num_requests} requests for num_prompts {p.num_prompts}",
                     p.num_prompts, result.num_requests))
    for cmd in result.commands:
        out.append(argv_has("throughput", cmd.argv, {
            "--dataset-name": "random", "--random-input-len": p.input_len, "--random-output-len": p.output_len,
            "--num-prompts": p.num_prompts, "--output-json": None}, where=f"{cmd.label}: "))
    for tel in result.telemetry:
        out.append(energy_per_token("throughput", tel, result.total_output_tokens, tel.label))
    return out


def seed_table_checks(req_s: float, total_tok_s: float, output_tok_s: float, prompt_tokens: int, output_tokens: int,
                      num_prompts: int, input_len: int, output_len: int) -> list[Check]:
    """Checks on a published throughput table (what the seed report gives) against the shape it claims; their
    subject is "published table" (ids as the stage's own: throughput.prompt_tokens_match_shape, ...)."""
    where = "published table: "
    out = token_totals("throughput", num_prompts, input_len, output_len, prompt_tokens=prompt_tokens,
                       output_tokens=output_tokens, where=where)
    out.append(rate_agreement("throughput", req_s, input_len + output_len, total_tok_s, where=where))
    out.append(rate_agreement("throughput", req_s, output_len, output_tok_s, what="output", where=where))
    return out
