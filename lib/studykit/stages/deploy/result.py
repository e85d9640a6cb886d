"""The model of results/deploy.json."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from studykit.schema.base import Record, StageResult

class Gate(Record):
    label: str
    load_format: str
    command: str
    log: str
    passed: bool
    ready_seconds: float | None = None
    error: str | None = None


class SmokeChat(Record):
    request: dict[str, Any]
    curl: str
    reply: str
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    seconds: float


class DeployResult(StageResult):
    model_dir: str | None = None
    served_model_name: str | None = Field(None, description="--served-model-name: what /v1/models must list")
    dummy_gate: Gate | None = None
    real_gate: Gate | None = None
    smoke_chat: SmokeChat | None = None
    models: list[dict[str, Any]] = Field(default_factory=list)
