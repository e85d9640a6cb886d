"""The model of results/accuracy.json."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from studykit.schema.base import Open, Record, StageResult

class FreeRunning(Record):
    """Free-running greedy agreement. See compare.free_running_summary for the exact counting."""

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


class PromptAccuracy(Open):
    """One prompt's record; the token ids and per-position data beside these fields are kept as written."""

    id: str
    equal_tokens: int
    total_tokens: int
    token_agreement: float
    first_divergence: int | None = None
    first_divergence_detail: FirstDivergence | None = None
    chat: bool | None = Field(None, description="the prompt went through the chat template")
    teacher_forced: TeacherForced | None = Field(None, description="this prompt's teacher-forced summary")


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
