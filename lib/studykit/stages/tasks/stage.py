"""The tasks stage: inputs checked, the reference run, the vLLM run, then per-item pairing and checks.

Per-item scores come from lm-eval's own --log_samples files (kept in raw/tasks/<backend>/), so the kit does
not re-score anything: it pairs the two backends' records of the same document and compares them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pathlib import Path

from studykit.engine import cmdline
from studykit.plan import Step, base_url
from studykit.stages.tasks import lmeval
from studykit.stages.tasks.lmeval import OFFLINE_ENV, SERVER_LABEL, STAGE
from studykit.stages.tasks.data import resolve_tasks, write_task_dir
from studykit.stages.tasks.stats import parity


def plan(study, model_dir: Path, run_dir: str | Path, port) -> list[Step]:
    """The stage's steps in run order: the reference run, the server (the same command as the other stages',
    so a run shares it), the vLLM run."""
    url = base_url(study.server.host, port)
    return [
        Step(STAGE, "lm-eval reference", "command", lmeval.reference_argv(study, model_dir, run_dir), env=dict(OFFLINE_ENV)),
        Step(STAGE, SERVER_LABEL, "server", cmdline.serve_argv(study, model_dir, port)),
        Step(STAGE, "lm-eval vllm", "command", lmeval.vllm_argv(study, model_dir, run_dir, url), env=dict(OFFLINE_ENV)),
    ]


def _metric_of(samples: list[dict], spec: str | None, where: str) -> tuple[str, str]:
    """(metric, filter) to compare: the study's 'metric,filter', else the task's first metric and filter."""
    if not samples:
        raise ValueError(f"{where}: lm-eval logged no samples")
    if spec:
        metric, filt = spec.split(",")
    else:
        metric, filt = samples[0]["metrics"][0], samples[0]["filter"]
    if not any(s.get("filter") == filt and metric in s for s in samples):
        have = sorted({f"{m},{s.get('filter')}" for s in samples for m in s.get("metrics", [])})
        raise ValueError(f"{where}: no samples scored by {metric!r} with filter {filt!r}; logged: {have}")
    return metric, filt


def _answer(sample: dict) -> Any:
    """What the backend answered: the chosen choice (highest log-likelihood) or the filtered generation."""
    resp = sample.get("filtered_resps")
    # a log-likelihood answer is one [loglikelihood, is_greedy] pair per choice
    if isinstance(resp, list) and resp and isinstance(resp[0], list) and len(resp[0]) == 2:
        lls = [float(r[0]) for r in resp]
        best = max(range(len(lls)), key=lls.__getitem__)
        # the continuation lm-eval scored for that choice: the choice text as the model saw it
        text = (sample.get("arguments") or {}).get(f"gen_args_{best}", {}).get("arg_1")
        return {"choice": best, "text": text, "loglikelihoods": lls}
    return resp[0] if isinstance(resp, list) and len(resp) == 1 else resp


def item_records(samples: list[dict], metric: str, filt: str) -> dict[int, dict]:
    """{doc_id: record} from one sample log (lm-eval logs a document once per filter; keep the one compared)."""
    out = {}
    for s in samples:
        if s.get("filter") != filt or metric not in s:
            continue
        doc = s.get("doc") or {}
        out[int(s["doc_id"])] = {"doc_id": int(s["doc_id"]), "id": doc.get("id"), "target": s.get("target"),
                                 "answer": _answer(s), "score": s[metric], "doc_hash": s.get("doc_hash"),
                                 "prompt_hash": s.get("prompt_hash")}
    return out


def _loglik_delta(ref: dict, cand: dict) -> float | None:
    """Largest |log-likelihood(vLLM) - log-likelihood(reference)| over the item's choices (nats)."""
    a, b = ref["answer"], cand["answer"]
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return None
    return max(abs(x - y) for x, y in zip(a["loglikelihoods"], b["loglikelihoods"]))


def compare_task(name: str, leaves: list[str], ref_samples: dict[str, list[dict]],
                 cand_samples: dict[str, list[dict]], spec: str | None) -> dict:
    """Pair the two backends item by item over a task's leaves (a group pools its subtasks' items)."""
    items, mismatched, metric_used = [], [], set()
    for leaf in leaves:
        for backend, logs in (("reference", ref_samples), ("vllm", cand_samples)):
            if leaf not in logs:
                raise ValueError(f"task {leaf!r}: the {backend} run logged no samples (raw/tasks/{backend}/)")
        metric, filt = _metric_of(ref_samples[leaf], spec, f"task {leaf!r} (reference)")
        metric_used.add(f"{metric},{filt}")
        ref = item_records(ref_samples[leaf], metric, filt)
        cand = item_records(cand_samples[leaf], metric, filt)
        for doc_id in sorted(set(ref) | set(cand)):
            r, c = ref.get(doc_id), cand.get(doc_id)
            if r is None or c is None or r["prompt_hash"] != c["prompt_hash"] or r["doc_hash"] != c["doc_hash"]:
                mismatched.append({"task": leaf, "doc_id": doc_id,
                                   "why": "missing on one side" if r is None or c is None else "different prompt"})
                continue
            items.append({"task": leaf, "doc_id": doc_id, "id": r["id"], "target": r["target"],
                          "reference": {"answer": r["answer"], "score": r["score"]},
                          "candidate": {"answer": c["answer"], "score": c["score"]},
                          "max_abs_loglik_delta_nats": _loglik_delta(r, c)})
    if not items:
        raise ValueError(f"task {name!r}: no item was scored by both backends")
    stats = parity([it["reference"]["score"] for it in items], [it["candidate"]["score"] for it in items])
    deltas = [it["max_abs_loglik_delta_nats"] for it in items if it["max_abs_loglik_delta_nats"] is not None]
    discordant = [it for it in items if it["reference"]["score"] != it["candidate"]["score"]]
    return {"task": name, "subtasks": leaves if leaves != [name] else [], "metric": ",".join(sorted(metric_used)),
            **stats, "unpaired": mismatched,
            "loglikelihood": ({"items": len(deltas), "mean_max_abs_delta_nats": sum(deltas) / len(deltas),
                               "max_abs_delta_nats": max(deltas)} if deltas else None),
            "discordant": discordant, "per_item": items}


def _check(name: str, status: str, detail: str, expected: Any = None, actual: Any = None,
           metric: str | None = None) -> dict:
    return {"name": name, "status": status, "detail": detail, "expected": expected, "actual": actual,
            "metric": metric}


def task_checks(t: dict, p, lm_eval_scores: dict[str, dict[str, float | None]]) -> list[dict]:
    name, ref, cand = t["task"], t["reference"]["score"], t["candidate"]["score"]
    out = []
    out.append(_check(f"{name}: both backends scored the same items", "failed" if t["unpaired"] else "passed",
                      f"{t['items']} items paired" + (f"; {len(t['unpaired'])} not: {t['unpaired'][:5]}"
                                                      if t["unpaired"] else ""), 0, len(t["unpaired"])))
    for backend, mine in (("reference", ref), ("vllm", cand)):
        theirs = lm_eval_scores.get(backend, {}).get(name)
        if theirs is None:
            out.append(_check(f"{name}: {backend} score from per-item logs = lm-eval's score", "not_run",
                              "lm-eval reported no aggregate for this metric (a group, or a metric it does "
                              "not aggregate)"))
        elif t["unpaired"]:
            out.append(_check(f"{name}: {backend} score from per-item logs = lm-eval's score", "not_run",
                              "some items are unpaired, so the paired score covers fewer items than lm-eval's"))
        else:
            ok = abs(mine - theirs) <= 1e-9
            out.append(_check(f"{name}: {backend} score from per-item logs = lm-eval's score",
                              "passed" if ok else "failed", f"per-item mean {mine:.6g}, lm-eval {theirs:.6g}",
                              theirs, mine))
    delta = cand - ref
    out.append(_check(f"{name}: |vLLM - reference| <= max_abs_delta",
                      "passed" if abs(delta) <= p.max_abs_delta else "failed",
                      f"vLLM {cand:.4f} - reference {ref:.4f} = {delta:+.4f} (95 % CI {t['delta']['ci95_low']:+.4f}"
                      f" .. {t['delta']['ci95_high']:+.4f}); McNemar exact p = {t['mcnemar_exact_p']:.4g} on "
                      f"{t['only_candidate_correct'] + t['only_reference_correct']} discordant items",
                      p.max_abs_delta, round(abs(delta), 6), metric=f"tasks.{name}.delta"))
    baseline = p.baselines.get(name)
    if baseline is None:
        out.append(_check(f"{name}: vLLM score within rtol of the recorded baseline", "not_run",
                          f"no recorded baseline for {name!r} (tasks.baselines)"))
    else:
        ok = abs(cand - baseline) <= p.rtol * baseline
        out.append(_check(f"{name}: vLLM score within rtol of the recorded baseline", "passed" if ok else "failed",
                          f"|{cand:.4f} - {baseline:.4f}| = {abs(cand - baseline):.4f} vs rtol {p.rtol} x baseline "
                          f"= {p.rtol * baseline:.4f} (vllm-ascend's convention)", round(p.rtol * baseline, 6),
                          round(abs(cand - baseline), 6), metric=f"tasks.{name}.candidate.score"))
    return out


def lm_eval_scores(results: dict, tasks: list[dict]) -> dict[str, float | None]:
    """lm-eval's own aggregate per task, under the metric the kit compared (for the consistency check)."""
    out = {}
    for t in tasks:
        agg = results.get("results", {}).get(t["task"], {})
        metric = t["metric"]
        out[t["task"]] = agg.get(metric) if "," in metric and not t["subtasks"] else None
    return out


def run_step(ctx, step, timeout: float | None = None) -> dict:
    rec = ctx.run_step(step, timeout=timeout)
    if rec.returncode != 0:
        raise RuntimeError(f"{step.label} exited with {rec.returncode}; log: {rec.log}")
    return {"label": rec.label, "argv": rec.argv, "command": rec.command, "seconds": rec.seconds,
            "returncode": rec.returncode}


def run_tasks(ctx, p) -> tuple[dict, list[str]]:
    """The whole stage. Every input is checked before the reference model or the server starts."""
    resolved = resolve_tasks(p)
    write_task_dir(resolved, lmeval.task_dir(ctx.run_dir))
    ctx.study = ctx.study.model_copy(update={"tasks": p})
    study = ctx.study
    ref_step, server_step, vllm_step = ctx.plan()
    commands, seconds = [], {}
    t0 = time.monotonic()
    commands.append(run_step(ctx, ref_step))
    seconds["reference"] = round(time.monotonic() - t0, 3)
    with ctx.server_for(server_step) as srv:
        t0 = time.monotonic()
        commands.append(run_step(ctx, vllm_step))
        seconds["vllm"] = round(time.monotonic() - t0, 3)
        server_command, server_label = srv.command, srv.label
    samples, scores_by_backend, result_files = {}, {}, {}
    for backend in lmeval.BACKENDS:
        out_dir = lmeval.output_dir(ctx.run_dir, backend)
        samples[backend] = {t: lmeval.read_samples(f) for t, f in lmeval.sample_files(out_dir).items()}
        results = lmeval.read_results(out_dir)
        result_files[backend] = results["_path"]
        scores_by_backend[backend] = results
    leaves = {name: (resolved["hub"][name]["leaves"] if name in resolved["hub"] else [name]) for name in p.tasks}
    tasks = [compare_task(name, leaves[name], samples["reference"], samples["vllm"], p.metrics.get(name))
             for name in p.tasks]
    lm_scores = {b: lm_eval_scores(scores_by_backend[b], tasks) for b in lmeval.BACKENDS}
    checks = [c for t in tasks for c in task_checks(t, p, lm_scores)]
    result = {
        "reference": {"engine": "transformers (lm-eval hf)", "dtype": p.reference_dtype, "device": "cpu",
                      "seconds": seconds["reference"], "results_file": result_files["reference"]},
        "candidate": {"engine": "vllm (lm-eval local-completions)", "dtype": study.model.dtype,
                      "server_command": server_command, "seconds": seconds["vllm"],
                      "results_file": result_files["vllm"]},
        "lm_eval_version": lmeval.lm_eval_version(),
        "task_sources": {"jsonl": resolved["jsonl"],
                         "hub": {k: {"leaves": v["leaves"], "local_datasets": {leaf: d for leaf, (_, d)
                                                                                in v["overrides"].items()}}
                                 for k, v in resolved["hub"].items()}},
        "tasks": tasks,
        "params": json.loads(p.model_dump_json()),
        "thresholds": {"max_abs_delta": p.max_abs_delta, "rtol": p.rtol, "baselines": dict(p.baselines)},
        "commands": commands,
        "server": server_label,
        "checks": checks,
        "method": "per-item 0/1 scores from lm-eval's sample logs of both runs, paired by document; scores with "
                  "Wilson 95 % intervals, the paired difference with the Wald interval for paired proportions, "
                  "McNemar's exact (binomial) test on the discordant items",
    }
    return result, [f"check failed: {c['name']}: {c['detail']}" for c in checks if c["status"] == "failed"]


def summary_table(result: dict):
    import pandas as pd

    return pd.DataFrame([{"task": t["task"], "metric": t["metric"], "items": t["items"],
                          "reference": t["reference"]["score"], "vllm": t["candidate"]["score"],
                          "delta": t["delta"]["value"], "delta_ci95": (t["delta"]["ci95_low"], t["delta"]["ci95_high"]),
                          "mcnemar_p": t["mcnemar_exact_p"], "discordant": len(t["discordant"])}
                         for t in result["tasks"]])


def scores_chart(result: dict, ctx) -> str:
    import matplotlib.pyplot as plt

    tasks = result["tasks"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(tasks), 3.4))
    width = 0.38
    labels = (("reference", f"transformers {result['reference']['dtype']}"),
              ("candidate", f"vLLM {result['candidate']['dtype']}"))
    for k, (side, label) in enumerate(labels):
        xs = [i + (k - 0.5) * width for i in range(len(tasks))]
        ys = [t[side]["score"] for t in tasks]
        err = [[y - t[side]["ci95_low"] for y, t in zip(ys, tasks)], [t[side]["ci95_high"] - y for y, t in zip(ys, tasks)]]
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=label)
    ax.set_xticks(range(len(tasks)), [t["task"] for t in tasks])
    ax.set_ylim(0, 1)
    ax.set_ylabel("score (95 % CI)")
    ax.legend(fontsize=8)
    return ctx.save_figure(fig, "scores", dpi=110)


def discordant_table(result: dict):
    import pandas as pd

    rows = []
    for t in result["tasks"]:
        for it in t["discordant"]:
            rows.append({"task": it["task"], "id": it["id"] if it["id"] is not None else it["doc_id"],
                         "target": it["target"], "reference": json.dumps(it["reference"]["answer"], ensure_ascii=False),
                         "vllm": json.dumps(it["candidate"]["answer"], ensure_ascii=False),
                         "reference_correct": it["reference"]["score"], "vllm_correct": it["candidate"]["score"]})
    return pd.DataFrame(rows)

