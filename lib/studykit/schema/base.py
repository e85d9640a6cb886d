"""What every results/<stage>.json holds, whatever the stage: status, timing, checks, commands, charts.

The stage writes its result through its model (validated on write) and the report reads it back through the
same model, so a key one side writes and the other does not know is an error at the boundary, not a "—" in a
shared report. Field names keep vLLM's names where vLLM measured the value and carry their unit otherwise.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# inconclusive: a statistical gate whose interval straddles its tolerance (studykit.verdict); it fails the stage
# unless the study accepts it
CheckStatus = Literal["passed", "failed", "not_run", "inconclusive"]


class Record(BaseModel):
    """Strict: an unknown key is an error. Results are read back by the report, the reference comparison and
    the tests; a silently ignored key is a number nobody will see."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """Records whose keys come from outside the kit (vLLM's JSON, prompt sets): kept as they are."""

    model_config = ConfigDict(extra="allow")


class Check(Record):
    """One consistency check. `not_run` is neither passed nor failed: it says why it could not run.
    `id` (`<stage>.<check>`) is what reports and tests select by; `name` is what a reader sees."""

    id: str
    subject: str | None = Field(None, description="the run, point or command of the stage the check looked at")
    name: str
    status: CheckStatus
    detail: str = ""
    expected: Any = None
    actual: Any = None
    metric: str | None = Field(None, description="metric id (see schema.metrics) the check is about, if any")

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class CommandEntry(Open):
    """A command the stage ran, as the stage saw it (commands.jsonl has the full record)."""

    label: str
    argv: list[str] = Field(default_factory=list)
    command: str = ""
    seconds: float | None = None
    returncode: int | None = None


class TelemetrySeries(Record):
    label: str = ""
    platform: str = "cpu"
    summary: dict[str, Any] = Field(default_factory=dict)
    series: list[dict[str, Any]] = Field(default_factory=list)
    window_s: list[float] | None = Field(None, description="[start, end] of the measured part, seconds since the "
                                                           "sampling started (the rest is engine start-up)")
    window_how: str | None = None
    rapl_max_energy_range_uj: dict[str, int] | None = Field(None, description="per RAPL domain sampled: where its "
                                                                          "counter wraps to 0")


class StageResult(Record):
    """Fields every stage writes (StageContext.write_results fills the bookkeeping ones)."""

    stage: str
    study: str
    status: Literal["passed", "failed"]
    failures: list[str] = Field(default_factory=list)
    started_utc: str
    ended_utc: str
    wall_seconds: float
    error: str | None = None
    traceback: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="the stage's params block as it ran")
    checks: list[Check] = Field(default_factory=list)
    commands: list[CommandEntry] = Field(default_factory=list)
    charts: list[str] = Field(default_factory=list)
    telemetry: list[TelemetrySeries] = Field(default_factory=list)
    server: str | None = Field(None, description="label of the server record in commands.jsonl this stage used")


def count_checks(checks: list[Check]) -> dict[str, int]:
    out = {"passed": 0, "failed": 0, "not_run": 0, "inconclusive": 0}
    for c in checks:
        out[c.status] += 1
    return out


def no_repeats(values: list, what: str) -> list:
    dupes = sorted({x for x in values if values.count(x) > 1})
    if dupes:
        raise ValueError(f"{what} listed twice: {dupes}")
    return values


class Strict(BaseModel):
    # inf is a valid value (serve.request_rates): the JSON that papermill injects and params.yaml is written from
    # keeps it as "Infinity" (null would lose it); the setting of the model being dumped is the one that counts
    model_config = ConfigDict(extra="forbid", validate_default=True, ser_json_inf_nan="strings")
