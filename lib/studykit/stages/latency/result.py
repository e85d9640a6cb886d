"""The model of results/latency.json."""

from __future__ import annotations


from pydantic import Field

from studykit.energy import IdlePower, TelemetryEnergy
from studykit.schema.base import Record, StageResult
from studykit.schema.roofline import LatencyRoofline

class LatencyRun(Record):
    """One `vllm bench latency` run, vLLM's names (seconds)."""

    output_len: int
    raw: str
    avg_latency: float
    latencies: list[float]
    percentiles: dict[str, float]
    num_iters_measured: int
    p50_latency_s: float
    p90_latency_s: float
    p99_latency_s: float


class LatencyResult(StageResult, IdlePower):
    telemetry: list[TelemetryEnergy] = Field(default_factory=list, description="per run, in the order of runs")
    runs: dict[str, LatencyRun] = Field(default_factory=dict, description="'latency' (output_len N), 'prefill' (1)")
    avg_latency: float | None = None
    p50_latency_s: float | None = None
    p90_latency_s: float | None = None
    p99_latency_s: float | None = None
    prefill_ms: float | None = None
    decode_ms_per_token: float | None = None
    decode_tokens_per_s_per_seq: float | None = None
    naive_ms_per_token: float | None = None
    output_tokens_per_s: float | None = None
    total_tokens_per_s: float | None = None
    roofline: LatencyRoofline | None = None
