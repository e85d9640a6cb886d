"""The model of results/functional.json."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from studykit.schema.base import Record, StageResult

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
    output_tokens: int | None = None
    engine_steps: int | None = Field(None, description="engine steps the request took (vllm:iteration_tokens_total)")
    engine_step_tokens: int | None = Field(None, description="tokens those steps processed, by vLLM's count")
    prefill_steps: int | None = Field(None, description="engine_steps minus one step per output token after the first")


class GraphVsEager(Record):
    """The same greedy request on a graph-mode and an eager server, when asked for (else why not)."""

    status: Literal["measured", "not applicable"]
    identical: bool | None = None
    graph_tokens: list[int] | None = None
    eager_tokens: list[int] | None = None
    reason: str | None = None


class EngineArgs(Record):
    command: str
    logged: dict[str, Any] | None = Field(None, description="vLLM's 'non-default args' line, as it parsed them")
    vllm_version: str | None = None


class FunctionalResult(StageResult):
    not_applicable: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="features not exercised (tensor parallel, multi-modal): why, from the "
                                          "study and config.json")
    engine_flags: dict[str, bool | None] = Field(default_factory=dict)
    engine_args: EngineArgs | None = None
    prefix_caching: PrefixCaching | None = None
    chunked_prefill: ChunkedPrefill | None = None
    graph_vs_eager: GraphVsEager | None = None
