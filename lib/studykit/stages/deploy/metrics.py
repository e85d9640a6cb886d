"""The deploy stage's rows of the metric table (studykit.schema.metrics)."""

from studykit.schema.metrics import Metric


METRICS: tuple[Metric, ...] = (
    Metric("deploy.dummy_gate_ready_s", "dummy_gate.ready_seconds", "s", "Time to ready, dummy weights",
           "启动验证就绪耗时 (dummy 权重)", "kit"),
    Metric("deploy.real_gate_ready_s", "real_gate.ready_seconds", "s", "Time to ready, real weights",
           "启动验证就绪耗时 (真实权重)", "kit"),
)
