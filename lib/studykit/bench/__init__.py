"""`vllm bench latency|throughput|serve`: argument builders, runners and parsers of their JSON output.

Each module's plan() builds the bench commands from the stage's params block (studykit.plan); the stage runs
those steps through StageContext.run_step (so they are journalled and their output lands in raw/<stage>/) and
parses the JSON each bench wrote into a flat record keeping vLLM's own key names; derived numbers carry their
unit in the name.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class BenchParseError(ValueError):
    """A bench's JSON output is missing, empty, truncated or lacks a field. The message names the file."""


class BenchRunError(RuntimeError):
    """A bench command exited non-zero or wrote no output; the message carries the log tail."""


def load_bench_json(path: str | Path, required: dict[str, type | tuple]) -> dict[str, Any]:
    """Read a bench JSON file and check the fields the parsers rely on (name -> allowed types)."""
    path = Path(path)
    if not path.is_file():
        raise BenchParseError(f"{path}: bench output file does not exist (the bench wrote nothing)")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise BenchParseError(f"{path}: bench output file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise BenchParseError(f"{path}: not valid JSON (truncated or corrupt?): {err.msg} at line {err.lineno} "
                              f"column {err.colno} of {len(text)} characters") from None
    if not isinstance(data, dict):
        raise BenchParseError(f"{path}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in required if k not in data]
    if missing:
        raise BenchParseError(f"{path}: missing field(s) {missing}; present: {sorted(data)[:30]}")
    for key, types in required.items():
        value = data[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise BenchParseError(f"{path}: field {key!r} should be {_names(types)}, got {value!r:.80}")
        if isinstance(value, float) and not math.isfinite(value):
            raise BenchParseError(f"{path}: field {key!r} is not a finite number: {value!r}")
    return data


def _names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)


def check_ran(rec, out_path: Path, log_lines: int = 30) -> None:
    """Raise BenchRunError with the log tail when the bench failed; the raw log stays in raw/<stage>/."""
    from ..server import log_tail

    if rec.returncode != 0 or not Path(out_path).is_file():
        why = f"exit code {rec.returncode}" if rec.returncode != 0 else f"no output file {out_path}"
        tail = log_tail(rec.log, log_lines) if rec.log else ""
        raise BenchRunError(f"{rec.label} failed ({why}); log {rec.log}; last lines:\n{tail}")


NUM = (int, float)


def effective_params(ctx, stage: str, namespace: dict[str, Any]):
    """The stage block as the notebook received it: its parameters cell's values (papermill-injected values win
    over the study file), picked by field name from `namespace` (pass `globals()`), validated by the schema and
    set on ctx.study so every command built from the study uses it. A field the notebook does not define keeps
    the study's value."""
    from pydantic import ValidationError

    from ..params import ParamsError, format_validation_error

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
    from ..stage import show_png
    from ..telemetry import chart

    path = chart(telemetry or [], ctx.chart_path("telemetry"))
    show_png(path)
    return [path] if path else []


def engine_window(rec) -> dict[str, Any]:
    """For a bench that starts its own engine: the measured window of its telemetry, from vLLM's init-engine line
    (engine ready) to the end of the command. Empty when the log has no such line."""
    from datetime import datetime

    from ..startup import startup_breakdown

    if not rec.log or not Path(rec.log).is_file() or rec.seconds is None:
        return {}
    started = datetime.fromisoformat(rec.started_utc.replace("Z", "+00:00"))
    ready = startup_breakdown(rec.log, started_at=started).get("process_to_ready_s")
    if ready is None or not 0 <= ready <= rec.seconds:
        return {}
    return {"window_s": [round(ready, 3), rec.seconds],
            "window_how": "engine ready (vLLM's init-engine log line) to the end of the bench"}
