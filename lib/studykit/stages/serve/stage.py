"""`vllm bench serve` against one server for all points: request_rates x max_concurrency, `repeats` runs each.

Warm-up is vLLM's own `--num-warmups` (the first requests on a fresh server are ~10x slower). Each run saves
its JSON with per-request detail under raw/serve/; the record keeps vLLM's scalar names (request_throughput,
output_throughput, mean_ttft_ms, p99_tpot_ms, ...). Repeats of a point are summarised as mean and 95% CI.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from studykit.energy import telemetry_energy
from studykit.engine import cmdline, roofline
from studykit.engine.benchjson import NUM, BenchParseError, check_ran, load_bench_json
from studykit.engine.telemetry import Telemetry
from studykit.evidence.journal import vllm_argv
from studykit.params import Study
from studykit.evidence.rundir import RunLayout
from studykit.plan import Step, base_url
from studykit.stages.benchtools import command_entry, telemetry_charts
from studykit.stages.serve.params import ServeParams
from studykit.stages.serve.result import ServePoint, ServeResult
from studykit.stats import aggregate

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


def _point(rate: float, conc: int | None, repeat: int) -> dict[str, Any]:
    name = f"rate-{fmt_rate(rate)}" + (f"-conc-{conc}" if conc else "") + f"-rep-{repeat}"
    return {"request_rate": rate, "max_concurrency": conc, "repeat": repeat, "name": name}


def points(p: ServeParams, swept: list[float] | None = None) -> list[dict[str, Any]]:
    """Every run in order: rate x concurrency x repeat. With request_rates auto: the synchronous point
    (one request at a time) and the saturated point (all at once), then the swept rates once they are known."""
    if p.request_rates == "auto":
        probes = [(float("inf"), 1), (float("inf"), None)]
        pairs = probes + [(rate, None) for rate in (swept or [])]
    else:
        pairs = [(rate, conc) for rate in p.request_rates for conc in (p.max_concurrency or [None])]
    return [_point(rate, conc, r + 1) for rate, conc in pairs for r in range(p.repeats)]


def sweep_rates(sync_rps: float, saturated_rps: float, n: int) -> list[float]:
    """n request rates evenly spread strictly between the synchronous and the saturated request throughput
    (GuideLLM's sweep), rounded to 3 significant digits so the command lines stay readable."""
    lo, hi = sorted((sync_rps, saturated_rps))
    if not hi > lo > 0:
        raise ValueError(f"cannot sweep between request throughputs {sync_rps!r} and {saturated_rps!r}")
    return [float(f"{lo + (hi - lo) * (i + 1) / (n + 1):.3g}") for i in range(n)]


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


def plan(study, model_dir: Path, run_dir, port, swept: list[float] | None = None) -> list[Step]:
    """One server (unless serve.base_url names an existing one), then one bench per sweep point. With
    request_rates auto the swept rates are known only after the two probe points: `swept` adds them."""
    p = study.serve
    steps = []
    if p.base_url:
        url = p.base_url.rstrip("/")
    else:
        url = base_url(study.server.host, port)
        steps.append(Step("serve", "serve", "server", cmdline.serve_argv(study, model_dir, port)))
    raw = RunLayout(run_dir).raw_dir("serve")
    for pt in points(p, swept):
        steps.append(Step("serve", f"bench-serve-{pt['name']}", "command", serve_bench_argv(
            study, model_dir, url, pt["request_rate"], pt["max_concurrency"], raw, f"{pt['name']}.json")))
    if p.request_rates == "auto" and swept is None:
        steps.append(Step("serve", "sweep", "python", text=(
            f"# then {p.sweep_rates} request rates evenly between the two request throughputs measured above, "
            f"each: vllm bench serve ... --request-rate RATE (chosen at run time)")))
    return steps


def run(ctx, p: ServeParams) -> ServeResult:
    """The planned server (or serve.base_url), every point, then the decode roofline of each point (after the
    server stopped, on the cores its engine was bound to); the runs that finished are kept if one fails."""
    data: dict[str, Any] = {"params": p.model_dump(mode="json"), "commands": [], "telemetry": [], "runs": []}
    with ctx.keep(data):
        data.update(ctx.idle_power())
        steps = ctx.plan()
        if steps[0].kind == "server":
            with ctx.server_for(steps[0]) as srv:
                data.update(server=srv.label, server_ready_s=srv.ready_seconds, base_url=srv.base_url,
                            server_log=str(srv.log_path))
                _run_all(ctx, p, data, srv)
        else:
            data["base_url"] = p.base_url
            _run_all(ctx, p, data, None)
        data["points"] = summarise(data["runs"])
        data["roofline"] = roofline.serve_roofline(ctx.study, ctx.model_dir, data["points"],
                                                   engine_log=data.get("server_log"))
    return ctx.result(data)


def _run_all(ctx, p: ServeParams, data: dict[str, Any], server) -> None:
    _run_points(ctx, points(p), [s for s in ctx.plan() if s.kind == "command"], data, server)
    if p.request_rates != "auto":
        return
    probes = summarise(data["runs"])
    sync, saturated = (pt["metrics"]["request_throughput"]["mean"] for pt in probes[:2])
    swept = sweep_rates(sync, saturated, p.sweep_rates)
    data["sweep"] = {"mode": "auto", "sync_request_throughput": sync, "saturated_request_throughput": saturated,
                     "rates": swept}
    done = len(data["runs"])
    steps = [s for s in plan(ctx.study, ctx.model_dir, ctx.run_dir, ctx.port, swept) if s.kind == "command"]
    _run_points(ctx, points(p, swept)[done:], steps[done:], data, server)


def _run_points(ctx, pts: list[dict[str, Any]], steps: list[Step], data: dict[str, Any], server) -> None:
    for pt, step in zip(pts, steps, strict=True):
        out_json = ctx.raw_dir / f"{pt['name']}.json"
        rate = fmt_rate(pt["request_rate"])  # JSON has no inf: the rate as the command line says it
        with Telemetry(ctx.study.platform, label=pt["name"]) as tel:
            rec = ctx.run_step(step, timeout=BENCH_TIMEOUT_S)
        telemetry = tel.to_dict()
        data["telemetry"].append(telemetry)
        # what the command check compares the argv with, stored with the command (not read back from its label)
        data["commands"].append(command_entry(rec, run=pt["name"], request_rate=rate,
                                              max_concurrency=pt["max_concurrency"], repeat=pt["repeat"]))
        if server is not None:
            server.check_alive()  # a dead server: ServerError with its log tail
        check_ran(rec, out_json)
        # the point is the plan's (vLLM's JSON echoes rate and concurrency, the rate as a number or "inf"); the
        # rate keeps the command line's spelling
        run = {**parse_serve_json(out_json), **pt, "request_rate": rate, "raw": str(out_json)}
        if rec.seconds and run.get("duration") and run["duration"] <= rec.seconds:
            telemetry.update(window_s=[round(rec.seconds - run["duration"], 3), rec.seconds],
                             window_how="the last `duration` seconds of the bench (vLLM's benchmark duration)")
        # the warm-up requests ran before vLLM's benchmark duration: the window's tokens are the run's own
        telemetry.update(telemetry_energy(telemetry, run["total_output_tokens"], data.get("idle_power_w")))
        data["runs"].append(run)


def scalar_keys(run: dict[str, Any]) -> list[str]:
    return [k for k, v in run.items() if isinstance(v, NUM) and not isinstance(v, bool)
            and k not in ("repeat", "max_concurrency", "num_prompts")]


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (rate, concurrency): each vLLM metric as mean (and 95% CI) over the point's repeats.
    The name stays vLLM's and the statistic is named: points[i].metrics.p99_ttft_ms.mean is the mean over
    repeats of vLLM's P99, never stored as a P99 itself."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["request_rate"], r["max_concurrency"]), []).append(r)
    rows = []
    for (rate, conc), rs in groups.items():
        agg = aggregate(rs, scalar_keys(rs[0]))
        rows.append({"request_rate": rate, "max_concurrency": conc, "repeats": len(rs),
                     "runs": [r["name"] for r in rs], "metrics": agg})
    return rows


def point_value(point: ServePoint, key: str) -> float | None:
    """A point's mean over its repeats of one of vLLM's metrics; None when vLLM did not report it."""
    stat = point.metrics.get(key)
    return stat.mean if stat else None


def _half_width(point: ServePoint, key: str) -> float:
    stat = point.metrics.get(key)
    return (stat.ci95_half_width or 0.0) if stat else 0.0


def serve_table(result: ServeResult):
    """One row per sweep point: request rate, concurrency, repeats and the headline metrics (mean over
    repeats, with the 95% CI half-width when there are repeats)."""
    import pandas as pd

    keys = ("request_throughput", "output_throughput", "mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p99_tpot_ms")
    rows = []
    for pt in result.points:
        row = {"request_rate (req/s)": pt.request_rate, "max_concurrency": pt.max_concurrency or "unlimited",
               "repeats": pt.repeats}
        for k in keys:
            stat = pt.metrics.get(k)
            row[k] = stat.mean if stat else None
            if stat and stat.ci95_half_width is not None:
                row[f"{k} ±95%"] = stat.ci95_half_width
        rows.append(row)
    return pd.DataFrame(rows)


def roofline_table(result: ServeResult):
    """The decode roofline per point (achieved GB/s against the bandwidth limit); empty without a roofline."""
    import pandas as pd

    points = result.roofline.points if result.roofline else []
    return pd.DataFrame([pt.model_dump() for pt in points])


def _rate_x(rate: str) -> float:
    return float("inf") if rate == "inf" else float(rate)


def charts(ctx, result: ServeResult) -> list[str]:
    """The sweep's charts, then the telemetry of the vLLM processes; only the telemetry without a point."""
    rows = result.points
    if not rows:
        return telemetry_charts(ctx, result.telemetry)
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    paths = []
    # inf is plotted one step beyond the largest finite rate, and labelled so.
    finite = [_rate_x(r.request_rate) for r in rows if r.request_rate != "inf"]
    inf_x = (max(finite) * 2 if finite else 1.0)
    xs = [inf_x if r.request_rate == "inf" else _rate_x(r.request_rate) for r in rows]
    labels = [f"{r.request_rate}" + (f"/c{r.max_concurrency}" if r.max_concurrency else "") for r in rows]

    def has(key):
        return all(point_value(r, key) is not None for r in rows)

    def err(key):
        half = [_half_width(r, key) for r in rows]
        return [half, half]

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for key in ("request_throughput", "output_throughput"):
        if has(key):
            ax.errorbar(xs, [point_value(r, key) for r in rows], yerr=err(key), marker="o", capsize=3, label=key)
    ax.set_xticks(xs, labels)
    ax.set_xlabel("request rate (req/s)")
    ax.set_title("throughput vs request rate")
    ax.legend(fontsize=8)
    paths.append(ctx.save_figure(fig, "throughput-vs-rate"))

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, m in zip(axes, ("ttft", "tpot")):
        for q in ("median", "p90", "p99"):
            key = f"{q}_{m}_ms"
            if has(key):
                ax.errorbar(xs, [point_value(r, key) for r in rows], yerr=err(key), marker="o", capsize=3,
                            label=key)
        ax.set_xticks(xs, labels)
        ax.set_xlabel("request rate (req/s)")
        ax.set_ylabel("ms")
        ax.set_title(f"{m.upper()} percentiles vs rate")
        ax.legend(fontsize=7)
    paths.append(ctx.save_figure(fig, "latency-vs-rate"))

    # the sweep read the way GuideLLM shows it: latency against the throughput the server achieved
    if has("request_throughput"):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        order = sorted(range(len(rows)), key=lambda i: point_value(rows[i], "request_throughput"))
        xs_t = [point_value(rows[i], "request_throughput") for i in order]
        for ax, m in zip(axes, ("ttft", "tpot")):
            for q in ("mean", "p99"):
                key = f"{q}_{m}_ms"
                if has(key):
                    ax.errorbar(xs_t, [point_value(rows[i], key) for i in order],
                                yerr=[[err(key)[0][i] for i in order]] * 2, marker="o", capsize=3, label=key)
            for i, x in zip(order, xs_t):
                ax.annotate(labels[i], (x, point_value(rows[i], f"mean_{m}_ms") or 0), fontsize=6)
            ax.set_xlabel("achieved request throughput (req/s)")
            ax.set_ylabel("ms")
            ax.set_title(f"{m.upper()} vs achieved throughput")
            ax.legend(fontsize=7)
        paths.append(ctx.save_figure(fig, "latency-vs-throughput"))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if has("mean_tpot_ms") and has("output_throughput"):
        ax.plot([point_value(r, "mean_tpot_ms") for r in rows], [point_value(r, "output_throughput") for r in rows],
                marker="o")
        for r, lab in zip(rows, labels):
            ax.annotate(lab, (point_value(r, "mean_tpot_ms"), point_value(r, "output_throughput")), fontsize=7)
    ax.set_xlabel("mean TPOT (ms)")
    ax.set_ylabel("output tokens/s")
    ax.set_title("tokens/s vs TPOT trade-off")
    paths.append(ctx.save_figure(fig, "tradeoff"))

    # energy per output token of each point: the mean over its runs that have an energy (none: no chart)
    energy = {t.label: t.energy.joules_per_token for t in result.telemetry
              if t.energy is not None and t.energy.joules_per_token is not None}
    per_point = [[energy[name] for name in r.runs if name in energy] for r in rows]
    if any(per_point):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        shown = [(x, sum(v) / len(v), lab) for x, v, lab in zip(xs, per_point, labels) if v]
        ax.plot([x for x, _, _ in shown], [y for _, y, _ in shown], marker="o")
        ax.set_xticks([x for x, _, _ in shown], [lab for _, _, lab in shown])
        ax.set_xlabel("request rate (req/s)")
        ax.set_ylabel("J per output token")
        ax.set_title("energy per output token vs request rate")
        paths.append(ctx.save_figure(fig, "energy-vs-rate"))

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for run in result.runs:
        st, tt = run.per_request.get("start_times") or [], run.per_request.get("ttfts") or []
        if st and tt:
            t0 = min(st)
            ax.plot([s - t0 for s in st], [t * 1000 for t in tt], ".", label=run.name)
    ax.set_xlabel("request start (s since first request)")
    ax.set_ylabel("TTFT (ms)")
    ax.set_title("per-request TTFT over time")
    if len(result.runs) <= 8:
        ax.legend(fontsize=7)
    paths.append(ctx.save_figure(fig, "ttft-over-time"))
    return paths + telemetry_charts(ctx, result.telemetry)
