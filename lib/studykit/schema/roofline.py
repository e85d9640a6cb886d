"""The decode roofline as latency and serve record it."""

from __future__ import annotations

from pydantic import Field

from studykit.schema.base import Open, Record

class BandwidthLimit(Open):
    source: str
    bandwidth_gbps: float


class LatencyRoofline(Record):
    skipped: str | None = None
    weight_bytes: int | None = None
    decode_ms_per_token: float | None = None
    achieved_gbps: float | None = None
    limit_gbps: float | None = None
    efficiency_percent: float | None = None
    bound_decode_ms_per_token: float | None = None
    bound_tokens_per_s_per_seq: float | None = None
    limit: BandwidthLimit | None = None
    assumes: str | None = None


class ServeRooflinePoint(Record):
    request_rate: str
    max_concurrency: int | None = None
    max_concurrent_requests: float | None = None
    mean_tpot_ms: float
    achieved_gbps: float
    efficiency_percent: float


class ServeRoofline(Record):
    limit: BandwidthLimit
    weight_bytes: int
    points: list[ServeRooflinePoint] = Field(default_factory=list)
    assumes: str
