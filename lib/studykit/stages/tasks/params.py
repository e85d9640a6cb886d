"""The tasks stage's block of the study file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from studykit.schema.base import Strict, no_repeats

class TaskDataset(Strict):
    """A dataset an lm-eval task reads from the hub, fetched from ModelScope instead (`studykit data fetch`)."""

    dataset_path: str = Field(min_length=1, description="the task's dataset_path in lm-eval (e.g. openai/gsm8k)")
    modelscope_id: str = Field(pattern=r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*$",
                               description="ModelScope dataset id (owner/name) holding the same files")
    revision: str = Field(pattern=r"^[A-Za-z0-9][\w.\-]*$", description="ModelScope revision (commit id or tag), pinned")


class TasksParams(Strict):
    tasks: list[str] = Field(default_factory=lambda: ["studykit_mc", "studykit_gen"], min_length=1,
                             description="lm-eval task or group names (the kit's offline tasks by default)")
    limit: int | None = Field(None, gt=0, description="items per task (lm-eval --limit); empty: all")
    num_fewshot: int | None = Field(None, ge=0, description="lm-eval --num_fewshot; empty: the task's own")
    max_gen_toks: int | None = Field(None, gt=0, description="cap on generated tokens per item; empty: the task's own")
    batch_size: int = Field(16, gt=0, description="lm-eval --batch_size for both backends")
    num_concurrent: int = Field(2, gt=0, description="concurrent requests lm-eval sends to the vLLM server")
    reference_dtype: Literal["float32", "bfloat16"] = Field("float32", description="dtype of the transformers reference (lm-eval hf)")
    metrics: dict[str, str] = Field(default_factory=dict,
                                    description="task -> 'metric,filter' to compare (default: the task's first)")
    max_abs_delta: float = Field(0.05, ge=0, le=1,
                                 description="tolerance of the paired gate: passed when the 95 % interval of vLLM - "
                                             "reference lies within +-this, failed when wholly outside, inconclusive "
                                             "when it straddles a bound")
    accept_inconclusive: bool = Field(False, description="an inconclusive paired gate passes the stage (shown as "
                                                         "inconclusive, accepted) instead of failing it")
    rtol: float = Field(0.05, ge=0, description="vllm-ascend's tolerance: |vLLM score - baseline| <= rtol * baseline")
    baselines: dict[str, float] = Field(default_factory=dict,
                                        description="task -> recorded baseline score (0..1) of vLLM on this model")
    include_path: list[str] = Field(default_factory=list, description="more lm-eval task directories (YAML)")
    data_dir: str | None = Field(None, min_length=1,
                                 description="local dataset directory for hub tasks (filled by `studykit data fetch`)")
    datasets: list[TaskDataset] = Field(default_factory=list,
                                        description="hub datasets the tasks read, fetched from ModelScope into data_dir")

    _tasks_unique = field_validator("tasks")(lambda v: no_repeats(v, "tasks"))

    @field_validator("baselines")
    @classmethod
    def _baselines_are_scores(cls, v):
        bad = {k: x for k, x in v.items() if not 0 <= x <= 1}
        if bad:
            raise ValueError(f"baseline scores must be within 0..1; got {bad}")
        return v

    @field_validator("metrics")
    @classmethod
    def _metric_filter_pairs(cls, v):
        bad = {k: x for k, x in v.items() if x.count(",") != 1 or not all(x.split(","))}
        if bad:
            raise ValueError(f"metrics are 'metric,filter' (e.g. 'acc,none', 'exact_match,strict-match'); got {bad}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TasksParams:
        if self.datasets and not self.data_dir:
            raise ValueError("tasks.datasets needs tasks.data_dir (where `studykit data fetch` puts them)")
        strays = sorted((set(self.metrics) | set(self.baselines)) - set(self.tasks))
        if strays:
            raise ValueError(f"metrics / baselines name {strays}, which are not in tasks {self.tasks}")
        return self
