"""The report stage's rows of the metric table (studykit.schema.metrics)."""

from studykit.schema.metrics import Metric

METRICS: tuple[Metric, ...] = (
    Metric("report.generation_seconds", "generation_seconds", "s", "Report generation time", "报告生成耗时", "kit"),
)
