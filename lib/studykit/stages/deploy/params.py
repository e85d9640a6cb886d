"""The deploy stage's block of the study file."""

from __future__ import annotations

from pydantic import Field

from studykit.schema.base import Strict

class DeployParams(Strict):
    dummy_gate: bool = Field(True, description="start once with --load-format dummy and time it")
    real_gate: bool = Field(True, description="start with the real weights and time it")
    smoke_prompt: str = Field("say hi", min_length=1, description="user message of the smoke chat request")
    max_completion_tokens: int = Field(16, gt=0, description="max_completion_tokens of the smoke chat")
