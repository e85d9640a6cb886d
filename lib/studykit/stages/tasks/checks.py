"""The tasks stage's checks, per task (subject = the task's name): it was compared, both backends scored the same
items, each side's score from the per-item logs equals lm-eval's own aggregate (a parse check), the paired
difference is within max_abs_delta, and vLLM's score is within rtol of a recorded baseline (vllm-ascend's
convention)."""

from __future__ import annotations

from studykit.checks import check, not_run
from studykit.schema.base import Check
from studykit.stages.tasks.params import TasksParams
from studykit.stages.tasks.result import TaskParity, TasksResult

SIDES = (("reference", "reference"), ("candidate", "vllm"))  # result side, backend as lm-eval's runs are named


def _task(p: TasksParams, t: TaskParity) -> list[Check]:
    name, ref, cand = t.task, t.reference.score, t.candidate.score
    out = [check("tasks.items_paired", f"{name}: both backends scored the same items", not t.unpaired,
                 f"{t.items} items paired" + (f"; {len(t.unpaired)} not: "
                                              f"{[u.model_dump() for u in t.unpaired[:5]]}" if t.unpaired else ""),
                 0, len(t.unpaired), subject=name)]
    for side, backend in SIDES:
        cid, label = f"tasks.{backend}_score_matches_lm_eval", f"{name}: {backend} score from per-item logs = lm-eval's score"
        mine, theirs = getattr(t, side).score, getattr(t, side).lm_eval_score
        if theirs is None:
            out.append(not_run(cid, label, "lm-eval reported no aggregate for this metric (a group, or a metric it "
                                           "does not aggregate)", subject=name))
        elif t.unpaired:
            out.append(not_run(cid, label, "some items are unpaired, so the paired score covers fewer items than "
                                           "lm-eval's", subject=name))
        else:
            out.append(check(cid, label, abs(mine - theirs) <= 1e-9, f"per-item mean {mine:.6g}, lm-eval {theirs:.6g}",
                             theirs, mine, subject=name))
    delta = cand - ref
    out.append(check("tasks.delta_within_max_abs_delta", f"{name}: |vLLM - reference| <= max_abs_delta",
                     abs(delta) <= p.max_abs_delta,
                     f"vLLM {cand:.4f} - reference {ref:.4f} = {delta:+.4f} (95 % CI {t.delta.ci95_low:+.4f} .. "
                     f"{t.delta.ci95_high:+.4f}); McNemar exact p = {t.mcnemar_exact_p:.4g} on "
                     f"{t.only_candidate_correct + t.only_reference_correct} discordant items",
                     p.max_abs_delta, round(abs(delta), 6), metric=f"tasks.{name}.delta", subject=name))
    baseline = p.baselines.get(name)
    label = f"{name}: vLLM score within rtol of the recorded baseline"
    if baseline is None:
        out.append(not_run("tasks.baseline_within_rtol", label, f"no recorded baseline for {name!r} (tasks.baselines)",
                           subject=name))
    else:
        out.append(check("tasks.baseline_within_rtol", label, abs(cand - baseline) <= p.rtol * baseline,
                         f"|{cand:.4f} - {baseline:.4f}| = {abs(cand - baseline):.4f} vs rtol {p.rtol} x baseline = "
                         f"{p.rtol * baseline:.4f} (vllm-ascend's convention)", round(p.rtol * baseline, 6),
                         round(abs(cand - baseline), 6), metric=f"tasks.{name}.candidate.score", subject=name))
    return out


def checks(p: TasksParams, result: TasksResult) -> list[Check]:
    compared = {t.task for t in result.tasks}
    out = [check("tasks.task_compared", f"{name}: compared on both backends", name in compared,
                 "paired" if name in compared else f"the result has no comparison of {name!r}; it has {sorted(compared)}",
                 name, name if name in compared else None, subject=name) for name in p.tasks]
    return out + [c for t in result.tasks for c in _task(p, t)]
