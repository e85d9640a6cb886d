"""The report stage: build the report from the run's files, record results/report.json.

The report is written even when earlier stages failed; the stage itself fails only when the report could not
be built or the reference it was asked to compare with cannot be read (the report is still written then,
saying so at its top).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studykit.evidence.rundir import RunLayout
from studykit.params import load_study
from studykit.plan import Step
from studykit.report import build_report
from studykit.runner.context import DEFAULT_PARAMS, StageContext
from studykit.stages.report.params import ReportParams
from studykit.stages.report.result import ReportResult


def plan(study, model_dir, run_dir, port) -> list[Step]:
    return [Step("report", "report", "python", text="# python: report.{zh,en}.md and report.html from results/")]


def newest_run_dir(params_path: str = "") -> Path:
    """The latest run directory of a study, for a researcher opening the report notebook by hand."""
    from studykit.evidence.rundir import outputs_root

    study = load_study(params_path or DEFAULT_PARAMS)
    base = outputs_root() / study.name
    runs = sorted(p for p in base.glob("*/") if (p / "run.json").exists()) if base.is_dir() else []
    if not runs:
        raise FileNotFoundError(f"no run directory of study {study.name!r} under {base}; "
                                f"run `studykit run {params_path or DEFAULT_PARAMS}` first or pass run_dir")
    return runs[-1]


def run_dir_for(run_dir: str = "", params_path: str = "") -> str:
    """The run to report on: `run_dir`, or the newest run of the study when it is empty; it must be a run
    directory (one with params.yaml) unless a study file is given."""
    if not run_dir:
        run_dir = str(newest_run_dir(params_path))
        print(f"reporting on the newest run: {run_dir}")
    if not params_path and not RunLayout(run_dir).params.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no params.yaml)")
    return run_dir


def run(ctx: StageContext, p: ReportParams) -> ReportResult:
    """Build the report from the run's files. A reference that cannot be read fails the stage (the report is still
    written, saying so at its top); an earlier stage's failure does not."""
    data: dict[str, Any] = {"params": p.model_dump(mode="json")}
    with ctx.keep(data):
        data.update(build_report(ctx.run_dir, reference=p.reference, languages=p.languages))
        if data["reference"]["error"]:
            data["failures"] = [data["reference"]["error"]]
    return ctx.result(data)
