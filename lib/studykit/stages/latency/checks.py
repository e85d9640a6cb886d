"""The latency stage's checks: each run's percentiles against its own per-iteration latencies (a parse check),
the iterations vLLM measured against num_iters, each command against the params, decode time > 0, and each run's
energy per output token."""

from __future__ import annotations

from studykit.checks import argv_has, check, energy_per_token, not_run, percentiles_match_raw
from studykit.schema.base import Check
from studykit.stages.latency.params import LatencyParams
from studykit.stages.latency.result import LatencyResult
from studykit.stages.latency.stage import window_output_tokens


def checks(p: LatencyParams, result: LatencyResult) -> list[Check]:
    out = []
    for name, run in result.runs.items():
        out.append(percentiles_match_raw("latency", run.latencies, run.percentiles, where=f"{name}: ",
                                         metric="latency.p50_latency_s" if name == "latency" else None))
        out.append(check("latency.iterations_measured", f"{name}: iterations measured = num_iters",
                         run.num_iters_measured == p.num_iters,
                         f"{run.num_iters_measured} latencies for num_iters {p.num_iters}",
                         p.num_iters, run.num_iters_measured, subject=name))
    for cmd in result.commands:
        want_out = result.runs[cmd.run].output_len if getattr(cmd, "run", None) in result.runs else p.output_len
        out.append(argv_has("latency", cmd.argv, {"--input-len": p.input_len, "--output-len": want_out,
                                                  "--batch-size": p.batch_size, "--num-iters": p.num_iters,
                                                  "--num-iters-warmup": p.num_iters_warmup, "--output-json": None},
                            where=f"{cmd.label}: "))
    for tel in result.telemetry:
        run = result.runs.get(tel.label)
        tokens = window_output_tokens(p, run.output_len, run.num_iters_measured) if run else None
        out.append(energy_per_token("latency", tel, tokens, tel.label))
    name = "latency(N) > latency(1), so decode time per token > 0"
    if result.decode_ms_per_token is None:
        out.append(not_run("latency.decode_positive", name, "the output_len 1 run did not complete",
                           "latency.decode_ms_per_token"))
    else:
        d = result.decode_ms_per_token
        out.append(check("latency.decode_positive", name, d > 0, f"(latency(N) - latency(1)) / (N - 1) = {d:.4g} ms",
                         "> 0", d, "latency.decode_ms_per_token"))
    return out
