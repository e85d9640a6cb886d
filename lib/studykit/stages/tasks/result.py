"""results/tasks.json: lm-evaluation-harness task scores on vLLM (candidate) and on the transformers reference,
paired item by item. Scores are proportions in 0..1; log-likelihood differences are in nats."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from studykit.schema.base import Record, StageResult


class BackendScore(Record):
    correct: int
    score: float
    ci95_low: float = Field(description="Wilson 95 % interval")
    ci95_high: float
    lm_eval_score: float | None = Field(None, description="lm-eval's own aggregate of the same metric (none for a "
                                                          "group or a metric lm-eval does not aggregate)")


class PairedDelta(Record):
    value: float = Field(description="candidate score - reference score")
    ci95_low: float = Field(description="Wald interval for paired proportions")
    ci95_high: float


class ItemAnswer(Record):
    answer: Any = Field(description="multiple choice: {choice, text, loglikelihoods}; generative: the filtered text")
    score: float


class ItemRecord(Record):
    task: str = Field(description="the leaf task (a group's subtask)")
    doc_id: int
    id: str | None = Field(None, description="the item's own id, when its dataset has one")
    target: Any = None
    reference: ItemAnswer
    candidate: ItemAnswer
    max_abs_loglik_delta_nats: float | None = Field(None, description="multiple choice: largest difference over "
                                                                       "the choices' log-likelihoods")


class Unpaired(Record):
    task: str
    doc_id: int
    why: str


class LoglikelihoodParity(Record):
    items: int
    mean_max_abs_delta_nats: float
    max_abs_delta_nats: float


class TaskParity(Record):
    task: str
    subtasks: list[str] = Field(default_factory=list, description="leaf tasks pooled into a group's score")
    metric: str = Field(description="lm-eval's 'metric,filter' compared")
    items: int
    reference: BackendScore
    candidate: BackendScore
    delta: PairedDelta
    only_candidate_correct: int
    only_reference_correct: int
    mcnemar_exact_p: float = Field(description="two-sided exact binomial test on the discordant items")
    unpaired: list[Unpaired] = Field(default_factory=list)
    loglikelihood: LoglikelihoodParity | None = None
    discordant: list[ItemRecord] = Field(default_factory=list)
    per_item: list[ItemRecord] = Field(default_factory=list)


class TasksResult(StageResult):
    reference: dict[str, Any] | None = None
    candidate: dict[str, Any] | None = None
    lm_eval_version: str | None = None
    task_sources: dict[str, Any] = Field(default_factory=dict)
    tasks: list[TaskParity] = Field(default_factory=list)
    thresholds: dict[str, Any] = Field(default_factory=dict)
    method: str | None = None
