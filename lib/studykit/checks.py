"""Consistency checks run on every performance result and stored with it.

Each check is a flat record {"name", "passed", "detail", "expected", "actual"}; a failed check fails the stage.
They catch the mistakes the seed report made: token totals that do not match the requested shape (its
throughput run used the random dataset's default lengths), rates that do not agree with each other.
"""

from __future__ import annotations

from typing import Any, Iterable

REL_TOL = 0.01


def check(name: str, passed: bool, detail: str, expected: Any = None, actual: Any = None) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail, "expected": expected, "actual": actual}


def close(a: float, b: float, rel: float = REL_TOL) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def token_totals(num_prompts: int, input_len: int, output_len: int, *, prompt_tokens: int | None = None,
                 output_tokens: int | None = None, total_tokens: int | None = None, where: str = "") -> list[dict]:
    out = []
    for label, actual, want in (("prompt", prompt_tokens, num_prompts * input_len),
                                ("output", output_tokens, num_prompts * output_len),
                                ("total", total_tokens, num_prompts * (input_len + output_len))):
        if actual is None:
            continue
        out.append(check(f"{where}{label} tokens = num_prompts x length", actual == want,
                         f"{num_prompts} prompts x {want // num_prompts} tokens = {want}; result says {actual}",
                         want, actual))
    return out


def rate_agreement(requests_per_s: float, tokens_per_request: float, tokens_per_s: float, *, what: str = "total",
                   where: str = "") -> dict:
    implied = requests_per_s * tokens_per_request
    return check(f"{where}requests/s x {what} tokens per request = {what} tokens/s",
                 close(implied, tokens_per_s),
                 f"{requests_per_s:.4g} req/s x {tokens_per_request:g} tok/req = {implied:.6g} tok/s; result says "
                 f"{tokens_per_s:.6g} ({tokens_per_s / requests_per_s:.1f} tok/req)" if requests_per_s else
                 "requests/s is 0", round(implied, 4), tokens_per_s)


def percentile_order(values: dict[str, float], *, where: str = "") -> dict:
    """values like {"p50": x, "p90": y, "p99": z} in ascending percentile order."""
    items = [(k, v) for k, v in values.items() if v is not None]
    ok = all(a[1] <= b[1] * (1 + 1e-9) for a, b in zip(items, items[1:]))
    return check(f"{where}{' <= '.join(k for k, _ in items)}", ok,
                 ", ".join(f"{k}={v:.6g}" for k, v in items), "non-decreasing", [v for _, v in items])


def completed_all(num_prompts: int, completed: int, failed: int | None, *, where: str = "") -> dict:
    ok = completed == num_prompts and not failed
    return check(f"{where}completed = num_prompts and failed = 0", ok,
                 f"completed {completed} of {num_prompts}, failed {failed}", [num_prompts, 0], [completed, failed])


def argv_has(argv: list[str], expected: dict[str, str | None], *, where: str = "") -> dict:
    """The recorded command carries each flag with the value the params asked for (None: flag present)."""
    wrong = {}
    for flag, want in expected.items():
        if flag not in argv:
            wrong[flag] = "missing"
            continue
        if want is None:
            continue
        # last occurrence wins in argparse, so an extra_args override is what ran
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
        pct = run["percentiles"]
        out.append(percentile_order({f"p{k}": pct[k] for k in ("10", "25", "50", "75", "90", "99") if k in pct},
                                    where=f"{name}: "))
        out.append(check(f"{name}: iterations measured = num_iters", run["num_iters_measured"] == p.num_iters,
                         f"{run['num_iters_measured']} latencies for num_iters {p.num_iters}",
                         p.num_iters, run["num_iters_measured"]))
    for cmd in result.get("commands", []):
        want_out = p.output_len if cmd["label"].endswith("-latency") else 1
        out.append(argv_has(cmd["argv"], {"--input-len": p.input_len, "--output-len": want_out,
                                          "--batch-size": p.batch_size, "--num-iters": p.num_iters,
                                          "--num-iters-warmup": p.num_iters_warmup, "--output-json": None},
                            where=f"{cmd['label']}: "))
    if "decode_ms_per_token" in result:
        d = result["decode_ms_per_token"]
        out.append(check("decode time per token > 0", d > 0,
                         f"(latency(N) - latency(1)) / (N - 1) = {d:.4g} ms", "> 0", d))
    return out


def throughput_checks(p, result: dict) -> list[dict]:
    out = token_totals(p.num_prompts, p.input_len, p.output_len, total_tokens=result["total_num_tokens"])
    out += token_totals(p.num_prompts, p.input_len, p.output_len,
                        prompt_tokens=result.get("stdout_totals", {}).get("total_prompt_tokens"),
                        output_tokens=result.get("stdout_totals", {}).get("total_output_tokens"),
                        where="vLLM stdout: ")
    out.append(check("num_requests = num_prompts", result["num_requests"] == p.num_prompts,
                     f"{result['num_requests']} requests for num_prompts {p.num_prompts}",
                     p.num_prompts, result["num_requests"]))
    out.append(rate_agreement(result["requests_per_second"], p.input_len + p.output_len,
                              result["tokens_per_second"]))
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
        if run["completed"]:
            out.append(rate_agreement(run["request_throughput"], run["total_output_tokens"] / run["completed"],
                                      run["output_throughput"], what="output", where=w))
        for m in ("ttft", "tpot", "itl", "e2el"):
            vals = {q: run.get(f"{q}_{m}_ms") for q in ("p50", "p90", "p99")}
            if any(v is not None for v in vals.values()):
                out.append(percentile_order(vals, where=f"{w}{m} "))
    for cmd in result.get("commands", []):
        want = {"--dataset-name": "random", "--random-input-len": p.input_len, "--random-output-len": p.output_len,
                "--num-prompts": p.num_prompts, "--request-rate": cmd["request_rate"] if cmd["request_rate"] != float("inf") else "inf",
                "--seed": p.seed, "--save-result": None, "--save-detailed": None}
        if isinstance(want["--request-rate"], float):
            want["--request-rate"] = f"{want['--request-rate']:g}"
        if cmd.get("max_concurrency"):
            want["--max-concurrency"] = cmd["max_concurrency"]
        out.append(argv_has(cmd["argv"], want, where=f"{cmd['label']}: "))
    return out


def failed(checks: Iterable[dict]) -> list[str]:
    return [f"check failed: {c['name']}: {c['detail']}" for c in checks if not c["passed"]]
