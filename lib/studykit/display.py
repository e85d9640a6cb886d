"""What a stage notebook shows: its numbers and checks as DataFrames (units in the columns), so an executed
notebook shared as the report reads like an analysis, not a dict repr. Labels and units come from the one
metric table (studykit.schema.metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from studykit.schema.base import Check, StageResult
from studykit.schema.metrics import stage_metrics, value_of


def metrics_frame(stage: str, result: StageResult, prefix: str = ""):
    """One row per metric of the stage (optionally only ids starting with `stage.prefix`), read from the stage's
    typed result at the path its metric id names."""
    import pandas as pd

    if not isinstance(result, StageResult):
        raise TypeError(f"metrics_frame({stage!r}, ...) takes the stage's typed result (what run() returns), "
                        f"not {type(result).__name__}")
    data = result.model_dump()
    rows = []
    for m in stage_metrics(stage):
        if prefix and not m.id.startswith(f"{stage}.{prefix}"):
            continue
        v = value_of(m, data)
        if v is None:
            continue
        rows.append({"metric": m.en, "value": v, "unit": m.unit,
                     "source": m.source + (f": {m.how}" if m.how else "")})
    return pd.DataFrame(rows, columns=["metric", "value", "unit", "source"]).set_index("metric")


def checks_frame(checks: Iterable[Check]):
    """The checks: id, subject, passed / failed / not_run, and why (one row per check; an id repeats when the
    check ran per subject)."""
    import pandas as pd

    rows = []
    for c in checks:
        if not isinstance(c, Check):
            raise TypeError(f"checks_frame takes schema Checks (what checks() returns), not {type(c).__name__}")
        rows.append({"id": c.id, "subject": c.subject or "", "check": c.name, "status": c.status,
                     "detail": c.detail})
    return pd.DataFrame(rows, columns=["id", "subject", "check", "status", "detail"]).set_index("id")


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
