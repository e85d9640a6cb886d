"""What a stage notebook shows: its numbers and checks as DataFrames (units in the columns), so an executed
notebook shared as the report reads like an analysis, not a dict repr. Labels and units come from the one
metric table (studykit.schema.metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from studykit.schema.metrics import stage_metrics, value_of


def metrics_frame(stage: str, result, prefix: str = ""):
    """One row per metric of the stage (optionally only ids starting with `stage.prefix`); `result` is the
    stage's typed result or its dict."""
    import pandas as pd

    if hasattr(result, "model_dump"):
        result = result.model_dump(mode="json")
    rows = []
    for m in stage_metrics(stage):
        if prefix and not m.id.startswith(f"{stage}.{prefix}"):
            continue
        v = value_of(m, result)
        if v is None:
            continue
        rows.append({"metric": m.en, "value": v, "unit": m.unit,
                     "source": m.source + (f": {m.how}" if m.how else "")})
    return pd.DataFrame(rows, columns=["metric", "value", "unit", "source"]).set_index("metric")


def checks_frame(checks: Iterable):
    """The checks (schema Check): id, passed / failed / not_run, and why."""
    import pandas as pd

    rows = [c.model_dump() if hasattr(c, "model_dump") else c for c in checks]
    return pd.DataFrame([{"id": c["id"], "check": c["name"], "status": c["status"], "detail": c["detail"]}
                         for c in rows], columns=["id", "check", "status", "detail"]).set_index("id")


def show_png(path: str | Path | None) -> None:
    """Inline in the notebook that made it (an executed notebook shares its charts); a no-op outside IPython."""
    if not path:
        return
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is not None:
        display(Image(filename=str(path)))
