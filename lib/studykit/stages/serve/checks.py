"""The serve stage's checks."""

from __future__ import annotations

from studykit.checks import argv_has, completed_all, mean_matches_raw, token_totals

def serve_checks(p, result: dict) -> list[dict]:
    out = []
    for run in result.get("runs", []):
        w = f"{run['name']}: "
        out.append(completed_all(p.num_prompts, run["completed"], run.get("failed"), where=w))
        out += token_totals(p.num_prompts, p.input_len, p.output_len, prompt_tokens=run["total_input_tokens"],
                            output_tokens=run["total_output_tokens"], where=w)
        per = run.get("per_request") or {}
        out.append(mean_matches_raw(per.get("ttfts") or [], per.get("errors"), run.get("mean_ttft_ms"),
                                    what="TTFT", where=w, metric="serve.mean_ttft_ms"))
        out.append(mean_matches_raw(per.get("latencies") or [], per.get("errors"), run.get("mean_e2el_ms"),
                                    what="end-to-end latency", where=w, metric="serve.mean_e2el_ms"))
    for cmd in result.get("commands", []):
        want = {"--dataset-name": "random", "--random-input-len": p.input_len, "--random-output-len": p.output_len,
                "--num-prompts": p.num_prompts, "--request-rate": cmd["request_rate_arg"],
                "--seed": p.seed, "--save-result": None, "--save-detailed": None}
        if cmd.get("max_concurrency"):
            want["--max-concurrency"] = cmd["max_concurrency"]
        out.append(argv_has(cmd["argv"], want, where=f"{cmd['label']}: "))
    return out
