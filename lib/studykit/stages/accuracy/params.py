"""The accuracy stage's block of the study file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from studykit.schema.base import Strict

class AccuracyParams(Strict):
    prompts_file: str = Field("builtin:default", description="JSONL prompt file or 'builtin:default'")
    max_new_tokens: int = Field(16, gt=0, description="tokens generated per prompt")
    top_k_logprobs: int = Field(20, gt=0, description="logprobs returned per position")
    reference_dtype: Literal["float32", "bfloat16"] = Field("float32", description="dtype of the transformers reference")
    min_token_agreement: float = Field(
        0.9, ge=0, le=1, description="threshold on the free-running token agreement up to each prompt's first real "
                                     "divergence (near ties excluded); the raw agreement is reported, not gated")
    near_tie_margin: float = Field(
        0.25, ge=0, le=1,
        description="a free-running divergence is a near tie when the reference's p(own token) - p(vLLM's token) "
                    "is at most this. Default from measured bf16-vs-fp32 noise: on the default study (SmolLM2-135M, "
                    "9 prompts x 16 tokens, teacher-forced) vLLM bf16 moved a probability by up to 0.116 (p99 "
                    "0.056) and the reference's top-2 margin by up to 0.231 (p99 0.106). vLLM flips two tokens "
                    "when the margin is below the shift, and a shift can reach twice the largest probability "
                    "error (one token up, the other down), so margins up to 0.23 cannot be told apart from bf16 "
                    "rounding; 0.25 is that, rounded up. Each run reports its own teacher_forced.max_margin_shift "
                    "to compare with")
    min_top1_agreement: float = Field(0.95, ge=0, le=1, description="teacher-forced top-1 agreement threshold")
    max_mean_kl: float = Field(0.05, ge=0, description="teacher-forced mean KL threshold (nats)")
