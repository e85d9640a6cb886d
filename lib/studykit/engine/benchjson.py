"""The output of `vllm bench latency|throughput|serve`: its JSON file read and checked field by field, and the
error a bench that failed leaves behind (its log tail)."""

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
    from studykit.engine.server import log_tail

    if rec.returncode != 0 or not Path(out_path).is_file():
        why = f"exit code {rec.returncode}" if rec.returncode != 0 else f"no output file {out_path}"
        tail = log_tail(rec.log, log_lines) if rec.log else ""
        raise BenchRunError(f"{rec.label} failed ({why}); log {rec.log}; last lines:\n{tail}")


NUM = (int, float)
