"""The latency stage's block of the study file."""

from __future__ import annotations

from pydantic import Field

from studykit.schema.base import Strict

class LatencyParams(Strict):
    input_len: int = Field(32, gt=0, description="prompt tokens per request (--input-len)")
    output_len: int = Field(32, gt=1, description="generated tokens per request (--output-len); > 1 to derive decode time")
    batch_size: int = Field(1, gt=0, description="--batch-size")
    num_iters_warmup: int = Field(2, ge=0, description="--num-iters-warmup")
    num_iters: int = Field(5, gt=0, description="--num-iters")
    extra_args: list[str] = Field(default_factory=list, description="more vllm bench latency arguments")
