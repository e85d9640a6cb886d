"""The latency stage's checks."""

from __future__ import annotations

from studykit.checks import argv_has, check, not_run, percentiles_match_raw

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
