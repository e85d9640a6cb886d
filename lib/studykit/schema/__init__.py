"""The results contract: one typed model per results/<stage>.json, written and read through `validate_result`
and `load_result`; metric ids (schema.metrics) name the numbers reports and reference files talk about."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from studykit import stages
from studykit.schema.base import Check, StageResult, count_checks


class ResultError(ValueError):
    """A results file (or the dict about to become one) does not fit its stage's model."""


def model_for(stage: str) -> type[StageResult]:
    try:
        return stages.result_model(stage)
    except stages.UnknownStage as err:
        raise ResultError(f"no results model: {err}") from None


def _explain(err: ValidationError, where: str) -> str:
    lines = [f"{where} does not fit the results contract:"]
    for e in err.errors()[:20]:
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']}" + (f" (got {e['input']!r:.80})" if e["type"] != "missing" else ""))
    return "\n".join(lines)


def validate_result(stage: str, data: dict[str, Any], where: str = "") -> StageResult:
    try:
        return model_for(stage).model_validate(data)
    except ValidationError as err:
        raise ResultError(_explain(err, where or f"results/{stage}.json")) from None


def load_result(path: str | Path, stage: str | None = None) -> StageResult:
    import json

    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    return validate_result(stage or path.stem, data, str(path))


__all__ = ["Check", "StageResult", "ResultError", "count_checks", "load_result", "model_for",
           "validate_result"]
