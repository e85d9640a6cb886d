"""The tasks stage's rows of the metric table: none with a fixed id. Its numbers are per task (the study's list of
lm-eval tasks), so the report's task table and `studykit compare` read them from results/tasks.json by task name
(tasks[i].reference / candidate / delta), not through metric ids."""

from studykit.schema.metrics import Metric

METRICS: tuple[Metric, ...] = ()
