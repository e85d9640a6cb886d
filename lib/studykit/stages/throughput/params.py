"""The throughput stage's block of the study file."""

from __future__ import annotations

from pydantic import Field

from studykit.schema.base import Strict

class ThroughputParams(Strict):
    input_len: int = Field(32, gt=0, description="--random-input-len")
    output_len: int = Field(32, gt=0, description="--random-output-len")
    num_prompts: int = Field(20, gt=0, description="--num-prompts")
    extra_args: list[str] = Field(default_factory=list, description="more vllm bench throughput arguments")
