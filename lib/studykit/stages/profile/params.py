"""The profile stage's block of the study file."""

from __future__ import annotations

from pydantic import Field, field_validator

from studykit.schema.base import Strict, no_repeats


class ProfileParams(Strict):
    input_len: int = Field(32, gt=0, description="prompt tokens per request")
    output_len: int = Field(32, gt=2, description="tokens each request generates (max_tokens, ignore_eos): the decode "
                                                  "window")
    concurrency: list[int] = Field(default_factory=lambda: [1, 8], min_length=1,
                                   description="concurrent requests of each window: 1 is batch-1 decode, a larger one "
                                               "a batch (e.g. the serve stage's saturated point)")
    warmup_requests: int = Field(1, ge=0, description="requests sent and not measured before the first window")
    outside_share_threshold: float = Field(
        0.5, gt=0, lt=1, description="host-bound when more than this share of a decode step is outside the model's "
                                     "forward: 0.5 = the host takes more of the step than the model does, so making "
                                     "the model faster cannot more than halve the step")
    min_decode_steps: int = Field(8, gt=0, description="fewest decode steps a window's trace must hold for its split "
                                                       "to count")
    top_ops: int = Field(10, gt=0, description="operators listed by self time")

    _concurrency_unique = field_validator("concurrency")(lambda v: no_repeats(v, "profile.concurrency"))

    @field_validator("concurrency")
    @classmethod
    def _positive(cls, v):
        bad = [c for c in v if c < 1]
        if bad:
            raise ValueError(f"profile.concurrency {bad}: each window sends at least 1 request; allowed: integers >= 1")
        return sorted(v)
