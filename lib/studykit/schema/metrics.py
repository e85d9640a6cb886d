"""Metric ids: the one table of every number a report shows or a reference file compares.

An id is `<stage>.<name>`; its `path` says where the number sits in results/<stage>.json (checked against the
stage's model by the tests), `source` says who produced it: `vllm` (vLLM measured and named it), `derived`
(the kit computed it from vLLM's numbers; the report marks it), `kit` (the kit measured it).
Serve metrics are the headline sweep point's mean over repeats (vLLM's own value when there is one repeat).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from studykit import stages
from studykit.stages import STAGE_ORDER


@dataclass(frozen=True)
class Metric:
    id: str
    path: str
    unit: str
    en: str
    zh: str
    source: Literal["vllm", "derived", "kit"] = "vllm"
    how: str = ""

    @property
    def stage(self) -> str:
        return self.id.split(".", 1)[0]


@cache
def all_metrics() -> tuple[Metric, ...]:
    """Every stage's rows (its metrics.py), in stage order."""
    return tuple(m for stage in STAGE_ORDER for m in stages.metrics(stage))


@cache
def by_id() -> dict[str, Metric]:
    return {m.id: m for m in all_metrics()}


def stage_metrics(stage: str) -> list[Metric]:
    return list(stages.metrics(stage))


class UnknownMetric(KeyError):
    pass


def metric(metric_id: str) -> Metric:
    try:
        return by_id()[metric_id]
    except KeyError:
        close = [m for m in by_id() if m.split(".", 1)[0] == metric_id.split(".", 1)[0]]
        raise UnknownMetric(f"unknown metric id {metric_id!r}; known for this stage: {', '.join(close) or 'none'}"
                            ) from None


_MISSING = object()


def dig(data: Any, path: str | list, default: Any = None) -> Any:
    """`dig(d, "a.b.0.c")`: nested lookup through dicts and lists (negative indices too); default when any step
    is missing. The one path reader of metric ids, reference files and the report."""
    parts = path.split(".") if isinstance(path, str) else list(path)
    cur = data
    for part in parts:
        if isinstance(cur, dict):
            cur = cur.get(part, _MISSING)
        elif isinstance(cur, list) and str(part).lstrip("-").isdigit():
            i = int(part)
            cur = cur[i] if -len(cur) <= i < len(cur) else _MISSING
        else:
            return default
        if cur is _MISSING:
            return default
    return cur


def value_of(m: Metric, result: dict | None) -> float | int | None:
    v = dig(result, m.path) if result else None
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
