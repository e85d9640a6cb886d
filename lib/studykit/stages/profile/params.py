"""The profile stage's block of the study file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from studykit.schema.base import Strict, no_repeats

SATURATED = "saturated"


class ProfileParams(Strict):
    input_len: int = Field(32, gt=0, description="prompt tokens per request")
    output_len: int = Field(32, gt=2, description="tokens each request generates (max_tokens, ignore_eos): the decode "
                                                  "window")
    concurrency: list[int | Literal["saturated"]] = Field(
        default_factory=lambda: [1, SATURATED], min_length=1,
        description="concurrent requests of each window: 1 is batch-1 decode; 'saturated' is the batch of the serve "
                    "stage's saturated point (all requests at once: the requests it had in flight, from this run's "
                    "results/serve.json, else serve.num_prompts; at most model.max_num_seqs, the engine's batch)")
    warmup_requests: int = Field(1, ge=0, description="requests sent and not measured before the first window")
    repeats: int = Field(2, ge=1, le=10, description=(
        "windows of each kind (profiler off, on) per concurrency, in the order off on on off (repeated): a drift of "
        "the host during the windows weighs on both kinds alike, so the overhead is the profiler's"))
    outside_share_threshold: float = Field(
        0.5, gt=0, lt=1, description="host-bound when more than this share of a decode step is outside the model's "
                                     "forward: 0.5 = the host takes more of the step than the model does, so making "
                                     "the model faster cannot more than halve the step")
    max_overhead: float = Field(
        0.25, gt=0, description="largest |profiler overhead| for which the traced steps stand for the unprofiled ones; "
                                "the check fails when the overhead passes it by more than the host's own spread "
                                "between windows of one kind (a loaded host moves a window by tens of %)")
    min_decode_steps: int = Field(8, gt=0, description="fewest decode steps a window's trace must hold for its split "
                                                       "to count")
    top_ops: int = Field(10, gt=0, description="operators listed by self time")

    _concurrency_unique = field_validator("concurrency")(lambda v: no_repeats(v, "profile.concurrency"))

    @field_validator("concurrency")
    @classmethod
    def _positive(cls, v):
        bad = [c for c in v if c != SATURATED and c < 1]
        if bad:
            raise ValueError(f"profile.concurrency {bad}: each window sends at least 1 request; allowed: integers >= 1 "
                             f"or '{SATURATED}'")
        return sorted(c for c in v if c != SATURATED) + [c for c in v if c == SATURATED]


def window_order(repeats: int) -> list[str]:
    """off on on off, off on on off, ...: `repeats` windows of each kind, balanced so that a linear drift of the
    host's speed adds the same to the mean of both kinds."""
    return [("off", "on", "on", "off")[i % 4] for i in range(2 * repeats)]
