"""The model of results/report.json."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from studykit.schema.base import Record, StageResult

class EngineStart(Record):
    """One engine start of the run (a server, or a bench that starts its own engine), from the journal and logs."""

    stage: str
    label: str
    kind: str
    ready_s: float | None = None
    how: str
    command_s: float | None = None
    shared_by: list[str] | None = None
    to_first_log_s: float | None = Field(None, description="process start to vLLM's first log line (imports)")
    worker_first_log_s: float | None = Field(None, description="process start to the last vLLM process's first line")
    weights_load_s: float | None = None
    engine_init_s: float | None = None
    graph_capture_s: float | None = None
    torch_compile_s: float | None = None


class ReportResult(StageResult):
    files: dict[str, str] = Field(default_factory=dict)
    languages: list[str] = Field(default_factory=list)
    reference: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    adaptation: dict[str, Any] | None = None
    adaptation_source: str | None = None
    warning_groups: int = 0
    startup: list[EngineStart] = Field(default_factory=list)
    checks_count: dict[str, int] = Field(default_factory=dict)
    checks_failed: list[str] = Field(default_factory=list)
    stage_status: dict[str, str] = Field(default_factory=dict)
    generation_seconds: float | None = None
    run_status: str | None = None
