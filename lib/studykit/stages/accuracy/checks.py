"""The accuracy stage's checks, each against its threshold in the params: the free-running agreement up to each
prompt's first real divergence (near ties excluded, see compare.free_running_summary; the raw agreement is a
reported number, not a gate), teacher-forced top-1 agreement and mean KL, and greedy determinism over two passes.
A summary the stage could not compute makes its check not_run, never passed."""

from __future__ import annotations

from studykit.checks import check, not_run
from studykit.schema.base import Check
from studykit.stages.accuracy.compare import DIVERGENCE
from studykit.stages.accuracy.params import AccuracyParams
from studykit.stages.accuracy.result import AccuracyResult


def checks(p: AccuracyParams, result: AccuracyResult) -> list[Check]:
    return [free_running_gate(p, result), *teacher_forced_gates(p, result), determinism(result)]


def free_running_gate(p: AccuracyParams, result: AccuracyResult) -> Check:
    cid, name = "accuracy.min_token_agreement", "free-running token agreement up to the first real divergence >= threshold"
    metric = "accuracy.token_agreement_excluding_near_ties"
    fr, tf = result.free_running, result.teacher_forced
    if fr is None:
        return not_run(cid, name, "no free-running comparison was recorded", metric)
    if fr.token_agreement_excluding_near_ties is None:
        return not_run(cid, name, f"no comparable token: all {fr.prompts} prompts part at their first token in a "
                                  f"near tie", metric)
    real = [f"{pp.id}@{d.position} (" + (f"margin {d.margin:.4f}" if d.margin is not None else "length differs") + ")"
            for pp in result.per_prompt if (d := pp.first_divergence_detail) and d.kind == DIVERGENCE]
    shift = None if tf is None else tf.max_margin_shift
    return check(cid, name, fr.token_agreement_excluding_near_ties >= p.min_token_agreement,
                 f"{fr.agreeing_tokens}/{fr.comparable_tokens} comparable tokens agree (tokens after a near tie are "
                 f"not comparable; after a real divergence they count as wrong); real divergences: "
                 f"{', '.join(real) or 'none'}; near ties (margin <= {p.near_tie_margin:g}): {fr.near_ties}; raw "
                 f"agreement {fr.equal_tokens}/{fr.total_tokens} (not gating); largest teacher-forced top-2 margin "
                 f"shift {'not measured' if shift is None else f'{shift:.4f}'}",
                 p.min_token_agreement, fr.token_agreement_excluding_near_ties, metric)


def teacher_forced_gates(p: AccuracyParams, result: AccuracyResult) -> list[Check]:
    top1 = ("accuracy.min_top1_agreement", "teacher-forced top-1 agreement >= threshold", "accuracy.top1_agreement")
    kl = ("accuracy.max_mean_kl", "teacher-forced mean KL <= threshold", "accuracy.mean_kl")
    tf = result.teacher_forced
    if tf is None or not tf.positions:
        return [not_run(cid, name, "no teacher-forced position was compared", metric) for cid, name, metric in (top1, kl)]
    return [check(top1[0], top1[1], tf.top1_agreement >= p.min_top1_agreement, f"over {tf.positions} positions",
                  p.min_top1_agreement, tf.top1_agreement, top1[2]),
            check(kl[0], kl[1], tf.mean_kl <= p.max_mean_kl,
                  "KL(reference || vLLM) over vLLM's top-k plus a remaining-mass bucket", p.max_mean_kl, tf.mean_kl,
                  kl[2])]


def determinism(result: AccuracyResult) -> Check:
    cid, name = "accuracy.determinism", "greedy output identical in two passes"
    det = result.determinism
    if det is None:
        return not_run(cid, name, "the two free-running passes were not recorded")
    # identical and mismatched are written together; a record where they disagree is not a pass
    return check(cid, name, det.identical and not det.mismatched, f"mismatched prompts: {det.mismatched or 'none'}", True, det.identical)
