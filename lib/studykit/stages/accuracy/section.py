"""The accuracy stage's parts of the report (SECTIONS, by id) and its rows of the summary (SUMMARY)."""

from __future__ import annotations

from studykit.report.blocks import (Ctx, SummaryRow, checks_table, metrics_table, params_table, show_charts,
                                    stage_banner)
from studykit.report.mdtools import fmt, inline_code
from studykit.schema.metrics import by_id, dig, stage_metrics
from studykit.stages.accuracy.stage import divergence_rows

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
        per_prompt = acc.get("per_prompt") or []
        if per_prompt:
            md.table([ctx.t("col_prompt"), ctx.t("col_agreement"), ctx.t("col_first_divergence"),
                      by_id()["accuracy.top1_agreement"].en if ctx.lang == "en" else by_id()["accuracy.top1_agreement"].zh],
                     [[pp.get("id"), fmt(pp.get("token_agreement")), fmt(pp.get("first_divergence")),
                       fmt(dig(pp, "teacher_forced.top1_agreement"))] for pp in per_prompt])
        rows = divergence_rows(acc.result)
        if rows:
            md.p(ctx.t("a_divergences", margin=fmt(dig(ctx.run.params("accuracy"), "near_tie_margin"))))
            md.table([ctx.t("col_prompt"), ctx.t("col_position"), ctx.t("col_kind"), ctx.t("col_ref_token"),
                      ctx.t("col_vllm_token"), "p_ref(ref)", "p_ref(vLLM)", ctx.t("col_margin"), "p_vLLM(ref)",
                      "p_vLLM(vLLM)"],
                     [[r["prompt"], r["position"], ctx.t(f"kind_{r['kind']}"),
                       inline_code(repr(r.get("ref_token_text") or r["ref_token"])),
                       inline_code(repr(r.get("vllm_token_text") or r["vllm_token"])), fmt(r["p_ref_ref_token"]),
                       fmt(r["p_ref_vllm_token"]), fmt(r["margin"]), fmt(r["p_vllm_ref_token"]),
                       fmt(r["p_vllm_vllm_token"])] for r in rows])
        if not checks_table(ctx, ["accuracy"]):
            md.p(ctx.t("a_none"))
        show_charts(ctx, "accuracy")


SECTIONS = {"accuracy": accuracy}
