"""One typed model per results/<stage>.json. Measured fields are optional: a stage that fails part-way still
writes what it measured, and the report shows the rest as missing."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import Open, Record, StageResult

# --- deploy ------------------------------------------------------------------------------------------------


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
    dummy_gate: Gate | None = None
    real_gate: Gate | None = None
    smoke_chat: SmokeChat | None = None
    models: list[dict[str, Any]] = Field(default_factory=list)


# --- roofline (latency, serve) -------------------------------------------------------------------------------


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


# --- latency -------------------------------------------------------------------------------------------------


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


class LatencyResult(StageResult):
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


# --- throughput ----------------------------------------------------------------------------------------------


class PrintedTotals(Record):
    """What `vllm bench throughput` prints but does not put in its JSON."""

    total_prompt_tokens: int | None = None
    total_output_tokens: int | None = None
    output_tokens_per_s: float | None = None


class ThroughputResult(StageResult):
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


# --- serve ---------------------------------------------------------------------------------------------------


class ServeRun(Open):
    """One `vllm bench serve` run: vLLM's scalar names as it wrote them, plus where it sits in the sweep."""

    name: str
    request_rate: str
    max_concurrency: int | None = None
    repeat: int
    raw: str


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


class ServeResult(StageResult):
    base_url: str | None = None
    server_log: str | None = None
    server_ready_s: float | None = None
    sweep: Sweep | None = None
    runs: list[ServeRun] = Field(default_factory=list)
    points: list[ServePoint] = Field(default_factory=list)
    roofline: ServeRoofline | None = None


# --- accuracy ------------------------------------------------------------------------------------------------


class FreeRunning(Record):
    """Free-running greedy agreement. See accuracy_metrics.free_running_summary for the exact counting."""

    prompts: int
    equal_tokens: int = Field(description="position-wise equal tokens (the seed's count)")
    total_tokens: int
    token_agreement: float = Field(description="raw: equal_tokens / total_tokens (the seed's measure; not gating)")
    near_ties: int | None = Field(None, description="prompts whose first divergence is a near tie")
    real_divergences: int | None = Field(None, description="prompts whose first divergence is not a near tie")
    agreeing_tokens: int | None = Field(None, description="tokens before each prompt's first divergence")
    comparable_tokens: int | None = Field(
        None, description="every prompt's tokens except those after a near tie")
    token_agreement_excluding_near_ties: float | None = Field(
        None, description="agreeing_tokens / comparable_tokens: the gate; None when nothing is comparable")


class FirstDivergence(Record):
    """Where a prompt's two greedy sequences first part, and whether that is a near tie. p_ref_*: the
    reference's probabilities on the shared context; p_vllm_*: vLLM's, None where vLLM did not return the token."""

    position: int
    kind: Literal["near_tie", "divergence"]
    why: str
    ref_token: int | None = None
    vllm_token: int | None = None
    ref_token_text: str | None = None
    vllm_token_text: str | None = None
    p_ref_ref_token: float | None = None
    p_ref_vllm_token: float | None = None
    margin: float | None = Field(None, description="p_ref_ref_token - p_ref_vllm_token; None when lengths differ")
    p_vllm_ref_token: float | None = None
    p_vllm_vllm_token: float | None = None


class PromptAccuracy(Open):
    """One prompt's record; the token ids and per-position data beside these fields are kept as written."""

    id: str
    equal_tokens: int
    total_tokens: int
    token_agreement: float
    first_divergence: int | None = None
    first_divergence_detail: FirstDivergence | None = None


class TeacherForced(Record):
    positions: int
    top1_agreement: float | None = None
    prob_mae: float | None = None
    prob_max_error: float | None = None
    mean_topk_overlap: float | None = None
    mean_kl: float | None = None
    max_kl: float | None = None
    ref_token_outside_cand_topk: int | None = None
    max_margin_shift: float | None = Field(
        None, description="largest |vLLM's - the reference's margin between the reference's top two tokens|: "
                          "the bf16-vs-fp32 noise near_tie_margin is set against")


class Determinism(Record):
    passes: int
    identical: bool
    mismatched: list[str]


class AccuracyResult(StageResult):
    reference: dict[str, Any] | None = None
    candidate: dict[str, Any] | None = None
    top_k: int | None = None
    free_running: FreeRunning | None = None
    teacher_forced: TeacherForced | None = None
    determinism: Determinism | None = None
    per_prompt: list[PromptAccuracy] = Field(default_factory=list)
    thresholds: dict[str, float] = Field(default_factory=dict)
    method: str | None = None


# --- functional ----------------------------------------------------------------------------------------------


class PrefixCaching(Record):
    enabled: str | None = None
    block_size: int | None = None
    prefix_tokens: int
    prefix_full_blocks: int | None = None
    requests: int
    hit_tokens: float
    query_tokens: float
    hit_rate: float | None = None
    expected_hit_tokens: int | None = None
    working: bool
    why_no_hits: str | None = None


class ChunkedPrefill(Record):
    enabled: bool | None = None
    max_num_batched_tokens: int
    prompt_tokens: int
    completed: bool
    usage: dict[str, Any] | None = None


class FunctionalResult(StageResult):
    not_applicable: dict[str, dict[str, Any]] = Field(default_factory=dict)
    engine_flags: dict[str, bool | None] = Field(default_factory=dict)
    prefix_caching: PrefixCaching | None = None
    chunked_prefill: ChunkedPrefill | None = None
    graph_vs_eager: dict[str, Any] | None = None


# --- report --------------------------------------------------------------------------------------------------


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
