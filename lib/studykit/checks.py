"""Consistency checks run on every performance result and stored with it (schema.base.Check).

Every check compares two things that could disagree: the requested shape against what vLLM counted, vLLM's
summary numbers against its own raw per-request/per-iteration data, the kit's derived figures against what vLLM
printed, the recorded command against the params. None is true by construction (a test feeds each a wrong
result). A check whose input is missing is `not_run` with the reason, never passed. A failed check fails the
stage; they catch the mistakes the seed made (token totals that do not match the requested shape, a derived
rate that does not fit the counts).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from studykit.schema.base import Check

REL_TOL = 0.01


def check(id: str, name: str, passed: bool, detail: str, expected: Any = None, actual: Any = None,
          metric: str | None = None, subject: str | None = None) -> Check:
    """`id` is `<stage>.<check>` (what the report and tests select by); `subject` says which run, point or
    command of the stage it looked at when a stage runs the same check on several."""
    return Check(id=id, subject=subject, name=name, status="passed" if passed else "failed", detail=detail,
                 expected=expected, actual=actual, metric=metric)


def not_run(id: str, name: str, reason: str, metric: str | None = None, subject: str | None = None) -> Check:
    return Check(id=id, subject=subject, name=name, status="not_run", detail=reason, metric=metric)


def _subject(where: str) -> str | None:
    return where.rstrip(": ") or None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def close(a: float, b: float, rel: float = REL_TOL) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def token_totals(stage: str, num_prompts: int, input_len: int, output_len: int, *, prompt_tokens: int | None = None,
                 output_tokens: int | None = None, total_tokens: int | None = None, where: str = "",
                 missing_reason: str | None = None, metrics: dict[str, str] | None = None) -> list[Check]:
    """Counted tokens against num_prompts x length. With missing_reason, an absent prompt or output count is a
    not-run check (the total is checked only where a source gives it)."""
    out = []
    for label, actual, want in (("prompt", prompt_tokens, num_prompts * input_len),
                                ("output", output_tokens, num_prompts * output_len),
                                ("total", total_tokens, num_prompts * (input_len + output_len))):
        if label == "total" and actual is None:
            continue
        name = f"{where}{label} tokens = num_prompts x length"
        cid, metric = f"{stage}.{label}_tokens_match_shape", (metrics or {}).get(label)
        if actual is None:
            if missing_reason:
                out.append(not_run(cid, name, missing_reason, metric, _subject(where)))
            continue
        out.append(check(cid, name, actual == want,
                         f"{num_prompts} prompts x {want // num_prompts} tokens = {want}; result says {actual}",
                         want, actual, metric, _subject(where)))
    return out


def rate_agreement(stage: str, requests_per_s: float, tokens_per_request: float, tokens_per_s: float, *,
                   what: str = "total", where: str = "") -> Check:
    """For a published table (hand-copied numbers can disagree); vLLM's own rates agree by definition."""
    implied = requests_per_s * tokens_per_request
    return check(f"{stage}.{what}_rate_agreement", f"{where}requests/s x {what} tokens per request = {what} tokens/s",
                 close(implied, tokens_per_s),
                 f"{requests_per_s:.4g} req/s x {tokens_per_request:g} tok/req = {implied:.6g} tok/s; result says "
                 f"{tokens_per_s:.6g} ({tokens_per_s / requests_per_s:.1f} tok/req)" if requests_per_s else
                 "requests/s is 0", round(implied, 4), tokens_per_s, subject=_subject(where))


def percentiles_match_raw(stage: str, latencies: list[float], percentiles: dict[str, float], *, where: str = "",
                          metric: str | None = None) -> Check:
    """Parse check: vLLM's reported percentiles recomputed from its own per-iteration latencies (numpy, linear).
    It catches a parsing slip (a field read from the wrong place), not an engine defect."""
    import numpy as np

    cid, name = f"{stage}.parse_percentiles", f"{where}percentiles = percentiles of the per-iteration latencies"
    if not latencies or not percentiles:
        return not_run(cid, name, "no per-iteration latencies or percentiles in vLLM's JSON", metric, _subject(where))
    recomputed = {k: float(np.percentile(latencies, float(k))) for k in percentiles}
    wrong = {k: (percentiles[k], round(recomputed[k], 6)) for k in percentiles
             if not close(percentiles[k], recomputed[k], 1e-6)}
    return check(cid, name, not wrong, f"{len(latencies)} latencies; " + (f"differ: {wrong}" if wrong else
                                                                        "all percentiles agree"),
                 {k: round(v, 6) for k, v in recomputed.items()}, percentiles, metric, _subject(where))


def mean_matches_raw(stage: str, values_s: list[float], errors: list[str] | None, reported_ms: float | None, *,
                     what: str, where: str = "", metric: str | None = None) -> Check:
    """Parse check: a summary mean (ms) recomputed from the per-request values (s) of the successful requests."""
    cid, name = f"{stage}.parse_mean_{_slug(what)}", f"{where}mean {what} = mean of the per-request values"
    if not values_s or reported_ms is None:
        return not_run(cid, name, f"no per-request {what} values or no mean in vLLM's JSON", metric, _subject(where))
    ok_values = [v for v, e in zip(values_s, errors or [""] * len(values_s)) if not e]
    if not ok_values:
        return not_run(cid, name, "no successful request", metric, _subject(where))
    recomputed = 1000 * sum(ok_values) / len(ok_values)
    return check(cid, name, close(recomputed, reported_ms, 1e-6),
                 f"{len(ok_values)} requests: {recomputed:.4f} ms recomputed; vLLM says {reported_ms:.4f} ms",
                 round(recomputed, 6), reported_ms, metric, _subject(where))


def completed_all(stage: str, num_prompts: int, completed: int, failed: int | None, *, where: str = "") -> Check:
    ok = completed == num_prompts and not failed
    return check(f"{stage}.completed_all", f"{where}completed = num_prompts and failed = 0", ok,
                 f"completed {completed} of {num_prompts}, failed {failed}", [num_prompts, 0], [completed, failed],
                 subject=_subject(where))


def argv_has(stage: str, argv: list[str], expected: dict[str, str | None], *, where: str = "") -> Check:
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
    return check(f"{stage}.command_matches_params", f"{where}command matches params", not wrong,
                 "all flags as requested" if not wrong else f"differs: {wrong}",
                 {k: v for k, v in expected.items()}, wrong or "as expected", subject=_subject(where))


# An energy that covers less of its window than this leaves out more than a fifth of the window's joules while its
# tokens are all of the window's: its J/token would read low by as much.
MIN_ENERGY_COVERAGE = 0.8


def energy_per_token(stage: str, telemetry, tokens: int | None, subject: str) -> Check:
    """A window's energy row (`energy` / `energy_not_run` of a bench's telemetry window, studykit.energy.
    TelemetryEnergy, or of a profile window) against the stage's own count of the window's output tokens: joules > 0, J/token = joules / tokens, enough of the window sampled.
    not_run with the reason when the window has no energy."""
    cid, metric = f"{stage}.energy_per_token", f"{stage}.joules_per_token"
    name = "energy per output token of the window (joules > 0, the stage's token count, enough of the window sampled)"
    e = telemetry.energy
    if e is None:
        return not_run(cid, name, telemetry.energy_not_run or "the result records no energy for this window", metric,
                       subject)
    per_token = e.joules_per_token is not None and bool(e.output_tokens) and \
        abs(e.joules_per_token - e.joules / e.output_tokens) <= 1e-9 * abs(e.joules)
    ok = e.joules > 0 and e.output_tokens == tokens and per_token and e.coverage >= MIN_ENERGY_COVERAGE
    return check(cid, name, ok,
                 f"{e.joules:.4g} J over {e.output_tokens} tokens = {e.joules_per_token or 0:.4g} J/token, "
                 f"{e.coverage * 100:.1f} % of the window sampled ({e.source}); the stage counted {tokens} tokens, "
                 f"at least {MIN_ENERGY_COVERAGE * 100:.0f} % sampled wanted",
                 {"output_tokens": tokens, "joules": "> 0", "coverage": f">= {MIN_ENERGY_COVERAGE}"},
                 {"output_tokens": e.output_tokens, "joules": e.joules, "coverage": round(e.coverage, 4)},
                 metric, subject)


def command_args(command: str) -> dict[str, Any]:
    """A `vllm serve` command line as vLLM's argument names: {"model": path, "max_model_len": "2048",
    "enforce_eager": True, ...}; the last of a repeated flag wins, as in argparse."""
    import shlex

    argv = shlex.split(command)
    if "serve" not in argv:
        raise ValueError(f"not a vllm serve command: {command[:120]!r}")
    rest = argv[argv.index("serve") + 1:]
    out: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        a = rest[i]
        if a.startswith("--"):
            key = a[2:].replace("-", "_")
            if i + 1 < len(rest) and not rest[i + 1].startswith("--"):
                out[key] = rest[i + 1]
                i += 2
                continue
            out[key] = True
        elif "model" not in out:
            out["model"] = a
        i += 1
    return out


def logged_args_match(stage: str, command: str, logged: dict[str, Any] | None, *, subject: str | None = None) -> Check:
    """The command the kit ran against the `non-default args` vLLM logged at start (what vLLM says it parsed):
    catches a flag overridden by extra_args, dropped by a launcher or read differently by the installed vLLM. A
    flag vLLM does not list was taken at its default value; one it lists that the command lacks came from
    elsewhere (an environment variable, a config file)."""
    cid, name = f"{stage}.engine_args_match_command", "vLLM's logged non-default args = the command's flags"
    if logged is None:
        return not_run(cid, name, "the server log has no 'non-default args' line", subject=subject)
    ours = command_args(command)

    def same(mine, theirs) -> bool:
        if isinstance(theirs, list):
            return [str(x) for x in theirs] == [str(mine)]
        if isinstance(theirs, bool) or mine is True:
            return mine is True and theirs is True or str(mine).lower() == str(theirs).lower()
        return str(mine) == str(theirs)

    differ = {k: (ours[k], v) for k, v in logged.items() if k in ours and not same(ours[k], v)}
    extra = sorted(k for k in logged if k not in ours and k != "model_tag")
    defaulted = sorted(k for k in ours if k not in logged)
    detail = (f"differ (command, vLLM): {differ}; " if differ else "") + \
        (f"vLLM lists args the command did not set: {extra}; " if extra else "") + \
        f"{len(ours) - len(defaulted)} flags as logged" + (f"; taken at vLLM's default: {defaulted}" if defaulted else "")
    return check(cid, name, not differ and not extra, detail, {k: ours[k] for k in ours if k in logged},
                 {k: v for k, v in logged.items() if k != "model_tag"}, subject=subject)


def failed(checks: Iterable[Check]) -> list[str]:
    """What fails the stage: failed checks, and inconclusive ones (a gate the study did not accept as such)."""
    return [f"check {c.status}: {c.name}: {c.detail}" for c in checks if c.status in ("failed", "inconclusive")]

