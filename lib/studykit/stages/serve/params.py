"""The serve stage's block of the study file."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from studykit.schema.base import Strict

class GoodputSlo(Strict):
    ttft_ms: float | None = Field(None, gt=0, description="TTFT SLO in ms")
    tpot_ms: float | None = Field(None, gt=0, description="TPOT SLO in ms")


class ServeParams(Strict):
    # inf is a valid rate: serialise it as "Infinity" (papermill injects JSON values; null would lose it)
    model_config = ConfigDict(extra="forbid", validate_default=True, ser_json_inf_nan="strings")

    base_url: str | None = Field(None, description="bench an existing server instead of starting one")
    input_len: int = Field(32, gt=0, description="--random-input-len")
    output_len: int = Field(32, gt=0, description="--random-output-len")
    num_prompts: int = Field(20, gt=0, description="--num-prompts per point")
    request_rates: list[float] | Literal["auto"] = Field(
        default_factory=lambda: [10.0], min_length=1,
        description="--request-rate per point (inf allowed: all at once); 'auto': the synchronous point "
                    "(max_concurrency 1) and the saturated point (rate inf), then sweep_rates rates spread between "
                    "their request throughputs, as GuideLLM's sweep does")
    sweep_rates: int = Field(3, ge=1, le=20, description="with request_rates auto: rates measured between the "
                                                          "synchronous and the saturated throughput")
    max_concurrency: list[int] = Field(default_factory=list, description="--max-concurrency per point (crossed with rates)")
    repeats: int = Field(1, gt=0, description="runs per point, for confidence intervals")
    num_warmups: int = Field(2, ge=0, description="--num-warmups: warm-up requests before each point (not measured)")
    goodput: GoodputSlo | None = Field(None, description="SLOs for goodput")
    seed: int = Field(0, description="--seed of the random dataset")
    extra_args: list[str] = Field(default_factory=list, description="more vllm bench serve arguments")

    @field_validator("request_rates")
    @classmethod
    def _rates_positive(cls, v):
        if v == "auto":
            return v
        bad = [r for r in v if not r > 0]
        if bad:
            raise ValueError(f"request rates must be > 0 (or inf); got {bad}")
        return v
