"""The model of results/serve.json."""

from __future__ import annotations


from pydantic import Field

from studykit.energy import IdlePower, TelemetryEnergy
from studykit.schema.base import CommandEntry, Open, Record, StageResult
from studykit.schema.roofline import ServeRoofline


class ServeRun(Open):
    """One `vllm bench serve` run: vLLM's scalar names as it wrote them, plus where it sits in the sweep. The
    fields the checks read are typed (the parser requires the counts); the rest of vLLM's scalars ride along."""

    name: str
    request_rate: str
    max_concurrency: int | None = None
    repeat: int
    raw: str
    completed: int
    failed: int | None = None
    total_input_tokens: int
    total_output_tokens: int
    mean_ttft_ms: float | None = None
    mean_e2el_ms: float | None = None
    per_request: dict[str, list] = Field(default_factory=dict, description="vLLM's per-request lists (ttfts, "
                                                                           "latencies, errors, ...)")


class ServeCommand(CommandEntry):
    """A bench command with the point it ran, so its check needs nothing but the entry and the params."""

    run: str = Field(description="name of the run (ServeRun.name) this command measured")
    request_rate: str = Field(description="--request-rate as the command gives it ('inf' for all at once)")
    max_concurrency: int | None = None
    repeat: int


class MetricStat(Record):
    """A metric of one sweep point over its repeats. With one repeat, mean is vLLM's value itself."""

    mean: float
    n: int
    ci95_low: float | None = None
    ci95_high: float | None = None
    ci95_half_width: float | None = None
    stdev: float | None = None


class ServePoint(Record):
    request_rate: str
    max_concurrency: int | None = None
    repeats: int
    runs: list[str]
    metrics: dict[str, MetricStat] = Field(default_factory=dict, description="vLLM's scalar name -> over repeats")


class Sweep(Record):
    """request_rates auto: the two probe points' request throughputs and the rates chosen between them."""

    mode: str
    sync_request_throughput: float
    saturated_request_throughput: float
    rates: list[float]


class ServeResult(StageResult, IdlePower):
    telemetry: list[TelemetryEnergy] = Field(default_factory=list, description="per run (its label is the run's "
                                                                               "name), in the order of runs")
    base_url: str | None = None
    server_log: str | None = None
    server_ready_s: float | None = None
    sweep: Sweep | None = None
    commands: list[ServeCommand] = Field(default_factory=list)
    runs: list[ServeRun] = Field(default_factory=list)
    points: list[ServePoint] = Field(default_factory=list)
    roofline: ServeRoofline | None = None
