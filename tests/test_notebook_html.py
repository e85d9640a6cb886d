"""Executed notebooks rendered to self-contained HTML: real notebooks executed by papermill on the studykit kernel
(no vLLM), rendered by nbconvert, and the runner's call sites (a failed stage, a rendering failure, `studykit
report`)."""

from __future__ import annotations

import base64
import re
import shutil
from html import unescape
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from conftest import DEFAULT_PARAMS, ROOT
from studykit.runner import execute as runner
from studykit.params import load_study
from studykit.report.notebook_html import notebook_links, render_notebook, render_run
from studykit.evidence.rundir import RunLayout, read_json, write_json
from test_report import golden_copy

CODE_MARKER = "distinctive_code_marker_ms = 41.5"
PROSE = "The time to first token is measured from the request until the first streamed token."
CHART_CELL = f"""%matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
{CODE_MARKER}
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot([1, 2, 3], [3, 1, 2])
plt.show()"""
TABLE_CELL = "pd.DataFrame({'ttft_ms': [12.5, 13.75], 'tpot_ms': [4.0, 4.5]})"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _notebook(*sources: str, markdown: str = PROSE) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "studykit", "display_name": "Python (studykit)", "language": "python"}
    params = nbformat.v4.new_code_cell('run_dir = ""\nparams_path = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_markdown_cell(markdown), *map(nbformat.v4.new_code_cell, sources)]
    return nb


def _execute(nb: nbformat.NotebookNode, out: Path) -> Path:
    src = out.with_name(f"source-{out.name}")
    nbformat.write(nb, src)
    try:
        pm.execute_notebook(str(src), str(out), parameters={"run_dir": str(out.parent)}, kernel_name="studykit",
                            progress_bar=False)
    finally:
        src.unlink()
    return out


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> Path:
    """A run directory with one executed notebook: markdown, a displayed chart, a DataFrame, and a markdown
    image of a PNG file beside the notebook (nbconvert embeds files from the notebook's own directory only)."""
    run = tmp_path_factory.mktemp("run")
    layout = RunLayout(run)
    layout.make_dirs()
    shutil.copy(ROOT / "tests/data/runs/golden/charts/latency-latencies.png", layout.notebooks / "on-disk.png")
    nb = _notebook(CHART_CELL, TABLE_CELL, markdown=f"{PROSE}\n\n![saved chart](on-disk.png)")
    return _execute(nb, layout.notebooks / "latency.ipynb")


def _visible_text(html: str) -> str:
    """The page's text without markup: highlighted code is split into one <span> per token."""
    body = re.sub(r"<(style|script)\b.*?</\1>", "", html, flags=re.DOTALL)
    return unescape(re.sub(r"<[^>]+>", "", body))


def _image_sources(html: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)


def test_reader_view_hides_code_and_full_view_shows_it(executed):
    written = render_notebook(executed)
    assert written == {"reader": str(executed.with_name("latency.html")),
                       "full": str(executed.with_name("latency.full.html"))}
    reader_html = Path(written["reader"]).read_text(encoding="utf-8")
    full_html = Path(written["full"]).read_text(encoding="utf-8")
    for html in (reader_html, full_html):
        assert "<table" in html  # the DataFrame, rendered as its HTML table
        text = _visible_text(html)
        assert PROSE in text
        assert "ttft_ms" in text and "13.75" in text
    full, reader = _visible_text(full_html), _visible_text(reader_html)
    assert CODE_MARKER in full and "fig, ax = plt.subplots(figsize=(3, 2))" in full
    assert "distinctive_code_marker_ms" not in reader and "plt.subplots" not in reader
    assert "params_path" not in reader  # papermill's parameter cells are code too


def test_images_are_embedded_as_png_data_uris(executed):
    written = render_notebook(executed)
    for view, path in written.items():
        sources = _image_sources(Path(path).read_text(encoding="utf-8"))
        # The displayed chart and the markdown image of the chart file on disk.
        assert len(sources) == 2, (view, [s[:40] for s in sources])
        for src in sources:
            assert src.startswith("data:image/png;base64,"), (view, src[:80])
            assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)


def test_nothing_is_fetched_from_the_network(executed):
    for path in render_notebook(executed).values():
        html = Path(path).read_text(encoding="utf-8")
        assert not re.search(r"<script[^>]*\ssrc=", html), "a script is loaded from elsewhere"
        assert not re.search(r"""<link[^>]*href=["']?(https?:)?//""", html), "a stylesheet is loaded from elsewhere"
        assert not re.search(r"""import\(\s*["'](https?:)?//""", html), "a module is imported from elsewhere"
        assert "mathjax" not in html.lower() and "require.js" not in html


def test_links_are_relative_and_point_at_what_render_run_wrote(executed):
    run = executed.parents[1]
    rendered = render_run(run)
    assert list(rendered) == ["latency"]
    assert rendered["latency"]["notebook_html"] == {"reader": "notebooks/latency.html",
                                                    "full": "notebooks/latency.full.html"}
    assert rendered["latency"]["notebook_html_seconds"] > 0
    links = notebook_links(run)
    assert links == [("latency", "notebooks/latency.html", "notebooks/latency.full.html")]
    for _, reader, full in links:
        assert (run / reader).is_file() and (run / full).is_file()


def test_missing_notebook_is_an_error_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.ipynb"))):
        render_notebook(tmp_path / "nope.ipynb")
    assert render_run(tmp_path) == {}


@pytest.fixture
def stub_stage(tmp_path, monkeypatch):
    """A run directory and a stage notebook directory for runner.execute_stage; returns (run_dir, study, write)."""
    notebooks = tmp_path / "stage-notebooks"
    notebooks.mkdir()
    monkeypatch.setenv("STUDYKIT_NOTEBOOKS", str(notebooks))
    run = tmp_path / "run"
    RunLayout(run).make_dirs()

    def write(stage: str, *sources: str) -> None:
        nbformat.write(_notebook(*sources), notebooks / f"{stage}.ipynb")

    return run, load_study(DEFAULT_PARAMS), write


def test_a_failed_stage_still_gets_its_notebook_rendered(stub_stage):
    run, study, write = stub_stage
    write("latency", CHART_CELL, "raise RuntimeError('stub failure in the latency cell')")
    rec = runner.execute_stage("latency", run, study, log=lambda *_: None)
    assert rec["status"] == "failed" and "stub failure in the latency cell" in rec["error"]
    assert "notebook_html_error" not in rec
    assert rec["notebook_html"] == {"reader": "notebooks/latency.html", "full": "notebooks/latency.full.html"}
    reader = (run / rec["notebook_html"]["reader"]).read_text(encoding="utf-8")
    assert "stub failure in the latency cell" in reader  # the traceback is an output, shown to the reader
    assert all(s.startswith("data:image/png;base64,") for s in _image_sources(reader)) and _image_sources(reader)


def test_a_rendering_failure_is_recorded_and_does_not_fail_the_stage(stub_stage):
    run, study, write = stub_stage
    write("deploy", "x_ms = 1.0")
    blocked = RunLayout(run).notebooks / "deploy.html"
    blocked.mkdir()  # the reader view cannot be written over a directory: a real write failure
    lines = []
    rec = runner.execute_stage("deploy", run, study, log=lines.append)
    # The stub writes no results, so the stage fails for that reason alone, not for the rendering.
    assert rec["error"] == "the notebook finished without writing deploy.json"
    assert "notebook_html" not in rec
    assert "deploy.html" in rec["notebook_html_error"]
    assert any("notebook HTML not written" in line for line in lines)


def test_studykit_report_rebuilds_every_notebook_and_records_it(tmp_path, executed):
    run = tmp_path / "run"
    golden_copy("golden", run)
    (run / "notebooks").mkdir(exist_ok=True)
    shutil.copy(executed, run / "notebooks" / "latency.ipynb")
    state = read_json(run / "run.json")
    state["stages"]["latency"]["notebook_html_error"] = "stale error from an earlier render"
    write_json(run / "run.json", state)

    code, _ = runner.report_only(run, log=lambda *_: None)
    assert code == 0, read_json(run / "run.json")["stages"]["report"]
    stages = read_json(run / "run.json")["stages"]
    assert "notebook_html_error" not in stages["latency"]
    assert stages["latency"]["notebook_html"]["reader"] == "notebooks/latency.html"
    assert stages["report"]["notebook_html"]["full"] == "notebooks/report.full.html"
    for stage in ("latency", "report"):
        assert (run / "notebooks" / f"{stage}.html").is_file() and (run / "notebooks" / f"{stage}.full.html").is_file()
    assert [link[0] for link in notebook_links(run)] == ["latency", "report"]
