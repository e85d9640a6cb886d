"""`vllm bench serve` against one server for all points: request_rates x max_concurrency, `repeats` runs each.

Warm-up is vLLM's own `--num-warmups` (the first requests on a fresh server are ~10x slower). Each run saves
its JSON with per-request detail under raw/serve/; the record keeps vLLM's scalar names (request_throughput,
output_throughput, mean_ttft_ms, p99_tpot_ms, ...). Repeats of a point are summarised as mean and 95% CI.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..commands import vllm_argv
from ..params import ServeParams, Study
from ..stats import aggregate
from ..telemetry import Telemetry
from . import NUM, BenchParseError, check_ran, load_bench_json

METRICS = ("ttft", "tpot", "itl", "e2el")
PERCENTILES = ("50", "90", "99")
SCALARS = ("duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
           "request_goodput", "output_throughput", "total_token_throughput", "max_output_tokens_per_s",
           "max_concurrent_requests")
# a bench that hangs (e.g. a server that stops answering without dying) must not hang the study
BENCH_TIMEOUT_S = 3600.0
PER_REQUEST = ("ttfts", "start_times", "input_lens", "output_lens", "latencies", "errors")


def fmt_rate(rate: float) -> str:
    return "inf" if math.isinf(rate) else f"{rate:g}"


def points(p: ServeParams) -> list[dict[str, Any]]:
    """Every run in order: rate x concurrency x repeat."""
    out = []
    for rate in p.request_rates:
        for conc in (p.max_concurrency or [None]):
            for r in range(p.repeats):
                name = f"rate-{fmt_rate(rate)}" + (f"-conc-{conc}" if conc else "") + f"-rep-{r + 1}"
                out.append({"request_rate": rate, "max_concurrency": conc, "repeat": r + 1, "name": name})
    return out


def serve_args(study: Study, model_dir: str | Path, base_url: str, rate: float, concurrency: int | None,
               result_dir: str | Path | None = None, result_filename: str | None = None) -> list[str]:
    """Flat `vllm bench serve` arguments (without `bench serve`)."""
    p = study.serve
    args = ["--model", study.model.name_served, "--tokenizer", str(model_dir)]
    if study.model.trust_remote_code:
        args.append("--trust-remote-code")
    args += ["--base-url", base_url, "--dataset-name", "random", "--random-input-len", str(p.input_len),
             "--random-output-len", str(p.output_len), "--num-prompts", str(p.num_prompts),
             "--request-rate", fmt_rate(rate)]
    if concurrency:
        args += ["--max-concurrency", str(concurrency)]
    args += ["--num-warmups", str(p.num_warmups), "--seed", str(p.seed)]
    if p.goodput is not None:
        slo = [f"{k}:{v:g}" for k, v in (("ttft", p.goodput.ttft_ms), ("tpot", p.goodput.tpot_ms)) if v]
        if slo:
            args += ["--goodput", *slo]
    if result_dir is not None:
        args += ["--save-result", "--save-detailed", "--result-dir", str(result_dir),
                 "--result-filename", str(result_filename),
                 "--percentile-metrics", ",".join(METRICS),
                 "--metric-percentiles", ",".join(PERCENTILES)]
    return args + list(p.extra_args)


def serve_bench_argv(study: Study, model_dir, base_url: str, rate: float, concurrency: int | None,
                     result_dir=None, result_filename=None) -> list[str]:
    return vllm_argv("bench", "serve", *serve_args(study, model_dir, base_url, rate, concurrency,
                                                    result_dir, result_filename))


def parse_serve_json(path: str | Path) -> dict[str, Any]:
    """Flat record of one run: vLLM's scalars and mean/median/std/pXX of each metric, plus `per_request`."""
    required = {k: NUM for k in ("duration", "completed", "total_input_tokens", "total_output_tokens",
                                 "request_throughput", "output_throughput")}
    data = load_bench_json(path, required)
    rec: dict[str, Any] = {}
    for key in SCALARS:
        if key in data and (data[key] is None or isinstance(data[key], NUM)):
            rec[key] = data[key]
    for m in METRICS:
        for stat in ("mean", "median", "std", *(f"p{q}" for q in PERCENTILES)):
            key = f"{stat}_{m}_ms"
            if key in data:
                if not isinstance(data[key], NUM):
                    raise BenchParseError(f"{path}: field {key!r} should be a number, got {data[key]!r:.80}")
                rec[key] = data[key]
    if not any(k.endswith("_ttft_ms") for k in rec):
        raise BenchParseError(f"{path}: no TTFT metrics (mean_ttft_ms ...): not a `vllm bench serve` result?")
    for key in ("num_prompts", "request_rate", "max_concurrency", "date"):
        if key in data:
            rec[key] = data[key]
    rec["per_request"] = {k: data[k] for k in PER_REQUEST if isinstance(data.get(k), list)}
    return rec


def run_serve(ctx, base_url: str, result: dict[str, Any], server=None) -> dict[str, Any]:
    """All points against base_url, filling result["runs"] as they finish; checks the server after each."""
    p = ctx.study.serve
    result.setdefault("runs", [])
    result.setdefault("commands", [])
    result.setdefault("telemetry", [])
    result["base_url"] = base_url
    for pt in points(p):
        fname = f"{pt['name']}.json"
        argv = serve_bench_argv(ctx.study, ctx.model_dir, base_url, pt["request_rate"], pt["max_concurrency"],
                                ctx.raw_dir, fname)
        with Telemetry(ctx.study.platform, label=pt["name"]) as tel:
            rec = ctx.run_vllm(argv, label=f"bench-serve-{pt['name']}", timeout=BENCH_TIMEOUT_S)
        result["telemetry"].append(tel.to_dict())
        result["commands"].append({"label": rec.label, "argv": rec.argv, "command": rec.command,
                                   "seconds": rec.seconds, "returncode": rec.returncode, **pt})
        if server is not None:
            server.check_alive()  # a dead server: ServerError with its log tail
        check_ran(rec, ctx.raw_dir / fname)
        run = {**pt, "raw": str(ctx.raw_dir / fname), **parse_serve_json(ctx.raw_dir / fname)}
        run["request_rate"] = fmt_rate(pt["request_rate"])  # JSON has no inf
        result["runs"].append(run)
    result["points"] = summarise(result["runs"])
    # The first point's numbers also sit at the top level, flat, so a summary (the report) reads them like
    # the seed's single-rate table; "headline_point" says which point they are.
    head = result["points"][0]
    result["headline_point"] = {"request_rate": head["request_rate"], "max_concurrency": head["max_concurrency"]}
    result.update({k: v for k, v in head.items() if k not in ("request_rate", "max_concurrency", "ci95")})
    return result


def scalar_keys(run: dict[str, Any]) -> list[str]:
    return [k for k, v in run.items() if isinstance(v, NUM) and not isinstance(v, bool)
            and k not in ("repeat", "max_concurrency", "num_prompts")]


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (rate, concurrency): the first repeat's numbers flat, and mean/CI per metric over repeats."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["request_rate"], r["max_concurrency"]), []).append(r)
    rows = []
    for (rate, conc), rs in groups.items():
        keys = scalar_keys(rs[0])
        agg = aggregate(rs, keys)
        row = {"request_rate": rate, "max_concurrency": conc, "repeats": len(rs)}
        # identical values across repeats (counts, a single run) stay as vLLM wrote them, ints stay ints
        row.update({k: rs[0][k] if all(r.get(k) == rs[0][k] for r in rs) else v["mean"] for k, v in agg.items()})
        if len(rs) > 1:
            row["ci95"] = {k: [v["ci95_low"], v["ci95_high"]] for k, v in agg.items()}
        rows.append(row)
    return rows


def _rate_x(rate) -> float:
    return float("inf") if rate == "inf" else float(rate)


def charts(ctx, result: dict[str, Any]) -> list[str]:
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    rows = result.get("points") or []
    if not rows:
        return []
    paths = []
    # inf is plotted one step beyond the largest finite rate, and labelled so.
    finite = [_rate_x(r["request_rate"]) for r in rows if r["request_rate"] != "inf"]
    inf_x = (max(finite) * 2 if finite else 1.0)
    xs = [inf_x if r["request_rate"] == "inf" else _rate_x(r["request_rate"]) for r in rows]
    labels = [f"{r['request_rate']}" + (f"/c{r['max_concurrency']}" if r["max_concurrency"] else "") for r in rows]

    def err(key):
        lo = [r[key] - r["ci95"][key][0] if "ci95" in r and r["ci95"].get(key, [None])[0] is not None else 0
              for r in rows]
        return [lo, lo]

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for key in ("request_throughput", "output_throughput"):
        if all(key in r for r in rows):
            ax.errorbar(xs, [r[key] for r in rows], yerr=err(key), marker="o", capsize=3, label=key)
    ax.set_xticks(xs, labels)
    ax.set_xlabel("request rate (req/s)")
    ax.set_title("throughput vs request rate")
    ax.legend(fontsize=8)
    paths.append(ctx.save_figure(fig, "throughput-vs-rate"))

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, m in zip(axes, ("ttft", "tpot")):
        for q in ("median", "p90", "p99"):
            key = f"{q}_{m}_ms"
            if all(key in r for r in rows):
                ax.errorbar(xs, [r[key] for r in rows], yerr=err(key), marker="o", capsize=3, label=key)
        ax.set_xticks(xs, labels)
        ax.set_xlabel("request rate (req/s)")
        ax.set_ylabel("ms")
        ax.set_title(f"{m.upper()} percentiles vs rate")
        ax.legend(fontsize=7)
    paths.append(ctx.save_figure(fig, "latency-vs-rate"))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if all("mean_tpot_ms" in r and "output_throughput" in r for r in rows):
        ax.plot([r["mean_tpot_ms"] for r in rows], [r["output_throughput"] for r in rows], marker="o")
        for r, lab in zip(rows, labels):
            ax.annotate(lab, (r["mean_tpot_ms"], r["output_throughput"]), fontsize=7)
    ax.set_xlabel("mean TPOT (ms)")
    ax.set_ylabel("output tokens/s")
    ax.set_title("tokens/s vs TPOT trade-off")
    paths.append(ctx.save_figure(fig, "tradeoff"))

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for run in result.get("runs", []):
        pr = run.get("per_request", {})
        st, tt = pr.get("start_times") or [], pr.get("ttfts") or []
        if st and tt:
            t0 = min(st)
            ax.plot([s - t0 for s in st], [t * 1000 for t in tt], ".", label=run["name"])
    ax.set_xlabel("request start (s since first request)")
    ax.set_ylabel("TTFT (ms)")
    ax.set_title("per-request TTFT over time")
    if len(result.get("runs", [])) <= 8:
        ax.legend(fontsize=7)
    paths.append(ctx.save_figure(fig, "ttft-over-time"))
    return paths
