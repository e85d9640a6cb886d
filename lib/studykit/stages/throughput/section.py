"""The throughput stage's parts of the report (SECTIONS, by id) and its rows of the summary (SUMMARY)."""

from __future__ import annotations

from studykit.report.blocks import SummaryRow, energy_table, perf_stage

SUMMARY = (SummaryRow("sum_throughput", ('throughput.requests_per_second', 'throughput.output_tokens_per_s')),)


def performance(ctx) -> None:
    perf_stage(ctx, "throughput", "s5_3", after_table=lambda ctx, result: energy_table(ctx, "throughput", result))


SECTIONS = {"performance": performance}
