"""results/tasks.json: lm-evaluation-harness task scores on vLLM (candidate) and on the transformers reference,
paired item by item. Scores are proportions in 0..1; log-likelihood differences are in nats."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from studykit.schema.base import Record, StageResult


class BackendScore(Record):
    correct: int = Field(description="items right among the compared ones (distinct, no deciding tie)")
    score: float
    ci95_low: float = Field(description="Wilson 95 % interval")
    ci95_high: float
    ties: int = Field(0, description="multiple-choice items whose top log-likelihood this backend gives to more than "
                                     "one choice, the keyed one among them (lm-eval breaks it by choice order)")
    logged_items: int | None = Field(None, description="items lm-eval logged (before duplicates and ties were "
                                                       "left out)")
    logged_score: float | None = Field(None, description="mean of lm-eval's per-item metric over every logged item")
    lm_eval_score: float | None = Field(None, description="lm-eval's own aggregate of the same metric (none for a "
                                                          "group or a metric lm-eval does not aggregate)")


class PairedDelta(Record):
    value: float = Field(description="candidate score - reference score")
    ci95_low: float = Field(description="95 % interval of the paired difference (see method)")
    ci95_high: float
    method: str = Field("Wald interval for paired proportions",
                        description="how the interval was computed (runs before the gate: Wald)")


class Gate(Record):
    """The paired difference judged against the tolerance (studykit.verdict.decide)."""

    outcome: str = Field(description="passed | failed | inconclusive")
    tolerance: float = Field(description="tasks.max_abs_delta the interval was judged against")
    tolerance_source: str
    items_to_settle: int | None = Field(None, description="inconclusive: items that would settle it at the observed "
                                                          "discordant rates (none: no number would)")
    accepted: bool = Field(False, description="inconclusive and accepted by tasks.accept_inconclusive")


class Excluded(Record):
    doc_id: int
    id: str | None = None
    why: str = Field(description="duplicate of an earlier item's prompt, or a tie on one backend")


class ItemAnswer(Record):
    answer: Any = Field(description="multiple choice: {choice, text, loglikelihoods}; generative: the filtered text")
    score: float
    tie: list[int] | None = Field(None, description="choices sharing the top log-likelihood, the keyed one among "
                                                    "them (the score was decided by choice order)")


class ItemRecord(Record):
    task: str = Field(description="the leaf task (a group's subtask)")
    doc_id: int
    id: str | None = Field(None, description="the item's own id, when its dataset has one")
    target: Any = None
    reference: ItemAnswer
    candidate: ItemAnswer
    max_abs_loglik_delta_nats: float | None = Field(None, description="multiple choice: largest difference over "
                                                                       "the choices' log-likelihoods")
    excluded: str | None = Field(None, description="why the item is left out of the comparison (a repeated "
                                                   "prompt, a deciding tie); none: compared")


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
    items: int = Field(description="items compared: paired, distinct by prompt, no deciding tie on either backend")
    duplicates: list[Excluded] = Field(default_factory=list, description="items whose prompt an earlier item has "
                                                                         "(left out; the first is kept)")
    tied: list[Excluded] = Field(default_factory=list, description="items with a deciding tie on either backend "
                                                                   "(left out of the comparison)")
    reference: BackendScore
    candidate: BackendScore
    delta: PairedDelta
    gate: Gate | None = None
    only_candidate_correct: int
    only_reference_correct: int
    mcnemar_exact_p: float = Field(description="two-sided exact binomial test on the discordant items")
    unpaired: list[Unpaired] = Field(default_factory=list)
    loglikelihood: LoglikelihoodParity | None = None
    discordant: list[ItemRecord] = Field(default_factory=list)
    per_item: list[ItemRecord] = Field(default_factory=list, description="every paired item, compared or not")


class TasksResult(StageResult):
    reference: dict[str, Any] | None = None
    candidate: dict[str, Any] | None = None
    lm_eval_version: str | None = None
    task_sources: dict[str, Any] = Field(default_factory=dict)
    tasks: list[TaskParity] = Field(default_factory=list)
    thresholds: dict[str, Any] = Field(default_factory=dict)
    method: str | None = None
