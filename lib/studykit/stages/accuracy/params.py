"""The accuracy stage's block of the study file.

The thresholds left empty (the default) come from the stage's calibration: the reference checkpoint in bfloat16
against float32, teacher-forced on the reference's own continuation, times a stated multiple (compare.py,
derive_thresholds). A value set here replaces the calibration's; the result records which one was used."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from studykit.schema.base import Strict


class AccuracyParams(Strict):
    prompts_file: str = Field("builtin:default", description="JSONL prompt file or 'builtin:default'")
    max_new_tokens: int = Field(16, gt=0, description="tokens generated per prompt")
    top_k_logprobs: int = Field(20, gt=0, description="logprobs returned per position")
    reference_dtype: Literal["float32", "bfloat16"] = Field("float32", description="dtype of the transformers reference")
    max_real_divergences: int = Field(
        0, ge=0, description="free-running positions (judged on the reference's context) allowed to diverge for "
                             "real; each real divergence is outside the calibrated noise, so the default is 0")
    near_tie_margin: float | None = Field(
        None, ge=0, le=1,
        description="a divergence is a near tie only when both the reference's p(own) - p(vLLM's token) and "
                    "vLLM's p(own) - p(reference's token) are at most this; empty: 4 x the calibration's largest "
                    "top-2 margin shift")
    max_near_tie_kl: float | None = Field(
        None, ge=0, description="KL at a near tie's position at most this (nats), else real; empty: 4 x the "
                                "calibration's largest per-position KL")
    min_top1_agreement: float | None = Field(
        None, ge=0, le=1, description="teacher-forced top-1 agreement threshold; empty: 1 - 2 x the calibration's "
                                      "top-1 disagreements (at least 1) / positions")
    max_mean_kl: float | None = Field(
        None, ge=0, description="teacher-forced mean KL threshold (nats); empty: 3 x the calibration's mean KL")
