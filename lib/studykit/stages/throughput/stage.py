"""`vllm bench throughput`: num_prompts random prompts through the offline engine at once.

The lengths go to the random dataset (--random-input-len/--random-output-len): plain --input-len/--output-len
are overridden by the random dataset's defaults in this vLLM. vLLM's JSON has no output token count, so
output tokens = num_prompts x output_len (the random dataset asks for exactly that many, ignore_eos) and
output_tokens_per_s is derived from it; the record says so under "derived".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studykit.energy import telemetry_energy
from studykit.engine import cmdline
from studykit.engine.benchjson import NUM, BenchParseError, check_ran, load_bench_json
from studykit.engine.telemetry import Telemetry
from studykit.evidence.rundir import RunLayout
from studykit.plan import Step
from studykit.stages.benchtools import command_entry, engine_window, telemetry_charts
from studykit.stages.throughput.params import ThroughputParams
from studykit.stages.throughput.result import ThroughputResult


def throughput_args(p: ThroughputParams, output_json: str | Path | None = None) -> list[str]:
    args = ["--dataset-name", "random", "--random-input-len", str(p.input_len),
            "--random-output-len", str(p.output_len), "--num-prompts", str(p.num_prompts)]
    if output_json:
        args += ["--output-json", str(output_json)]
    return args + list(p.extra_args)


def parse_throughput_json(path: str | Path, output_len: int | None = None, input_len: int | None = None
                          ) -> dict[str, Any]:
    """vLLM's elapsed_time, num_requests, total_num_tokens, requests_per_second, tokens_per_second, plus the
    derived token split when the requested lengths are given."""
    data = load_bench_json(path, {"elapsed_time": NUM, "num_requests": int, "total_num_tokens": int,
                                  "requests_per_second": NUM, "tokens_per_second": NUM})
    if data["elapsed_time"] <= 0 or data["num_requests"] <= 0:
        raise BenchParseError(f"{path}: elapsed_time and num_requests must be > 0, got "
                              f"{data['elapsed_time']!r} and {data['num_requests']!r}")
    rec = {k: data[k] for k in ("elapsed_time", "num_requests", "total_num_tokens", "requests_per_second",
                                "tokens_per_second")}
    if output_len is not None:
        rec.update(derive_tokens(rec, output_len, input_len))
    return rec


def derive_tokens(rec: dict[str, Any], output_len: int, input_len: int | None = None) -> dict[str, Any]:
    out_tokens = rec["num_requests"] * output_len
    prompt_tokens = rec["total_num_tokens"] - out_tokens
    derived = {"total_output_tokens": out_tokens, "total_prompt_tokens": prompt_tokens,
               "output_tokens_per_s": out_tokens / rec["elapsed_time"],
               "derived": {"total_output_tokens": "num_requests x output_len (vLLM's JSON has no output count)",
                           "total_prompt_tokens": "total_num_tokens - total_output_tokens",
                           "output_tokens_per_s": "total_output_tokens / elapsed_time"}}
    return derived


def plan(study, model_dir: Path, run_dir, port=None) -> list[Step]:
    out_json = RunLayout(run_dir).raw_dir("throughput") / "throughput.json"
    return [Step("throughput", "bench-throughput", "command",
                 cmdline.bench_argv(study, "throughput", model_dir, throughput_args(study.throughput, out_json)))]


def run(ctx, p: ThroughputParams) -> ThroughputResult:
    """The bench, its JSON with the derived token split, and what vLLM printed beside it; what was measured is
    kept if it fails (ctx.keep)."""
    data: dict[str, Any] = {"params": p.model_dump(), "commands": [], "telemetry": []}
    with ctx.keep(data):
        idle = ctx.idle_power()
        data.update(idle)
        out_json = ctx.raw_dir / "throughput.json"
        (step,) = ctx.plan()
        with Telemetry(ctx.study.platform, label="throughput") as tel:
            rec = ctx.run_step(step)
        data["telemetry"].append({**tel.to_dict(), **engine_window(rec)})
        data["commands"].append(command_entry(rec))
        check_ran(rec, out_json)
        data["raw"] = str(out_json)
        data.update(parse_throughput_json(out_json, p.output_len, p.input_len))
        data["vllm_printed"] = printed_totals(rec.log)
        # the window (engine ready to the end) holds the whole bench: vLLM warms up only with --num-warmups
        data["telemetry"][-1].update(telemetry_energy(data["telemetry"][-1], data["total_output_tokens"],
                                                      idle.get("idle_power_w")))
    return ctx.result(data)


def charts(ctx, result: ThroughputResult) -> list[str]:
    """The bench is one number per field: the only chart is its telemetry."""
    return telemetry_charts(ctx, result.telemetry)


def printed_totals(log_path: str | Path | None) -> dict[str, int | float]:
    """What vLLM prints but does not put in its JSON: 'Total num prompt/output tokens: N' (counted from the
    engine's outputs) and 'Throughput: ... X output tokens/s': the cross-checks for the derived split."""
    import re

    out: dict[str, int | float] = {}
    if not log_path or not Path(log_path).is_file():
        return out
    text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    for key, name in (("prompt", "total_prompt_tokens"), ("output", "total_output_tokens")):
        m = re.findall(rf"Total num {key} tokens:\s+(\d+)", text)
        if m:
            out[name] = int(m[-1])
    m = re.findall(r"Throughput: [\d.]+ requests/s, [\d.]+ total tokens/s, ([\d.]+) output tokens/s", text)
    if m:
        out["output_tokens_per_s"] = float(m[-1])
    return out
