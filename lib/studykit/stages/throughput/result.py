"""The model of results/throughput.json."""

from __future__ import annotations


from pydantic import Field

from studykit.energy import IdlePower, TelemetryEnergy
from studykit.schema.base import Record, StageResult

class PrintedTotals(Record):
    """What `vllm bench throughput` prints but does not put in its JSON."""

    total_prompt_tokens: int | None = None
    total_output_tokens: int | None = None
    output_tokens_per_s: float | None = None


class ThroughputResult(StageResult, IdlePower):
    telemetry: list[TelemetryEnergy] = Field(default_factory=list)
    raw: str | None = None
    elapsed_time: float | None = None
    num_requests: int | None = None
    total_num_tokens: int | None = None
    requests_per_second: float | None = None
    tokens_per_second: float | None = None
    total_output_tokens: int | None = None
    total_prompt_tokens: int | None = None
    output_tokens_per_s: float | None = None
    derived: dict[str, str] = Field(default_factory=dict, description="how each derived field was computed")
    vllm_printed: PrintedTotals = Field(default_factory=PrintedTotals)
