"""The serve stage's checks: per run, all requests completed, token totals against num_prompts x length, and
vLLM's mean TTFT and mean end-to-end latency recomputed from its own per-request values, its energy per output
token; per command, the point it ran is one the params plan, and its flags match the params and that point."""

from __future__ import annotations

from studykit.checks import argv_has, check, completed_all, energy_per_token, mean_matches_raw, token_totals
from studykit.schema.base import Check
from studykit.stages.serve.params import ServeParams
from studykit.stages.serve.result import ServeResult
from studykit.stages.serve.stage import fmt_rate, points


def checks(p: ServeParams, result: ServeResult) -> list[Check]:
    out = []
    for run in result.runs:
        w = f"{run.name}: "
        out.append(completed_all("serve", p.num_prompts, run.completed, run.failed, where=w))
        out += token_totals("serve", p.num_prompts, p.input_len, p.output_len, prompt_tokens=run.total_input_tokens,
                            output_tokens=run.total_output_tokens, where=w)
        per = run.per_request
        out.append(mean_matches_raw("serve", per.get("ttfts") or [], per.get("errors"), run.mean_ttft_ms,
                                    what="TTFT", where=w, metric="serve.mean_ttft_ms"))
        out.append(mean_matches_raw("serve", per.get("latencies") or [], per.get("errors"), run.mean_e2el_ms,
                                    what="end-to-end latency", where=w, metric="serve.mean_e2el_ms"))
    tokens = {run.name: run.total_output_tokens for run in result.runs}
    for tel in result.telemetry:
        out.append(energy_per_token("serve", tel, tokens.get(tel.label), tel.label))
    planned = {pt["name"]: [fmt_rate(pt["request_rate"]), pt["max_concurrency"]]
               for pt in points(p, result.sweep.rates if result.sweep else None)}
    for cmd in result.commands:
        out.append(check("serve.point_planned", f"{cmd.label}: point is one the params ask for",
                         planned.get(cmd.run) == [cmd.request_rate, cmd.max_concurrency],
                         f"run {cmd.run}: rate {cmd.request_rate}, max_concurrency {cmd.max_concurrency}; the params "
                         f"plan {planned.get(cmd.run, 'no such run')}", planned.get(cmd.run),
                         [cmd.request_rate, cmd.max_concurrency], subject=cmd.label))
        want = {"--dataset-name": "random", "--random-input-len": p.input_len, "--random-output-len": p.output_len,
                "--num-prompts": p.num_prompts, "--request-rate": cmd.request_rate,
                "--seed": p.seed, "--save-result": None, "--save-detailed": None}
        if cmd.max_concurrency:
            want["--max-concurrency"] = cmd.max_concurrency
        out.append(argv_has("serve", cmd.argv, want, where=f"{cmd.label}: "))
    return out
