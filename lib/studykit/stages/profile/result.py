"""The model of results/profile.json."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from studykit.energy import Energy
from studykit.schema.base import Record, StageResult
from studykit.stages.profile.trace import ProfileSplit


class RequestTiming(Record):
    """One streamed request: when its chunks arrived (seconds after it was sent) and how many tokens each held."""

    output_tokens: int = Field(description="usage.completion_tokens of the response")
    ttft_s: float = Field(description="first token's arrival")
    last_token_s: float
    ms_per_output_token: float | None = Field(
        None, description="(last - first token arrival) / (output tokens - tokens of the first chunk): steady decode, "
                          "vLLM's TPOT")


class WindowTiming(Record):
    requests: list[RequestTiming]
    wall_s: float = Field(description="first request sent to last response ended")
    output_tokens: int
    ms_per_output_token: float = Field(description="mean over the requests of their ms_per_output_token")
    window_s: list[float] | None = Field(None, description="[start, end] on the telemetry clock of the window")


class ProfileWindow(Record):
    concurrency: int
    unprofiled: WindowTiming | None = None
    profiled: WindowTiming | None = Field(None, description="the same requests between /start_profile and "
                                                            "/stop_profile")
    overhead: float | None = Field(None, description="(profiled - unprofiled) / unprofiled ms per output token")
    trace_files: list[str] = Field(default_factory=list, description="what the profiler wrote for this window")
    split: ProfileSplit | None = None
    split_error: str | None = Field(None, description="why the trace gave no split")
    verdict: Literal["host-bound", "device-bound"] | None = None
    energy: Energy | None = Field(None, description="of the unprofiled window")
    energy_not_run: str | None = Field(None, description="why no energy was measured")


class ProfileResult(StageResult):
    base_url: str | None = None
    server_ready_s: float | None = None
    server_log: str | None = None
    profiler_config: dict | None = Field(None, description="--profiler-config the server ran with")
    windows: list[ProfileWindow] = Field(default_factory=list, description="by concurrency, smallest first")
    idle_power_w: float | None = Field(None, description="before the engine started")
    idle_not_run: str | None = Field(None, description="why no idle power was measured")
