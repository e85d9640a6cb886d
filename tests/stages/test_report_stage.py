"""The report stage on a recorded run (tests/data/runs): it writes the report and records results/report.json; a
reference that cannot be read is written into the report and fails the stage; a report that cannot be built fails
it with the error recorded; the run to report on is the given one or the study's newest."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import DATA, DEFAULT_PARAMS
from studykit.runner.context import StageFailed, open_stage
from studykit.stages.report import stage

GOLDEN = DATA / "runs" / "golden"


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "golden"
    shutil.copytree(GOLDEN, run)
    (run / "results" / "report.json").unlink()  # the stage writes it
    return run


def test_run_writes_the_report_and_its_record(run_dir):
    ctx = open_stage("report", str(run_dir))
    p = ctx.params({"languages": ["en"], "reference": None})
    result = stage.run(ctx, p)
    assert result.languages == ["en"] and set(result.files) == {"report.en.md", "report.html"}
    assert (run_dir / "report.en.md").read_text().startswith("# ") and not (run_dir / "report.zh.md").exists()
    assert result.stage_status["deploy"] == "passed" and "report" not in result.stage_status
    assert result.reference == {"given": None, "label": None, "source": None, "error": None}
    assert not result.failures
    ctx.write(result)
    doc = json.loads((run_dir / "results" / "report.json").read_text())
    assert doc["status"] == "passed" and doc["params"] == {"reference": None, "languages": ["en"]}


def test_unreadable_reference_is_in_the_report_and_fails_the_stage(run_dir, tmp_path):
    missing = tmp_path / "missing.yaml"
    ctx = open_stage("report", str(run_dir))
    p = ctx.params({"reference": str(missing)})
    result = stage.run(ctx, p)
    assert len(result.failures) == 1 and "missing.yaml" in result.failures[0]
    assert "missing.yaml" in (run_dir / "report.en.md").read_text()  # the report is still written, saying why
    with pytest.raises(StageFailed, match="missing.yaml"):
        ctx.write(result)
    doc = json.loads((run_dir / "results" / "report.json").read_text())
    assert doc["status"] == "failed" and doc["reference"]["error"] == result.failures[0]


def test_a_report_that_cannot_be_built_fails_with_the_error_recorded(run_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("no such section")

    monkeypatch.setattr(stage, "build_report", broken)
    ctx = open_stage("report", str(run_dir))
    with pytest.raises(StageFailed, match="KeyError"):
        stage.run(ctx, ctx.params({}))
    doc = json.loads((run_dir / "results" / "report.json").read_text())
    assert doc["status"] == "failed" and doc["error"] == "KeyError: 'no such section'" and "broken" in doc["traceback"]


def test_the_run_to_report_on(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDYKIT_OUTPUTS", str(tmp_path / "outputs"))
    with pytest.raises(FileNotFoundError, match="is not a run directory"):
        stage.run_dir_for(str(tmp_path))
    assert stage.run_dir_for(str(tmp_path), str(DEFAULT_PARAMS)) == str(tmp_path)  # the study file is given
    for stamp in ("20261125T010000Z", "20261125T020000Z"):
        (tmp_path / "outputs" / "smollm2-135m-cpu" / stamp).mkdir(parents=True)
        (tmp_path / "outputs" / "smollm2-135m-cpu" / stamp / "run.json").write_text("{}")
    assert stage.run_dir_for("", str(DEFAULT_PARAMS)).endswith("20261125T020000Z")


def test_report_checks_fail_on_a_missing_file_and_an_unread_reference(tmp_path):
    from conftest import typed_result
    from studykit.stages.report import checks
    from studykit.stages.report.params import ReportParams

    md = tmp_path / "report.en.md"
    md.write_text("# r\n")
    p = ReportParams(languages=["en"], reference="params/reference/seed-bitcpm4-0.5b-ascend.yaml")
    result = typed_result("report", {"files": {"report.en.md": str(md), "report.html": str(tmp_path / "no.html")},
                                     "reference": {"given": p.reference, "error": "cannot read it"}})
    got = {c.id: c for c in checks.checks(p, result)}
    assert got["report.files_written"].status == "failed" and "report.html" in got["report.files_written"].detail
    assert got["report.reference_read"].status == "failed"
    (tmp_path / "no.html").write_text("<html></html>")
    result = typed_result("report", {"files": {"report.en.md": str(md), "report.html": str(tmp_path / "no.html")},
                                     "reference": {"given": None, "error": None}})
    got = {c.id: c for c in checks.checks(ReportParams(languages=["en"]), result)}
    assert got["report.files_written"].status == "passed" and got["report.reference_read"].status == "not_run"
