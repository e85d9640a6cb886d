"""The functional stage's parts of the report (SECTIONS, by id) and its rows of the summary (SUMMARY)."""

from __future__ import annotations

from studykit.report.blocks import Ctx, SummaryRow, checks_table, metrics_table, show_charts, stage_banner
from studykit.schema.metrics import stage_metrics

SUMMARY = (
    SummaryRow("sum_prefix", ("functional.prefix_cache_hit_rate",), check="functional.prefix_caching"),
    SummaryRow("sum_chunked", ("functional.chunked_prefill_prompt_tokens",), check="functional.chunked_prefill"),
    SummaryRow("sum_graph", check="functional.graph_vs_eager"),
)


def features(ctx: Ctx) -> None:
    """vLLM features the seed checked (prefix caching, chunked prefill, graph vs eager) with their checks."""
    md = ctx.md
    if stage_banner(ctx, "functional"):
        metrics_table(ctx, stage_metrics("functional"))
        if not checks_table(ctx, ["functional"]):
            md.p(ctx.t("a_none"))
        show_charts(ctx, "functional")


SECTIONS = {"features": features}
