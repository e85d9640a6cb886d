"""What a run measured, per metric, in the form its comparison needs.

Each metric of a run is one `Measured`: per-request values (serve: TTFT, TPOT, ITL, E2EL of every successful
request, from vLLM's own per-request lists), per-iteration values (latency), the repeats of a serve point, paired
items (tasks: each item's score, keyed by task and item), paired prompts (accuracy: each prompt's teacher-forced
KL and top-1 agreement), or one value (what vLLM reports once per run). `shape` holds the params that must be
equal for two runs' numbers to be comparable at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["samples", "value", "paired"]


@dataclass
class Measured:
    key: str  # metric key, e.g. "latency.avg_latency" or "serve[rate=4].mean_tpot_ms"
    label: str
    unit: str
    lower_is_better: bool
    kind: Kind
    values: list[float] = field(default_factory=list)  # samples (per request / iteration / repeat), or [value]
    pairs: dict[str, float] = field(default_factory=dict)  # paired: item or prompt id -> score
    shape: dict[str, Any] = field(default_factory=dict)
    summary: str = "mean"  # how the headline number is made from the samples: mean, or the paired score's mean
    probe: str | None = None  # the machine probe the metric depends on: "bandwidth" or "compute"

    @property
    def value(self) -> float | None:
        data = list(self.pairs.values()) if self.kind == "paired" else self.values
        return sum(data) / len(data) if data else None


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _params(result: dict, keys: tuple[str, ...]) -> dict[str, Any]:
    p = result.get("params") or {}
    return {k: p.get(k) for k in keys}


def run_metrics(run_dir: str | Path) -> dict[str, Measured]:
    root = Path(run_dir)
    results = root / "results"
    out: dict[str, Measured] = {}
    for stage, reader in (("latency", _latency), ("throughput", _throughput), ("serve", _serve),
                          ("tasks", _tasks), ("accuracy", _accuracy)):
        res = _read(results / f"{stage}.json")
        if res and res.get("status") in ("passed", "failed"):
            for m in reader(res, root):
                out[m.key] = m
    return out


def _latency(res: dict, root: Path) -> list[Measured]:
    shape = _params(res, ("input_len", "output_len", "batch_size"))
    runs = res.get("runs") or {}
    out = []
    full, one = (runs.get("latency") or {}).get("latencies"), (runs.get("prefill") or {}).get("latencies")
    if full:
        out.append(Measured("latency.avg_latency", "Average latency (per iteration)", "s", True, "samples",
                            list(full), shape=shape, probe="bandwidth"))
    if one:
        out.append(Measured("latency.prefill_ms", "Prefill + first token (per iteration)", "ms", True, "samples",
                            [x * 1000 for x in one], shape=shape, probe="compute"))
    return out


def _throughput(res: dict, root: Path) -> list[Measured]:
    shape = _params(res, ("input_len", "output_len", "num_prompts"))
    out = []
    for key, label, unit in (("requests_per_second", "Request throughput", "req/s"),
                             ("output_tokens_per_s", "Output token throughput", "tokens/s")):
        if isinstance(res.get(key), (int, float)):
            out.append(Measured(f"throughput.{key}", label, unit, False, "value", [float(res[key])], shape=shape,
                                probe="bandwidth"))
    return out


def _point_name(run: dict) -> str:
    rate = run.get("request_rate")
    conc = run.get("max_concurrency")
    return f"rate={rate}" + (f",concurrency={conc}" if conc else "")


def _serve(res: dict, root: Path) -> list[Measured]:
    shape = _params(res, ("input_len", "output_len", "num_prompts"))
    by_point: dict[str, dict[str, list[float]]] = {}
    for run in res.get("runs") or []:
        point = by_point.setdefault(_point_name(run), {"ttft": [], "tpot": [], "itl": [], "e2el": [],
                                                       "request_throughput": [], "output_throughput": []})
        raw = _read(root / run["raw"]) if run.get("raw") and (root / run["raw"]).is_file() else None
        per = raw or run.get("per_request") or {}
        ttfts, lats, outs = per.get("ttfts") or [], per.get("latencies") or [], per.get("output_lens") or []
        errors = per.get("errors") or [""] * len(ttfts)
        for i, (ttft, lat) in enumerate(zip(ttfts, lats)):
            if errors[i] if i < len(errors) else False:
                continue
            point["ttft"].append(ttft * 1000)
            point["e2el"].append(lat * 1000)
            n_out = outs[i] if i < len(outs) else None
            if n_out and n_out > 1:
                point["tpot"].append((lat - ttft) * 1000 / (n_out - 1))
        for itls in (raw or {}).get("itls") or []:
            point["itl"].extend(x * 1000 for x in itls)
        for key in ("request_throughput", "output_throughput"):
            if isinstance(run.get(key), (int, float)):
                point[key].append(float(run[key]))
    out = []
    labels = {"ttft": ("mean_ttft_ms", "Mean TTFT", "ms", "compute"), "tpot": ("mean_tpot_ms", "Mean TPOT", "ms",
              "bandwidth"), "itl": ("mean_itl_ms", "Mean ITL", "ms", "bandwidth"),
              "e2el": ("mean_e2el_ms", "Mean end-to-end latency", "ms", "bandwidth")}
    for name, values in by_point.items():
        for k, (metric, label, unit, probe) in labels.items():
            if values[k]:
                out.append(Measured(f"serve[{name}].{metric}", f"{label} ({name})", unit, True, "samples",
                                    values[k], shape=shape, probe=probe))
        for k, label, unit in (("request_throughput", "Request throughput", "req/s"),
                               ("output_throughput", "Output token throughput", "tokens/s")):
            if values[k]:
                kind = "samples" if len(values[k]) > 1 else "value"
                out.append(Measured(f"serve[{name}].{k}", f"{label} ({name})", unit, False, kind, values[k],
                                    shape=shape, probe="bandwidth"))
    return out


def _tasks(res: dict, root: Path) -> list[Measured]:
    shape = _params(res, ("tasks", "limit", "num_fewshot", "max_gen_toks"))
    out = []
    for t in res.get("tasks") or []:
        pairs = {f"{i['task']}#{i['doc_id']}": float(i["candidate"]["score"]) for i in t.get("per_item") or []}
        if pairs:
            out.append(Measured(f"tasks.{t['task']}.score", f"{t['task']} score on vLLM ({t['metric']})", "", False,
                                "paired", pairs=pairs, shape=shape))
    return out


def _accuracy(res: dict, root: Path) -> list[Measured]:
    shape = _params(res, ("prompts_file", "max_new_tokens", "reference_dtype"))
    kl, top1 = {}, {}
    for pp in res.get("per_prompt") or []:
        tf = pp.get("teacher_forced") or {}
        if isinstance(tf.get("mean_kl"), (int, float)):
            kl[str(pp["id"])] = float(tf["mean_kl"])
        if isinstance(tf.get("top1_agreement"), (int, float)):
            top1[str(pp["id"])] = float(tf["top1_agreement"])
    out = []
    if kl:
        out.append(Measured("accuracy.mean_kl", "Teacher-forced mean KL (per prompt)", "nats", True, "paired",
                            pairs=kl, shape=shape))
    if top1:
        out.append(Measured("accuracy.top1_agreement", "Teacher-forced top-1 agreement (per prompt)", "", False,
                            "paired", pairs=top1, shape=shape))
    return out
