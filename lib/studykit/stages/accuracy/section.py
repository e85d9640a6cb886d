"""The accuracy stage's parts of the report (SECTIONS, by id) and its rows of the summary (SUMMARY)."""

from __future__ import annotations

from studykit.report.blocks import (Ctx, SummaryRow, checks_table, metric_label, metrics_table, params_table,
                                    show_charts, stage_banner)
from studykit.report.mdtools import fmt, inline_code
from studykit.schema.metrics import metric, stage_metrics

SUMMARY = (SummaryRow("sum_accuracy", ("accuracy.token_agreement_excluding_near_ties", "accuracy.real_divergences",
                                       "accuracy.near_ties", "accuracy.top1_agreement", "accuracy.mean_kl")),)


def accuracy(ctx: Ctx) -> None:
    """The seed's accuracy test: free-running and teacher-forced comparison with the transformers reference."""
    md = ctx.md
    acc = ctx.run.stages["accuracy"]
    if acc.requested or acc.ran:
        md.p(f"**{ctx.t('a_thresholds')}**")
        params_table(ctx, "accuracy")
    if stage_banner(ctx, "accuracy"):
        metrics_table(ctx, stage_metrics("accuracy"))
        per_prompt = acc.result.per_prompt
        if per_prompt:
            md.table([ctx.t("col_prompt"), ctx.t("col_agreement"), ctx.t("col_first_divergence"),
                      metric_label(metric("accuracy.top1_agreement"), ctx.lang)],
                     [[pp.id, fmt(pp.token_agreement), fmt(pp.first_divergence),
                       fmt(pp.teacher_forced.top1_agreement if pp.teacher_forced else None)] for pp in per_prompt])
        diverged = [(pp.id, pp.first_divergence_detail) for pp in per_prompt if pp.first_divergence_detail]
        if diverged:
            md.p(ctx.t("a_divergences", margin=fmt(ctx.run.stage_params("accuracy").get("near_tie_margin"))))
            md.table([ctx.t("col_prompt"), ctx.t("col_position"), ctx.t("col_kind"), ctx.t("col_ref_token"),
                      ctx.t("col_vllm_token"), "p_ref(ref)", "p_ref(vLLM)", ctx.t("col_margin"), "p_vLLM(ref)",
                      "p_vLLM(vLLM)"],
                     [[prompt, d.position, ctx.t(f"kind_{d.kind}"),
                       inline_code(repr(d.ref_token_text or d.ref_token)),
                       inline_code(repr(d.vllm_token_text or d.vllm_token)), fmt(d.p_ref_ref_token),
                       fmt(d.p_ref_vllm_token), fmt(d.margin), fmt(d.p_vllm_ref_token), fmt(d.p_vllm_vllm_token)]
                      for prompt, d in diverged])
        if not checks_table(ctx, ["accuracy"]):
            md.p(ctx.t("a_none"))
        show_charts(ctx, "accuracy")


SECTIONS = {"accuracy": accuracy}
