"""The model of results/accuracy.json."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from studykit.schema.base import Open, Record, StageResult

class FreeRunning(Record):
    """Free-running greedy agreement. See compare.free_running_summary for the exact counting."""

    prompts: int
    equal_tokens: int = Field(description="position-wise equal tokens of the plain free run (the seed's count)")
    total_tokens: int
    token_agreement: float = Field(description="raw: equal_tokens / total_tokens (the seed's measure; not gating)")
    positions: int | None = Field(None, description="positions judged on the reference's context (vLLM resumed "
                                                    "from the reference's prefix after each divergence)")
    agreeing_positions: int | None = None
    near_ties: int | None = Field(None, description="positions whose divergence is a near tie in both engines")
    real_divergences: int | None = Field(None, description="positions whose divergence is real: the gate")
    requests: int | None = Field(None, description="/v1/completions requests: one per prompt plus one per resume")
    position_agreement: float | None = Field(None, description="agreeing_positions / positions")
    # Written by runs before the resumed comparison (near ties and real divergences then counted prompts, and
    # the gate was this ratio); kept so those results still read.
    agreeing_tokens: int | None = None
    comparable_tokens: int | None = None
    token_agreement_excluding_near_ties: float | None = None


class Divergence(Record):
    """A position where vLLM's token differs from the reference's, on the reference's context. p_ref_*: the
    reference's probabilities; p_vllm_*: vLLM's, None where vLLM did not return the token."""

    position: int
    kind: Literal["near_tie", "divergence"]
    why: str
    ref_token: int | None = None
    vllm_token: int | None = None
    ref_token_text: str | None = None
    vllm_token_text: str | None = None
    p_ref_ref_token: float | None = None
    p_ref_vllm_token: float | None = None
    margin: float | None = Field(None, description="p_ref_ref_token - p_ref_vllm_token")
    p_vllm_ref_token: float | None = None
    p_vllm_vllm_token: float | None = None
    p_vllm_top: float | None = Field(None, description="vLLM's largest probability at this position")
    vllm_margin: float | None = Field(None, description="p_vllm_vllm_token - p_vllm_ref_token")
    kl: float | None = Field(None, description="KL(reference || vLLM) here, over vLLM's returned tokens + a bucket")


class Calibration(Record):
    """The reference checkpoint in the other dtype against the reference, teacher-forced on the reference's
    continuation (no vLLM): the noise the near-tie margin and the KL and top-1 thresholds are multiples of."""

    dtype: str
    reference_dtype: str
    seconds: float | None = None
    positions: int
    top1_disagreements: int
    prob_max_error: float
    prob_error_p99: float
    max_margin_shift: float
    margin_shift_p99: float
    mean_kl: float
    max_kl: float
    kl_p99: float


class ThresholdBasis(Record):
    value: float
    source: Literal["params", "calibration"]
    measurement: str | None = Field(None, description="the calibration field it is derived from")
    measured: float | None = None
    multiple: float | None = None
    formula: str | None = None


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
        None, description="largest |vLLM's - the reference's margin between the reference's top two tokens|; "
                          "compare with calibration.max_margin_shift")


class PromptAccuracy(Open):
    """One prompt's record; the token ids and per-position data beside these fields are kept as written."""

    id: str
    equal_tokens: int
    total_tokens: int
    token_agreement: float
    first_divergence: int | None = None
    first_divergence_detail: Divergence | None = None
    divergences: list[Divergence] = Field(default_factory=list, description="every divergent position, judged")
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
    calibration: Calibration | None = None
    thresholds: dict[str, float] = Field(default_factory=dict, description="the value each gate used")
    threshold_basis: dict[str, ThresholdBasis] = Field(default_factory=dict,
                                                       description="where each threshold came from")
    method: str | None = None
