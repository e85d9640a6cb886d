"""The tasks stage's checks, per task (subject = the task's name): it was compared, both backends scored the same
items, a parse check per backend (lm-eval's per-item metric read from its sample log averages to lm-eval's own
aggregate: it catches reading the wrong log, filter or metric, nothing about the engine), the paired gate (the
95 % interval of vLLM - reference against +-max_abs_delta: passed, failed or inconclusive), and vLLM's score
against a recorded baseline (vllm-ascend's convention: a point comparison, not a decision; with the few hundred
items of a task, the Wilson interval of a score is wider than any rtol band, so as a decision it could only ever
read inconclusive)."""

from __future__ import annotations

from studykit.checks import check, not_run
from studykit.schema.base import Check
from studykit.stages.tasks.params import TasksParams
from studykit.stages.tasks.result import TaskParity, TasksResult
from studykit.stages.tasks.stage import SIDES
from studykit.verdict import decide, items_to_settle


def _parse_checks(name: str, t: TaskParity) -> list[Check]:
    out = []
    for side, backend in SIDES:
        s = getattr(t, side)
        cid = f"tasks.{backend}_log_parse"
        label = f"{name}: parse check: {backend} per-item log averages to lm-eval's aggregate"
        if s.lm_eval_score is None or s.logged_score is None:
            out.append(not_run(cid, label, "lm-eval reported no aggregate for this metric (a group, or a metric it "
                                           "does not aggregate), or no per-item log was read", subject=name))
        else:
            out.append(check(cid, label, abs(s.logged_score - s.lm_eval_score) <= 1e-9,
                             f"mean over the {s.logged_items} logged items {s.logged_score:.6g}, lm-eval "
                             f"{s.lm_eval_score:.6g} (ties and repeats included, as lm-eval scores them)",
                             s.lm_eval_score, s.logged_score, subject=name))
    return out


def _gate(p: TasksParams, t: TaskParity) -> Check:
    name, d, tol = t.task, t.delta, p.max_abs_delta
    outcome = decide(d.ci95_low, d.ci95_high, tol)
    source = t.gate.tolerance_source if t.gate else "tasks.max_abs_delta"
    left_out = (f"; left out: {len(t.duplicates)} repeated prompts, {len(t.tied)} tied items (ties: reference "
                f"{t.reference.ties}, vLLM {t.candidate.ties})" if t.duplicates or t.tied else "")
    detail = (f"vLLM {t.candidate.score:.4f} - reference {t.reference.score:.4f} = {d.value:+.4f} on {t.items} "
              f"items, 95 % interval {d.ci95_low:+.4f} .. {d.ci95_high:+.4f} ({d.method}) vs +-{tol} ({source}); "
              f"{t.only_reference_correct} only the reference right, {t.only_candidate_correct} only vLLM; McNemar "
              f"exact p = {t.mcnemar_exact_p:.4g}{left_out}")
    status = outcome
    if outcome == "inconclusive":
        settle = items_to_settle(t.only_candidate_correct, t.only_reference_correct, t.items, tol)
        detail = (f"inconclusive: the interval straddles +-{tol}; "
                  + (f"about {settle} items at the observed discordant rates would settle it"
                     if settle is not None else "no number of items would settle it at the observed rates")
                  + ("; accepted by tasks.accept_inconclusive" if p.accept_inconclusive else "") + f". {detail}")
        # an accepted inconclusive gate does not fail the stage; the detail keeps saying it was inconclusive
        status = "passed" if p.accept_inconclusive else "inconclusive"
    return Check(id="tasks.paired_delta_within_tolerance", subject=name,
                 name=f"{name}: 95 % interval of vLLM - reference within +-max_abs_delta", status=status,
                 detail=detail, expected=[-tol, tol], actual=[round(d.ci95_low, 6), round(d.ci95_high, 6)],
                 metric=f"tasks.{name}.delta")


def _task(p: TasksParams, t: TaskParity) -> list[Check]:
    name, cand = t.task, t.candidate.score
    out = [check("tasks.items_paired", f"{name}: both backends scored the same items", not t.unpaired,
                 f"{t.items + len(t.duplicates) + len(t.tied)} items paired"
                 + (f"; {len(t.unpaired)} not: {[u.model_dump() for u in t.unpaired[:5]]}" if t.unpaired else ""),
                 0, len(t.unpaired), subject=name)]
    out += _parse_checks(name, t)
    out.append(_gate(p, t))
    baseline = p.baselines.get(name)
    label = f"{name}: vLLM score within rtol of the recorded baseline (point estimate, vllm-ascend's convention)"
    if baseline is None:
        out.append(not_run("tasks.baseline_within_rtol", label, f"no recorded baseline for {name!r} (tasks.baselines)",
                           subject=name))
    else:
        out.append(check("tasks.baseline_within_rtol", label, abs(cand - baseline) <= p.rtol * baseline,
                         f"|{cand:.4f} - {baseline:.4f}| = {abs(cand - baseline):.4f} vs rtol {p.rtol} x baseline = "
                         f"{p.rtol * baseline:.4f}; a point comparison (vLLM's Wilson 95 % interval "
                         f"{t.candidate.ci95_low:.4f} .. {t.candidate.ci95_high:.4f} is not judged)",
                         round(p.rtol * baseline, 6), round(abs(cand - baseline), 6),
                         metric=f"tasks.{name}.candidate.score", subject=name))
    return out


def checks(p: TasksParams, result: TasksResult) -> list[Check]:
    compared = {t.task for t in result.tasks}
    out = [check("tasks.task_compared", f"{name}: compared on both backends", name in compared,
                 "paired" if name in compared else f"the result has no comparison of {name!r}; it has {sorted(compared)}",
                 name, name if name in compared else None, subject=name) for name in p.tasks]
    return out + [c for t in result.tasks for c in _task(p, t)]
