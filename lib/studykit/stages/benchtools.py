"""`vllm bench latency|throughput|serve`: argument builders, runners and parsers of their JSON output.

Each module's plan() builds the bench commands from the stage's params block (studykit.plan); the stage runs
those steps through StageContext.run_step (so they are journalled and their output lands in raw/<stage>/) and
parses the JSON each bench wrote into a flat record keeping vLLM's own key names; derived numbers carry their
unit in the name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def command_entry(rec, **extra) -> dict[str, Any]:
    return {"label": rec.label, "argv": rec.argv, "command": rec.command, "seconds": rec.seconds,
            "returncode": rec.returncode, **extra}


def telemetry_charts(ctx, telemetry: list) -> list[str]:
    """The stage's telemetry chart (charts/<stage>-telemetry.png), shown inline; nothing when no sample."""
    from studykit.display import show_png
    from studykit.engine.telemetry import chart

    series = [t.model_dump() if hasattr(t, "model_dump") else t for t in telemetry or []]
    path = chart(series, ctx.chart_path("telemetry"))
    show_png(path)
    return [path] if path else []


def engine_window(rec) -> dict[str, Any]:
    """For a bench that starts its own engine: the measured window of its telemetry, from vLLM's init-engine line
    (engine ready) to the end of the command. Empty when the log has no such line."""
    from studykit.engine.startup import startup_breakdown
    from studykit.evidence.journal import parse_utc

    if not rec.log or not Path(rec.log).is_file() or rec.seconds is None:
        return {}
    started = parse_utc(rec.started_utc)
    ready = startup_breakdown(rec.log, started_at=started).get("process_to_ready_s")
    if ready is None or not 0 <= ready <= rec.seconds:
        return {}
    return {"window_s": [round(ready, 3), rec.seconds],
            "window_how": "engine ready (vLLM's init-engine log line) to the end of the bench"}
