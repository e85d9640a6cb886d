"""The accuracy stage's checks: no real free-running divergence beyond what the params allow (every position
judged on the reference's context, see compare.judge_free_running; the raw agreement is a reported number, not a
gate), teacher-forced top-1 agreement and mean KL, and greedy determinism over two passes. Thresholds are the ones
the run recorded (result.thresholds: the calibration's multiples or the params' values, result.threshold_basis
says which). A free-running comparison that judged nothing fails; a summary the stage never reached is not_run."""

from __future__ import annotations

from studykit.checks import check, not_run
from studykit.schema.base import Check
from studykit.stages.accuracy.compare import DIVERGENCE
from studykit.stages.accuracy.params import AccuracyParams
from studykit.stages.accuracy.result import AccuracyResult


def checks(p: AccuracyParams, result: AccuracyResult) -> list[Check]:
    return [free_running_gate(p, result), *teacher_forced_gates(result), determinism(result)]


def _source(result: AccuracyResult, name: str) -> str:
    b = result.threshold_basis.get(name)
    if b is None:
        return "source not recorded"
    if b.source == "params":
        return "from params"
    return f"{b.multiple:g} x {b.measurement} {b.measured:.4g}" if b.formula is None else b.formula


def free_running_gate(p: AccuracyParams, result: AccuracyResult) -> Check:
    cid, name = "accuracy.real_divergences", "no real free-running divergence (beyond the allowed count)"
    metric = "accuracy.real_divergences"
    fr = result.free_running
    if fr is None:
        return not_run(cid, name, "no free-running comparison was recorded", metric)
    allowed = p.max_real_divergences
    expected_positions = fr.total_tokens
    if not fr.positions or fr.real_divergences is None or fr.positions < expected_positions:
        return check(cid, name, False, f"judged {fr.positions or 0} of {expected_positions} free-running positions: "
                                       f"a comparison that judged fewer than all is no pass", allowed,
                     fr.real_divergences, metric)
    real = [f"{pp.id}@{d.position} ({d.why})" for pp in result.per_prompt for d in pp.divergences
            if d.kind == DIVERGENCE]
    shown = "; ".join(real[:5]) + (f"; and {len(real) - 5} more" if len(real) > 5 else "")
    return check(cid, name, fr.real_divergences <= allowed,
                 f"{fr.positions} positions judged on the reference's context in {fr.requests} requests: "
                 f"{fr.agreeing_positions} agree, {fr.near_ties} near ties (near_tie_margin "
                 f"{result.thresholds.get('near_tie_margin', float('nan')):.4g}, {_source(result, 'near_tie_margin')}), "
                 f"{fr.real_divergences} real: {shown or 'none'}; raw agreement of the plain free run "
                 f"{fr.equal_tokens}/{fr.total_tokens} (not gating)", allowed, fr.real_divergences, metric)


def teacher_forced_gates(result: AccuracyResult) -> list[Check]:
    top1 = ("accuracy.min_top1_agreement", "teacher-forced top-1 agreement >= threshold", "accuracy.top1_agreement")
    kl = ("accuracy.max_mean_kl", "teacher-forced mean KL <= threshold", "accuracy.mean_kl")
    tf, th = result.teacher_forced, result.thresholds
    if tf is None or not tf.positions:
        return [not_run(cid, name, "no teacher-forced position was compared", metric) for cid, name, metric in (top1, kl)]
    out = []
    for (cid, name, metric), key, value, ok in (
            (top1, "min_top1_agreement", tf.top1_agreement, lambda v, t: v >= t),
            (kl, "max_mean_kl", tf.mean_kl, lambda v, t: v <= t)):
        if key not in th:
            out.append(not_run(cid, name, f"no {key} threshold was recorded (the calibration did not finish)", metric))
            continue
        out.append(check(cid, name, ok(value, th[key]), f"over {tf.positions} positions; threshold {th[key]:.4g} "
                                                         f"({_source(result, key)})", th[key], value, metric))
    return out


def determinism(result: AccuracyResult) -> Check:
    cid, name = "accuracy.determinism", "greedy output identical in two passes"
    det = result.determinism
    if det is None:
        return not_run(cid, name, "the two free-running passes were not recorded")
    # identical and mismatched are written together; a record where they disagree is not a pass
    return check(cid, name, det.identical and not det.mismatched, f"mismatched prompts: {det.mismatched or 'none'}", True, det.identical)
