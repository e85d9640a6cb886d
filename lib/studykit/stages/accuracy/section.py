"""The accuracy stage's parts of the report (SECTIONS, by id) and its rows of the summary (SUMMARY)."""

from __future__ import annotations

from studykit.report.blocks import (Ctx, SummaryRow, checks_table, metric_label, metrics_table, params_table,
                                    show_charts, stage_banner)
from studykit.report.mdtools import fmt, inline_code
from studykit.schema.metrics import metric, stage_metrics

SUMMARY = (SummaryRow("sum_accuracy", ("accuracy.real_divergences", "accuracy.near_ties", "accuracy.top1_agreement",
                                       "accuracy.mean_kl")),)

# This stage's own sentences (the shared i18n table still holds the older first-divergence wording).
TEXT = {
    "calibration_col": {"zh": "校准项", "en": "Calibration"},
    "thresholds": {"zh": "门槛及其来源(校准 = 参考模型 bf16 对 fp32 的噪声 × 倍数;或来自 params)",
                   "en": "Thresholds and where each came from (calibration = the reference's bf16-vs-fp32 noise x a "
                         "multiple; or params)"},
    "calibration": {"zh": "校准(同一检查点 {dtype} 对参考模型 {ref},teacher forcing,{n} 个位置,无 vLLM)",
                    "en": "Calibration (the same checkpoint in {dtype} against the {ref} reference, teacher-forced, "
                          "{n} positions, no vLLM)"},
    "divergences": {"zh": "自由生成中 vLLM 的 token 与参考模型不同的每个位置(在参考模型上下文中判定):两引擎的概率差都不超过 "
                          "{margin}、vLLM 选了自己概率最高的 token、且该位置 KL 不超过 {kl} 时为近似平局,否则为真实分歧。",
                    "en": "Every free-running position where vLLM's token differs from the reference's, judged on the "
                          "reference's context: a near tie when vLLM emitted its own top token, both engines' "
                          "margins are within {margin} and the KL there is within {kl}; otherwise a real "
                          "divergence."},
}


def accuracy(ctx: Ctx) -> None:
    """The seed's accuracy test: free-running and teacher-forced comparison with the transformers reference."""
    md = ctx.md
    acc = ctx.run.stages["accuracy"]
    if acc.requested or acc.ran:
        md.p(f"**{ctx.t('a_thresholds')}**")
        params_table(ctx, "accuracy")
    if stage_banner(ctx, "accuracy"):
        res = acc.result
        if res.threshold_basis:
            md.p(f"**{TEXT['thresholds'][ctx.lang]}**")
            md.table([ctx.t("col_item"), ctx.t("col_value"), "source", "measured", "multiple"],
                     [[name, fmt(b.value), b.source, f"{b.measurement} = {fmt(b.measured)}" if b.measurement else "",
                       b.formula or fmt(b.multiple)] for name, b in res.threshold_basis.items()])
        if res.calibration:
            c = res.calibration
            md.p(TEXT["calibration"][ctx.lang].format(dtype=c.dtype, ref=c.reference_dtype, n=c.positions))
            md.table([TEXT["calibration_col"][ctx.lang], ctx.t("col_value")],
                     [[k, fmt(getattr(c, k))] for k in ("top1_disagreements", "prob_max_error", "prob_error_p99",
                                                         "max_margin_shift", "margin_shift_p99", "mean_kl",
                                                         "max_kl", "kl_p99")])
        metrics_table(ctx, stage_metrics("accuracy"))
        per_prompt = res.per_prompt
        if per_prompt:
            md.table([ctx.t("col_prompt"), ctx.t("col_agreement"), ctx.t("col_first_divergence"),
                      metric_label(metric("accuracy.top1_agreement"), ctx.lang)],
                     [[pp.id, fmt(pp.token_agreement), fmt(pp.first_divergence),
                       fmt(pp.teacher_forced.top1_agreement if pp.teacher_forced else None)] for pp in per_prompt])
        diverged = [(pp.id, d) for pp in per_prompt
                    for d in (pp.divergences or ([pp.first_divergence_detail] if pp.first_divergence_detail else []))]
        if diverged:
            md.p(TEXT["divergences"][ctx.lang].format(margin=fmt(res.thresholds.get("near_tie_margin")),
                                                      kl=fmt(res.thresholds.get("max_near_tie_kl"))))
            md.table([ctx.t("col_prompt"), ctx.t("col_position"), ctx.t("col_kind"), ctx.t("col_ref_token"),
                      ctx.t("col_vllm_token"), "p_ref(ref)", "p_ref(vLLM)", ctx.t("col_margin"), "p_vLLM(ref)",
                      "p_vLLM(vLLM)", "vLLM margin", "KL"],
                     [[prompt, d.position, ctx.t(f"kind_{d.kind}"),
                       inline_code(repr(d.ref_token_text or d.ref_token)),
                       inline_code(repr(d.vllm_token_text or d.vllm_token)), fmt(d.p_ref_ref_token),
                       fmt(d.p_ref_vllm_token), fmt(d.margin), fmt(d.p_vllm_ref_token), fmt(d.p_vllm_vllm_token),
                       fmt(d.vllm_margin), fmt(d.kl)]
                      for prompt, d in diverged])
        if not checks_table(ctx, ["accuracy"]):
            md.p(ctx.t("a_none"))
        show_charts(ctx, "accuracy")


SECTIONS = {"accuracy": accuracy}
