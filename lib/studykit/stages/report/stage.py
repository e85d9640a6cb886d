"""The report stage as the notebook runs it: build the report, record results/report.json.

The report is written even when earlier stages failed; the stage itself fails only when the report could not
be built or the reference it was asked to compare with cannot be read (the report is still written then,
saying so at its top).
"""

from __future__ import annotations

from pathlib import Path

from studykit.params import load_study
from studykit.evidence.rundir import RunLayout
from studykit.runner.context import DEFAULT_PARAMS, StageContext, open_stage
from studykit.plan import Step
from studykit.report import build_report


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


def run_report_stage(run_dir: str = "", params_path: str = "", reference: str | None = None,
                     languages: list[str] | None = None) -> tuple[StageContext, dict]:
    if not run_dir:
        run_dir = str(newest_run_dir(params_path))
        print(f"reporting on the newest run: {run_dir}")
    if not params_path and not RunLayout(run_dir).params.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no params.yaml)")
    ctx = open_stage("report", run_dir, params_path)
    try:
        summary = build_report(ctx.run_dir, reference=reference, languages=languages or ["zh", "en"])
    except Exception as err:
        ctx.fail(err)
        raise
    failures = [summary["reference"]["error"]] if summary["reference"]["error"] else []
    ctx.write_results(summary, failures=failures)
    return ctx, summary
