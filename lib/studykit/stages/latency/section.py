"""The latency stage's parts of the report (SECTIONS, by id) and its rows of the summary (SUMMARY)."""

from __future__ import annotations

from studykit.report.blocks import SummaryRow, energy_table, perf_stage

SUMMARY = (SummaryRow("sum_latency", ('latency.avg_latency', 'latency.decode_ms_per_token')),)


def performance(ctx) -> None:
    perf_stage(ctx, "latency", "s5_2", after_table=lambda ctx, result: energy_table(ctx, "latency", result))


SECTIONS = {"performance": performance}
