"""`vllm bench latency|throughput|serve`: argument builders, runners and parsers of their JSON output.

Each module's plan() builds the bench commands from the stage's params block (studykit.plan); the stage runs
those steps through StageContext.run_step (so they are journalled and their output lands in raw/<stage>/) and
parses the JSON each bench wrote into a flat record keeping vLLM's own key names; derived numbers carry their
unit in the name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def effective_params(ctx, stage: str, namespace: dict[str, Any]):
    """The stage block as the notebook received it: its parameters cell's values (papermill-injected values win
    over the study file), picked by field name from `namespace` (pass `globals()`), validated by the schema and
    set on ctx.study so every command built from the study uses it. A field the notebook does not define keeps
    the study's value."""
    from pydantic import ValidationError

    from studykit.params import ParamsError, format_validation_error

    cls = type(getattr(ctx.study, stage))
    values = getattr(ctx.study, stage).model_dump()
    values.update({k: namespace[k] for k in cls.model_fields if k in namespace})
    try:
        block = cls.model_validate(values)
    except ValidationError as err:
        raise ParamsError(format_validation_error(err, f"{stage} notebook parameters")) from None
    ctx.study = ctx.study.model_copy(update={stage: block})
    return block


def command_entry(rec, **extra) -> dict[str, Any]:
    return {"label": rec.label, "argv": rec.argv, "command": rec.command, "seconds": rec.seconds,
            "returncode": rec.returncode, **extra}


def telemetry_charts(ctx, telemetry: list[dict[str, Any]]) -> list[str]:
    """The stage's telemetry chart (charts/<stage>-telemetry.png), shown inline; nothing when no sample."""
    from studykit.display import show_png
    from studykit.engine.telemetry import chart

    path = chart(telemetry or [], ctx.chart_path("telemetry"))
    show_png(path)
    return [path] if path else []


def engine_window(rec) -> dict[str, Any]:
    """For a bench that starts its own engine: the measured window of its telemetry, from vLLM's init-engine line
    (engine ready) to the end of the command. Empty when the log has no such line."""
    from datetime import datetime

    from studykit.engine.startup import startup_breakdown

    if not rec.log or not Path(rec.log).is_file() or rec.seconds is None:
        return {}
    started = datetime.fromisoformat(rec.started_utc.replace("Z", "+00:00"))
    ready = startup_breakdown(rec.log, started_at=started).get("process_to_ready_s")
    if ready is None or not 0 <= ready <= rec.seconds:
        return {}
    return {"window_s": [round(ready, 3), rec.seconds],
            "window_how": "engine ready (vLLM's init-engine log line) to the end of the bench"}
