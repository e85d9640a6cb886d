"""The report stage's checks: every file it says it wrote is on disk and not empty, and the reference it was asked
to compare with was read."""

from __future__ import annotations

from pathlib import Path

from studykit.checks import check, not_run
from studykit.schema.base import Check
from studykit.stages.report.params import ReportParams
from studykit.stages.report.result import ReportResult


def checks(p: ReportParams, result: ReportResult) -> list[Check]:
    out = []
    wanted = [f"report.{lang}.md" for lang in p.languages] + ["report.html"]
    missing = [name for name in wanted if not result.files.get(name) or not Path(result.files[name]).is_file()
               or Path(result.files[name]).stat().st_size == 0]
    out.append(check("report.files_written", "every report file requested is written", not missing,
                     f"missing or empty: {missing}" if missing else f"{len(wanted)} files", wanted,
                     sorted(result.files)))
    if not p.reference:
        out.append(not_run("report.reference_read", "the reference was read", "no report.reference in the study"))
    else:
        error = (result.reference or {}).get("error")
        out.append(check("report.reference_read", "the reference was read", not error, error or p.reference,
                         p.reference, (result.reference or {}).get("label")))
    return out
