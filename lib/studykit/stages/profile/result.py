"""The model of results/profile.json."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from studykit.energy import Energy, IdlePower, TelemetryEnergy
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


def relative_spread(xs: list[float]) -> float | None:
    """(max - min) / mean ms per token of windows of one kind: how far apart the same window ran; None for fewer
    than two."""
    return (max(xs) - min(xs)) / (sum(xs) / len(xs)) if len(xs) > 1 else None


class WindowTiming(Record):
    requests: list[RequestTiming]
    wall_s: float = Field(description="first request sent to last response ended")
    output_tokens: int
    ms_per_output_token: float = Field(description="mean over the requests of their ms_per_output_token")
    window_s: list[float] | None = Field(None, description="[start, end] on the telemetry clock of the window")
    trace_files: list[str] = Field(default_factory=list, description="a profiled window: what the profiler wrote for "
                                                                    "it (rank 0's first)")


class ProfileWindow(Record):
    concurrency: int
    concurrency_from: str = Field("params", description="where the concurrency came from (a number in the params, or "
                                                       "the serve stage's saturated point and how it was read)")
    order: list[Literal["off", "on"]] = Field(default_factory=list, description="the windows in the order they ran")
    unprofiled: list[WindowTiming] = Field(default_factory=list, description="the windows without the profiler")
    profiled: list[WindowTiming] = Field(default_factory=list, description="the same requests between "
                                                                         "/start_profile and /stop_profile")
    ms_per_output_token_off: float | None = Field(None, description="mean over the unprofiled windows")
    ms_per_output_token_on: float | None = Field(None, description="mean over the profiled windows")
    overhead: float | None = Field(None, description="ms_per_output_token_on / ms_per_output_token_off - 1")
    spread_off: float | None = Field(None, description="(max - min) / mean ms per token of the unprofiled windows: "
                                                       "how much the same window moves with no profiler")
    split: ProfileSplit | None = Field(None, description="of the first profiled window's trace")
    split_error: str | None = Field(None, description="why the trace gave no split")
    verdict: Literal["host-bound", "device-bound"] | None = None
    energy: Energy | None = Field(None, description="of the first unprofiled window")
    energy_not_run: str | None = Field(None, description="why no energy was measured")


class ProfileResult(StageResult, IdlePower):
    base_url: str | None = None
    server_ready_s: float | None = None
    server_log: str | None = None
    profiler_config: dict | None = Field(None, description="--profiler-config the server ran with")
    windows: list[ProfileWindow] = Field(default_factory=list, description="by concurrency, smallest first")
    telemetry: list[TelemetryEnergy] = Field(default_factory=list, description="the first unprofiled window's, per "
                                                                              "concurrency")
