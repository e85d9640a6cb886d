"""The tasks stage's parts of the report (SECTIONS, by id) and its rows of the summary (SUMMARY)."""

from __future__ import annotations

from studykit.report.blocks import Ctx, SummaryRow, checks_table, show_charts, stage_banner
from studykit.report.mdtools import DASH, fmt, inline_code


def _task_figures(ctx: Ctx) -> str:
    """Per task: both scores, the paired difference and McNemar's p."""
    parts = []
    res = ctx.run.stages["tasks"].result
    for t in res.tasks if res is not None else []:
        parts.append(ctx.t("sum_task", task=t.task, ref=fmt(t.reference.score), vllm=fmt(t.candidate.score),
                           delta=fmt(t.delta.value), p=fmt(t.mcnemar_exact_p)))
    return "; ".join(parts) or DASH


def task_accuracy(ctx: Ctx) -> None:
    """Task accuracy: lm-eval scores on vLLM and on the fp32 reference, paired item by item."""
    md = ctx.md
    st = ctx.run.stages.get("tasks")
    if st is None or not (st.requested or st.ran):
        return
    md.h(3, ctx.t("s6_3"))
    if not stage_banner(ctx, "tasks"):
        return
    res = st.result
    md.p(ctx.t("t_intro", version=res.lm_eval_version or DASH, method=res.method or ""))
    rows = []
    for t in res.tasks:
        ref, cand, delta = t.reference, t.candidate, t.delta
        rows.append([t.task, t.metric, t.items,
                     f"{fmt(ref.score)} [{fmt(ref.ci95_low)}, {fmt(ref.ci95_high)}]",
                     f"{fmt(cand.score)} [{fmt(cand.ci95_low)}, {fmt(cand.ci95_high)}]",
                     f"{fmt(delta.value)} [{fmt(delta.ci95_low)}, {fmt(delta.ci95_high)}]",
                     f"{t.only_reference_correct} / {t.only_candidate_correct}", fmt(t.mcnemar_exact_p)])
    md.table([ctx.t("t_task"), ctx.t("t_metric"), ctx.t("t_items"), ctx.t("t_reference"), ctx.t("t_vllm"),
              ctx.t("t_delta"), ctx.t("t_discordant"), ctx.t("t_p")], rows)
    for t in res.tasks:
        if t.discordant:
            md.p(ctx.t("t_discordant_items", task=t.task, n=len(t.discordant)))
            md.table([ctx.t("t_item"), ctx.t("t_target"), ctx.t("t_ref_answer"), ctx.t("t_vllm_answer")],
                     [[f"{d.task}#{d.doc_id}", inline_code(_answer_text(d.target)),
                       inline_code(_answer_text(d.reference.answer)) + f" ({fmt(d.reference.score)})",
                       inline_code(_answer_text(d.candidate.answer)) + f" ({fmt(d.candidate.score)})"]
                      for d in t.discordant[:20]])
    if not checks_table(ctx, ["tasks"]):
        md.p(ctx.t("a_none"))
    show_charts(ctx, "tasks")


def _answer_text(answer) -> str:
    if isinstance(answer, dict):
        answer = answer.get("text", answer.get("choice"))
    return str(answer)[:80].replace("|", "/").replace("`", "'").replace("\n", " ")


SUMMARY = (SummaryRow("sum_tasks", figures=_task_figures),)
SECTIONS = {"tasks": task_accuracy}
