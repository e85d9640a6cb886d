"""The report stage's block of the study file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from studykit.schema.base import Strict, no_repeats

class ReportParams(Strict):
    reference: str | None = Field(
        None, min_length=1,
        description="previous run directory or reference file (.yaml/.json, e.g. params/reference/"
                    "seed-bitcpm4-0.5b-ascend.yaml) to compare with; absolute, or relative to the working "
                    "directory or the kit root")
    languages: list[Literal["zh", "en"]] = Field(default_factory=lambda: ["zh", "en"], min_length=1,
                                                 description="report languages (report.<lang>.md each; all in report.html)")

    _languages_unique = field_validator("languages")(lambda v: no_repeats(v, "languages"))
