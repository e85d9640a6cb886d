"""The serve stage's parts of the report (SECTIONS, by id) and its rows of the summary (SUMMARY)."""

from __future__ import annotations

from studykit.report.blocks import Ctx, SummaryRow, energy_table, metric_label, perf_stage, point_label
from studykit.report.mdtools import fmt
from studykit.schema.metrics import by_id
from studykit.stages.serve.result import ServePoint, ServeResult

SUMMARY = (SummaryRow("sum_serve", ("serve.request_throughput", "serve.mean_ttft_ms", "serve.mean_tpot_ms")),)


SWEEP_COLUMNS = ("request_throughput", "output_throughput", "mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms",
                 "p99_tpot_ms", "completed")


def serve_points_table(ctx: Ctx, points: list[ServePoint]) -> None:
    """Every sweep point, labelled by request rate and concurrency: mean over repeats, ± 95 % CI half-width."""
    headers = [ctx.t("col_point"), ctx.t("col_repeats")]
    for key in SWEEP_COLUMNS:
        m = by_id()[f"serve.{key}"]
        headers.append(f"{metric_label(m, ctx.lang)} ({m.unit})")
    rows = []
    for pt in points:
        row = [point_label(ctx, pt), fmt(pt.repeats)]
        for key in SWEEP_COLUMNS:
            stat = pt.metrics.get(key)
            cell = fmt(stat.mean if stat else None)
            if stat and stat.ci95_half_width is not None:
                cell += f" ± {fmt(stat.ci95_half_width)}"
            row.append(cell)
        rows.append(row)
    ctx.md.table(headers, rows)


def _headline(ctx: Ctx, result: ServeResult) -> None:
    if len(result.points) > 1:
        ctx.md.p(ctx.t("p_headline", point=point_label(ctx, result.points[0])))


def _sweep_and_energy(ctx: Ctx, result: ServeResult) -> None:
    points = result.points
    if points:
        ctx.md.p(f"**{ctx.t('p_sweep')}**")
        serve_points_table(ctx, points)
        if any(pt.repeats > 1 for pt in points):
            ctx.md.p(ctx.t("p_ci_note"))
    energy_table(ctx, "serve", result)


def performance(ctx: Ctx) -> None:
    perf_stage(ctx, "serve", "s5_4", before_table=_headline, after_table=_sweep_and_energy)


SECTIONS = {"performance": performance}
