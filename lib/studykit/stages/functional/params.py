"""The functional stage's block of the study file."""

from __future__ import annotations

from pydantic import Field

from studykit.schema.base import Strict

class FunctionalParams(Strict):
    prefix_tokens: int = Field(256, gt=0, description="length of the shared prefix for the prefix-cache check")
    prefix_requests: int = Field(4, gt=1, description="requests sharing the prefix")
    graph_vs_eager: bool = Field(False, description="compare graph and eager servers (slow on cpu)")
    max_num_batched_tokens: int = Field(256, gt=0, description="token budget per step for the chunked-prefill check")
