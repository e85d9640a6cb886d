"""The tasks stage: inputs checked, the reference run, the vLLM run, then per-item pairing (checks.py checks it).

Per-item scores come from lm-eval's own --log_samples files (kept in raw/tasks/<backend>/), so the kit does
not re-score anything: it pairs the two backends' records of the same document and compares them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from studykit.engine import cmdline
from studykit.plan import Step, base_url
from studykit.stages.tasks import lmeval
from studykit.stages.tasks.lmeval import OFFLINE_ENV, SERVER_LABEL, STAGE
from studykit.stages.tasks.data import resolve_tasks, write_task_dir
from studykit.stages.tasks.params import TasksParams
from studykit.stages.tasks.result import TasksResult
from studykit.stages.tasks.stats import parity
from studykit.verdict import decide, items_to_settle


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


def _keyed(sample: dict, n_choices: int) -> set[int] | None:
    """The keyed choice indices of a multiple-choice sample (lm-eval logs the target as an index, its string, a
    list of them, or the choice text); None when the log does not say."""
    target = sample.get("target")
    targets = target if isinstance(target, list) else [target]
    texts = [((sample.get("arguments") or {}).get(f"gen_args_{i}") or {}).get("arg_1") for i in range(n_choices)]
    out = set()
    for t in targets:
        if isinstance(t, int) and not isinstance(t, bool) and 0 <= t < n_choices:
            out.add(t)
        elif isinstance(t, str) and t.strip().isdigit() and int(t) < n_choices:
            out.add(int(t))
        elif isinstance(t, str) and t.strip() in [(x or "").strip() for x in texts]:
            out.add([(x or "").strip() for x in texts].index(t.strip()))
        else:
            return None
    return out or None


def _deciding_tie(sample: dict, answer: Any) -> list[int] | None:
    """The choices sharing the top log-likelihood when the keyed one is among them (or the key is unknown): then
    lm-eval's argmax picks the first by choice order, and the item's score says nothing about the backend. A
    tie among wrong choices only scores 0 either way, so it is no tie here."""
    if not isinstance(answer, dict):
        return None
    lls = answer["loglikelihoods"]
    top = [i for i, x in enumerate(lls) if x == max(lls)]
    if len(top) < 2:
        return None
    keyed = _keyed(sample, len(lls))
    return top if keyed is None or keyed & set(top) else None


def item_records(samples: list[dict], metric: str, filt: str) -> dict[int, dict]:
    """{doc_id: record} from one sample log (lm-eval logs a document once per filter; keep the one compared)."""
    out = {}
    for s in samples:
        if s.get("filter") != filt or metric not in s:
            continue
        doc = s.get("doc") or {}
        answer = _answer(s)
        out[int(s["doc_id"])] = {"doc_id": int(s["doc_id"]), "id": doc.get("id"), "target": s.get("target"),
                                 "answer": answer, "score": s[metric], "tie": _deciding_tie(s, answer),
                                 "doc_hash": s.get("doc_hash"), "prompt_hash": s.get("prompt_hash")}
    return out


def _loglik_delta(ref: dict, cand: dict) -> float | None:
    """Largest |log-likelihood(vLLM) - log-likelihood(reference)| over the item's choices (nats)."""
    a, b = ref["answer"], cand["answer"]
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return None
    return max(abs(x - y) for x, y in zip(a["loglikelihoods"], b["loglikelihoods"]))


def lm_eval_score(results: dict, task: str, metric: str, subtasks: list[str]) -> float | None:
    """lm-eval's own aggregate of a task under the metric the kit compared (for the parse check); none for a
    group (its aggregate weighs subtasks its own way) or a metric lm-eval does not aggregate."""
    agg = results.get("results", {}).get(task, {})
    return agg.get(metric) if "," in metric and not subtasks else None


def _exclusion(it: dict, seen: dict[tuple[str, str], int]) -> str | None:
    """Why a paired item stays out of the comparison: its prompt repeats an earlier item's (lm-eval's prompt_hash
    is the hash of the context the model sees; a repeat would count one question twice), or a backend's score
    of it was decided by choice order (a deciding tie)."""
    key = (it["task"], it["prompt_hash"])
    if it["prompt_hash"] is not None and key in seen:
        return f"duplicate: same prompt as doc {seen[key]}"
    if it["prompt_hash"] is not None:
        seen[key] = it["doc_id"]
    ties = [f"{backend} {it[side]['tie']}" for side, backend in SIDES if it[side]["tie"]]
    return f"tie: top log-likelihood shared by choices ({'; '.join(ties)})" if ties else None


SIDES = (("reference", "reference"), ("candidate", "vllm"))  # result side, backend as lm-eval's runs are named


def compare_task(name: str, leaves: list[str], ref_samples: dict[str, list[dict]],
                 cand_samples: dict[str, list[dict]], spec: str | None,
                 aggregates: dict[str, dict] | None = None) -> dict:
    """Pair the two backends item by item over a task's leaves (a group pools its subtasks' items), leave out
    repeated prompts (the first is kept) and items a tie decided on either backend, and compare what is left.
    `aggregates` ({backend: lm-eval's results JSON}) adds lm-eval's own score of each side for the parse check."""
    paired, mismatched, metric_used = [], [], set()
    logged: dict[str, list[float]] = {"reference": [], "candidate": []}
    for leaf in leaves:
        for backend, logs in (("reference", ref_samples), ("vllm", cand_samples)):
            if leaf not in logs:
                raise ValueError(f"task {leaf!r}: the {backend} run logged no samples (raw/tasks/{backend}/)")
        metric, filt = _metric_of(ref_samples[leaf], spec, f"task {leaf!r} (reference)")
        metric_used.add(f"{metric},{filt}")
        ref = item_records(ref_samples[leaf], metric, filt)
        cand = item_records(cand_samples[leaf], metric, filt)
        logged["reference"] += [r["score"] for r in ref.values()]
        logged["candidate"] += [c["score"] for c in cand.values()]
        for doc_id in sorted(set(ref) | set(cand)):
            r, c = ref.get(doc_id), cand.get(doc_id)
            if r is None or c is None or r["prompt_hash"] != c["prompt_hash"] or r["doc_hash"] != c["doc_hash"]:
                mismatched.append({"task": leaf, "doc_id": doc_id,
                                   "why": "missing on one side" if r is None or c is None else "different prompt"})
                continue
            paired.append({"task": leaf, "doc_id": doc_id, "id": r["id"], "target": r["target"],
                           "prompt_hash": r["prompt_hash"],
                           "reference": {"answer": r["answer"], "score": r["score"], "tie": r["tie"]},
                           "candidate": {"answer": c["answer"], "score": c["score"], "tie": c["tie"]},
                           "max_abs_loglik_delta_nats": _loglik_delta(r, c)})
    if not paired:
        raise ValueError(f"task {name!r}: no item was scored by both backends")
    seen: dict[tuple[str, str], int] = {}
    for it in paired:
        it["excluded"] = _exclusion(it, seen)
    items = [it for it in paired if it["excluded"] is None]
    duplicates = [{"doc_id": it["doc_id"], "id": it["id"], "why": it["excluded"]} for it in paired
                  if (it["excluded"] or "").startswith("duplicate")]
    tied = [{"doc_id": it["doc_id"], "id": it["id"], "why": it["excluded"]} for it in paired
            if (it["excluded"] or "").startswith("tie")]
    if not items:
        raise ValueError(f"task {name!r}: all {len(paired)} paired items are duplicates or ties; nothing to compare")
    stats = parity([it["reference"]["score"] for it in items], [it["candidate"]["score"] for it in items])
    deltas = [it["max_abs_loglik_delta_nats"] for it in items if it["max_abs_loglik_delta_nats"] is not None]
    discordant = [it for it in items if it["reference"]["score"] != it["candidate"]["score"]]
    subtasks, metric = leaves if leaves != [name] else [], ",".join(sorted(metric_used))
    for side, backend in SIDES:
        scores = logged[side]
        stats[side].update(ties=sum(1 for it in paired if it[side]["tie"]), logged_items=len(scores),
                           logged_score=sum(scores) / len(scores) if scores else None,
                           lm_eval_score=lm_eval_score((aggregates or {}).get(backend, {}), name, metric, subtasks))
    for it in paired:
        del it["prompt_hash"]
    return {"task": name, "subtasks": subtasks, "metric": metric, **stats, "duplicates": duplicates, "tied": tied,
            "unpaired": mismatched,
            "loglikelihood": ({"items": len(deltas), "mean_max_abs_delta_nats": sum(deltas) / len(deltas),
                               "max_abs_delta_nats": max(deltas)} if deltas else None),
            "discordant": discordant, "per_item": paired}


def threshold_sources(p: TasksParams) -> dict[str, dict]:
    """Each threshold with where it comes from. None is derived by the kit from a measurement: a value equal to
    the params default is the default (a chosen tolerance), another value came from the study file."""
    def source(field: str, default_why: str) -> str:
        default = TasksParams.model_fields[field].default
        return (f"params default ({default_why}); not measured" if getattr(p, field) == default
                else f"study file (tasks.{field}); not measured by the kit")

    return {"max_abs_delta": {"value": p.max_abs_delta,
                              "source": source("max_abs_delta", "a chosen tolerance for the paired difference")},
            "accept_inconclusive": {"value": p.accept_inconclusive,
                                    "source": source("accept_inconclusive", "an inconclusive gate fails the stage")},
            "rtol": {"value": p.rtol, "source": source("rtol", "vllm-ascend's accuracy-test convention")},
            "baselines": {"value": dict(p.baselines),
                          "source": "study file (tasks.baselines)" if p.baselines else "none given"}}


def gate(t: dict, p: TasksParams, source: str) -> dict:
    """The paired difference of one compared task judged against tasks.max_abs_delta (studykit.verdict)."""
    outcome = decide(t["delta"]["ci95_low"], t["delta"]["ci95_high"], p.max_abs_delta)
    settle = (items_to_settle(t["only_candidate_correct"], t["only_reference_correct"], t["items"],
                              p.max_abs_delta) if outcome == "inconclusive" else None)
    return {"outcome": outcome, "tolerance": p.max_abs_delta, "tolerance_source": source,
            "items_to_settle": settle, "accepted": outcome == "inconclusive" and p.accept_inconclusive}


def run_step(ctx, step, timeout: float | None = None) -> dict:
    rec = ctx.run_step(step, timeout=timeout)
    if rec.returncode != 0:
        raise RuntimeError(f"{step.label} exited with {rec.returncode}; log: {rec.log}")
    return {"label": rec.label, "argv": rec.argv, "command": rec.command, "seconds": rec.seconds,
            "returncode": rec.returncode}


METHOD = ("per-item 0/1 scores from lm-eval's sample logs of both runs, paired by document; items whose prompt "
          "repeats an earlier item's are left out (the first kept), and so are multiple-choice items where either "
          "backend gives the top log-likelihood to several choices, the keyed one among them (lm-eval would break "
          "that tie by choice order); scores with Wilson 95 % intervals, the paired difference vLLM - reference with "
          "Agresti and Min's 95 % interval judged against +-tasks.max_abs_delta (passed inside, failed outside, "
          "inconclusive across a bound), McNemar's exact (binomial) test on the discordant items")


def run(ctx, p: TasksParams) -> TasksResult:
    """Both backends, then the pairing. Every input is checked before the reference model or the server starts;
    what was measured is kept if a later step fails (ctx.keep)."""
    thresholds = threshold_sources(p)
    data: dict[str, Any] = {"params": p.model_dump(mode="json"), "method": METHOD, "commands": [],
                            "thresholds": thresholds}
    with ctx.keep(data):
        data["lm_eval_version"] = lmeval.lm_eval_version()
        resolved = resolve_tasks(p)
        data["task_sources"] = {"local": resolved["local"],
                                "hub": {k: {"leaves": v["leaves"],
                                            "local_datasets": {leaf: d for leaf, (_, d) in v["overrides"].items()}}
                                        for k, v in resolved["hub"].items()}}
        write_task_dir(resolved, lmeval.task_dir(ctx.run_dir))
        ref_step, server_step, vllm_step = ctx.plan()
        t0 = time.monotonic()
        data["commands"].append(run_step(ctx, ref_step))
        data["reference"] = {"engine": "transformers (lm-eval hf)", "dtype": p.reference_dtype, "device": "cpu",
                             "seconds": round(time.monotonic() - t0, 3)}
        with ctx.server_for(server_step) as srv:
            data["server"] = srv.label
            t0 = time.monotonic()
            data["commands"].append(run_step(ctx, vllm_step))
            data["candidate"] = {"engine": "vllm (lm-eval local-completions)", "dtype": ctx.study.model.dtype,
                                 "server_command": srv.command, "seconds": round(time.monotonic() - t0, 3)}
        samples, aggregates = {}, {}
        for backend in lmeval.BACKENDS:
            out_dir = lmeval.output_dir(ctx.run_dir, backend)
            samples[backend] = {t: lmeval.read_samples(f) for t, f in lmeval.sample_files(out_dir).items()}
            aggregates[backend] = lmeval.read_results(out_dir)
        data["reference"]["results_file"] = aggregates["reference"]["_path"]
        data["candidate"]["results_file"] = aggregates["vllm"]["_path"]
        leaves = {name: (resolved["hub"][name]["leaves"] if name in resolved["hub"] else [name]) for name in p.tasks}
        data["tasks"] = []
        for name in p.tasks:
            t = compare_task(name, leaves[name], samples["reference"], samples["vllm"], p.metrics.get(name),
                             aggregates)
            t["gate"] = gate(t, p, thresholds["max_abs_delta"]["source"])
            data["tasks"].append(t)
    return ctx.result(data)


def summary_table(result: TasksResult):
    import pandas as pd

    return pd.DataFrame([{"task": t.task, "metric": t.metric, "items": t.items, "reference": t.reference.score,
                          "vllm": t.candidate.score, "delta": t.delta.value,
                          "delta_ci95": (t.delta.ci95_low, t.delta.ci95_high),
                          "gate": t.gate.outcome if t.gate else None,
                          "items_to_settle": t.gate.items_to_settle if t.gate else None,
                          "mcnemar_p": t.mcnemar_exact_p, "discordant": len(t.discordant),
                          "duplicates_left_out": len(t.duplicates), "ties_left_out": len(t.tied),
                          "ties_reference": t.reference.ties, "ties_vllm": t.candidate.ties} for t in result.tasks])


def charts(ctx, result: TasksResult) -> list[str]:
    """Both backends' scores per task with their Wilson intervals."""
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    tasks = result.tasks
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(tasks), 3.4))
    width = 0.38
    labels = (("reference", f"transformers {(result.reference or {}).get('dtype')}"),
              ("candidate", f"vLLM {(result.candidate or {}).get('dtype')}"))
    for k, (side, label) in enumerate(labels):
        scores = [getattr(t, side) for t in tasks]
        xs = [i + (k - 0.5) * width for i in range(len(tasks))]
        ys = [s.score for s in scores]
        err = [[s.score - s.ci95_low for s in scores], [s.ci95_high - s.score for s in scores]]
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=label)
    ax.set_xticks(range(len(tasks)), [t.task for t in tasks])
    ax.set_ylim(0, 1)
    ax.set_ylabel("score (95 % CI)")
    ax.legend(fontsize=8)
    return [ctx.save_figure(fig, "scores", dpi=110)]


def discordant_table(result: TasksResult):
    import pandas as pd

    rows = [{"task": it.task, "id": it.id if it.id is not None else it.doc_id, "target": it.target,
             "reference": json.dumps(it.reference.answer, ensure_ascii=False),
             "vllm": json.dumps(it.candidate.answer, ensure_ascii=False),
             "reference_correct": it.reference.score, "vllm_correct": it.candidate.score}
            for t in result.tasks for it in t.discordant]
    return pd.DataFrame(rows, columns=["task", "id", "target", "reference", "vllm", "reference_correct",
                                       "vllm_correct"])
