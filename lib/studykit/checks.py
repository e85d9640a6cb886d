"""Consistency checks run on every performance result and stored with it (schema.base.Check).

Every check compares two things that could disagree: the requested shape against what vLLM counted, vLLM's
summary numbers against its own raw per-request/per-iteration data, the kit's derived figures against what vLLM
printed, the recorded command against the params. None is true by construction (a test feeds each a wrong
result). A check whose input is missing is `not_run` with the reason, never passed. A failed check fails the
stage; they catch the mistakes the seed made (token totals that do not match the requested shape, a derived
rate that does not fit the counts).
"""

from __future__ import annotations

from typing import Any, Iterable

REL_TOL = 0.01


def check(name: str, passed: bool, detail: str, expected: Any = None, actual: Any = None,
          metric: str | None = None) -> dict[str, Any]:
    return {"name": name, "status": "passed" if passed else "failed", "detail": detail, "expected": expected,
            "actual": actual, "metric": metric}


def not_run(name: str, reason: str, metric: str | None = None) -> dict[str, Any]:
    return {"name": name, "status": "not_run", "detail": reason, "expected": None, "actual": None, "metric": metric}


def close(a: float, b: float, rel: float = REL_TOL) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def token_totals(num_prompts: int, input_len: int, output_len: int, *, prompt_tokens: int | None = None,
                 output_tokens: int | None = None, total_tokens: int | None = None, where: str = "",
                 missing_reason: str | None = None, metrics: dict[str, str] | None = None) -> list[dict]:
    """Counted tokens against num_prompts x length. With missing_reason, an absent prompt or output count is a
    not-run check (the total is checked only where a source gives it)."""
    out = []
    for label, actual, want in (("prompt", prompt_tokens, num_prompts * input_len),
                                ("output", output_tokens, num_prompts * output_len),
                                ("total", total_tokens, num_prompts * (input_len + output_len))):
        if label == "total" and actual is None:
            continue
        name = f"{where}{label} tokens = num_prompts x length"
        metric = (metrics or {}).get(label)
        if actual is None:
            if missing_reason:
                out.append(not_run(name, missing_reason, metric))
            continue
        out.append(check(name, actual == want,
                         f"{num_prompts} prompts x {want // num_prompts} tokens = {want}; result says {actual}",
                         want, actual, metric))
    return out


def rate_agreement(requests_per_s: float, tokens_per_request: float, tokens_per_s: float, *, what: str = "total",
                   where: str = "") -> dict:
    """For a published table (hand-copied numbers can disagree); vLLM's own rates agree by definition."""
    implied = requests_per_s * tokens_per_request
    return check(f"{where}requests/s x {what} tokens per request = {what} tokens/s",
                 close(implied, tokens_per_s),
                 f"{requests_per_s:.4g} req/s x {tokens_per_request:g} tok/req = {implied:.6g} tok/s; result says "
                 f"{tokens_per_s:.6g} ({tokens_per_s / requests_per_s:.1f} tok/req)" if requests_per_s else
                 "requests/s is 0", round(implied, 4), tokens_per_s)


def percentiles_match_raw(latencies: list[float], percentiles: dict[str, float], *, where: str = "",
                          metric: str | None = None) -> dict:
    """vLLM's reported percentiles recomputed from its own per-iteration latencies (numpy, linear)."""
    import numpy as np

    name = f"{where}percentiles = percentiles of the per-iteration latencies"
    if not latencies or not percentiles:
        return not_run(name, "no per-iteration latencies or percentiles in vLLM's JSON", metric)
    recomputed = {k: float(np.percentile(latencies, float(k))) for k in percentiles}
    wrong = {k: (percentiles[k], round(recomputed[k], 6)) for k in percentiles
             if not close(percentiles[k], recomputed[k], 1e-6)}
    return check(name, not wrong, f"{len(latencies)} latencies; " + (f"differ: {wrong}" if wrong else
                                                                        "all percentiles agree"),
                 {k: round(v, 6) for k, v in recomputed.items()}, percentiles, metric)


def mean_matches_raw(values_s: list[float], errors: list[str] | None, reported_ms: float | None, *, what: str,
                     where: str = "", metric: str | None = None) -> dict:
    """A summary mean (ms) recomputed from the per-request values (s) of the successful requests."""
    name = f"{where}mean {what} = mean of the per-request values"
    if not values_s or reported_ms is None:
        return not_run(name, f"no per-request {what} values or no mean in vLLM's JSON", metric)
    ok_values = [v for v, e in zip(values_s, errors or [""] * len(values_s)) if not e]
    if not ok_values:
        return not_run(name, "no successful request", metric)
    recomputed = 1000 * sum(ok_values) / len(ok_values)
    return check(name, close(recomputed, reported_ms, 1e-6),
                 f"{len(ok_values)} requests: {recomputed:.4f} ms recomputed; vLLM says {reported_ms:.4f} ms",
                 round(recomputed, 6), reported_ms, metric)


def completed_all(num_prompts: int, completed: int, failed: int | None, *, where: str = "") -> dict:
    ok = completed == num_prompts and not failed
    return check(f"{where}completed = num_prompts and failed = 0", ok,
                 f"completed {completed} of {num_prompts}, failed {failed}", [num_prompts, 0], [completed, failed])


def argv_has(argv: list[str], expected: dict[str, str | None], *, where: str = "") -> dict:
    """The recorded command carries each flag with the value the params asked for (None: flag present).
    extra_args can override a flag (argparse keeps the last one): this says when they did."""
    wrong = {}
    for flag, want in expected.items():
        if flag not in argv:
            wrong[flag] = "missing"
            continue
        if want is None:
            continue
        idx = len(argv) - 1 - argv[::-1].index(flag)
        got = argv[idx + 1] if idx + 1 < len(argv) else None
        if got != str(want):
            wrong[flag] = got
    return check(f"{where}command matches params", not wrong,
                 "all flags as requested" if not wrong else f"differs: {wrong}",
                 {k: v for k, v in expected.items()}, wrong or "as expected")


# --- per stage -------------------------------------------------------------------------------------------

def latency_checks(p, result: dict) -> list[dict]:
    out = []
    for name, run in result.get("runs", {}).items():
        out.append(percentiles_match_raw(run["latencies"], run["percentiles"], where=f"{name}: ",
                                         metric="latency.p50_latency_s" if name == "latency" else None))
        out.append(check(f"{name}: iterations measured = num_iters", run["num_iters_measured"] == p.num_iters,
                         f"{run['num_iters_measured']} latencies for num_iters {p.num_iters}",
                         p.num_iters, run["num_iters_measured"]))
    for cmd in result.get("commands", []):
        want_out = p.output_len if cmd["label"].endswith("-latency") else 1
        out.append(argv_has(cmd["argv"], {"--input-len": p.input_len, "--output-len": want_out,
                                          "--batch-size": p.batch_size, "--num-iters": p.num_iters,
                                          "--num-iters-warmup": p.num_iters_warmup, "--output-json": None},
                            where=f"{cmd['label']}: "))
    name = "latency(N) > latency(1), so decode time per token > 0"
    if result.get("decode_ms_per_token") is None:
        out.append(not_run(name, "the output_len 1 run did not complete", "latency.decode_ms_per_token"))
    else:
        d = result["decode_ms_per_token"]
        out.append(check(name, d > 0, f"(latency(N) - latency(1)) / (N - 1) = {d:.4g} ms", "> 0", d,
                         "latency.decode_ms_per_token"))
    return out


def throughput_checks(p, result: dict) -> list[dict]:
    out = token_totals(p.num_prompts, p.input_len, p.output_len, total_tokens=result["total_num_tokens"],
                       where="vLLM JSON: ")
    printed = result.get("vllm_printed") or {}
    out += token_totals(p.num_prompts, p.input_len, p.output_len,
                        prompt_tokens=printed.get("total_prompt_tokens"),
                        output_tokens=printed.get("total_output_tokens"), where="vLLM printed: ",
                        missing_reason="vLLM printed no 'Total num ... tokens' line",
                        metrics={"prompt": "throughput.printed_prompt_tokens",
                                 "output": "throughput.printed_output_tokens"})
    name = "derived output tokens/s = vLLM's printed output tokens/s"
    if printed.get("output_tokens_per_s") is None or result.get("output_tokens_per_s") is None:
        out.append(not_run(name, "vLLM printed no 'Throughput: ... output tokens/s' line",
                           "throughput.output_tokens_per_s"))
    else:
        derived, shown = result["output_tokens_per_s"], printed["output_tokens_per_s"]
        # vLLM prints 2 decimals: allow that rounding on top of the relative tolerance
        out.append(check(name, abs(derived - shown) <= max(REL_TOL * shown, 0.006),
                         f"num_requests x output_len / elapsed_time = {derived:.2f}; vLLM printed {shown:.2f}",
                         shown, round(derived, 4), "throughput.output_tokens_per_s"))
    out.append(check("num_requests = num_prompts", result["num_requests"] == p.num_prompts,
                     f"{result['num_requests']} requests for num_prompts {p.num_prompts}",
                     p.num_prompts, result["num_requests"]))
    for cmd in result.get("commands", []):
        out.append(argv_has(cmd["argv"], {"--dataset-name": "random", "--random-input-len": p.input_len,
                                          "--random-output-len": p.output_len, "--num-prompts": p.num_prompts,
                                          "--output-json": None}, where=f"{cmd['label']}: "))
    return out


def seed_table_checks(req_s: float, total_tok_s: float, output_tok_s: float, prompt_tokens: int, output_tokens: int,
                      num_prompts: int, input_len: int, output_len: int) -> list[dict]:
    """Checks on a published throughput table (what the seed report gives) against the shape it claims."""
    out = token_totals(num_prompts, input_len, output_len, prompt_tokens=prompt_tokens, output_tokens=output_tokens)
    out.append(rate_agreement(req_s, input_len + output_len, total_tok_s))
    out.append(rate_agreement(req_s, output_len, output_tok_s, what="output"))
    return out


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


def failed(checks: Iterable[dict]) -> list[str]:
    return [f"check failed: {c['name']}: {c['detail']}" for c in checks if c["status"] == "failed"]

