"""Executed stage notebooks as self-contained HTML: a reader view (inputs hidden) and a full view.

    notebooks/<stage>.ipynb -> notebooks/<stage>.html       reader view: markdown and outputs only
                            -> notebooks/<stage>.full.html  full view: code cells too

The files stand alone offline: nbconvert's JupyterLab template inlines its CSS and embeds image/png outputs as
data URIs, and the template below drops every script the lab template would fetch from a CDN (require.js,
MathJax, mermaid, the widget manager). Without MathJax, TeX in markdown shows as its source text; the stage
notebooks use none, and a dollar sign in prose then stays a dollar sign.
"""

from __future__ import annotations

import time
from pathlib import Path

from studykit.stages import STAGE_ORDER
from studykit.evidence.rundir import RunLayout, write_text

READER_SUFFIX = ".html"
FULL_SUFFIX = ".full.html"
# The keys render_stage may put in a stage's run.json record; a re-render replaces all of them.
RECORD_FIELDS = ("notebook_html", "notebook_html_seconds", "notebook_html_error")

# The lab template minus its network fetches. require.js only serves widgets, which no stage notebook emits.
OFFLINE_TEMPLATE_NAME = "studykit_offline.html.j2"
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def html_paths(ipynb_path: str | Path) -> dict[str, Path]:
    """Where the two views of an executed notebook go: beside it, named after it."""
    ipynb_path = Path(ipynb_path)
    stem = ipynb_path.with_suffix("")
    return {"reader": stem.with_name(stem.name + READER_SUFFIX), "full": stem.with_name(stem.name + FULL_SUFFIX)}


def _exporter(hide_inputs: bool):
    import jinja2
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab", template_file=OFFLINE_TEMPLATE_NAME,
        extra_loaders=[jinja2.DictLoader({OFFLINE_TEMPLATE_NAME: OFFLINE_TEMPLATE})],
        theme="light",
        # Markdown cells that point at a chart file get it inlined too, so the HTML travels alone.
        embed_images=True,
        exclude_input=hide_inputs, exclude_input_prompt=hide_inputs, exclude_output_prompt=hide_inputs,
    )


def render_notebook(ipynb_path: str | Path) -> dict[str, str]:
    """Write the reader and full HTML views of one executed notebook; returns {"reader": path, "full": path}.

    Raises on a missing or unreadable notebook: callers that must not fail (the runner) catch it."""
    import nbformat

    ipynb_path = Path(ipynb_path)
    if not ipynb_path.is_file():
        raise FileNotFoundError(f"no executed notebook at {ipynb_path}")
    nb = nbformat.read(ipynb_path, as_version=4)
    # embed_images resolves markdown image paths against the notebook's directory.
    resources = {"metadata": {"name": ipynb_path.stem, "path": str(ipynb_path.parent)}}
    written = {}
    for view, path in html_paths(ipynb_path).items():
        body, _ = _exporter(hide_inputs=view == "reader").from_notebook_node(nb, resources=dict(resources))
        written[view] = str(write_text(path, body))
    return written


def render_stage(run_dir: str | Path, stage: str) -> dict:
    """Render one stage's executed notebook; never raises. Returns the fields for the stage's run.json record:
    `notebook_html` (relative paths) and `notebook_html_seconds`, or `notebook_html_error`."""
    root = Path(run_dir)
    t0 = time.monotonic()
    try:
        written = render_notebook(RunLayout(root).notebooks / f"{stage}.ipynb")
    except Exception as err:  # noqa: BLE001 - a rendering failure is recorded, never fails the stage
        return {"notebook_html_error": f"{type(err).__name__}: {err}"}
    return {"notebook_html": {view: Path(p).relative_to(root).as_posix() for view, p in written.items()},
            "notebook_html_seconds": round(time.monotonic() - t0, 3)}


def executed_stages(run_dir: str | Path) -> list[str]:
    """Stages, in study order, whose executed notebook is in the run directory (archived attempts excluded)."""
    notebooks = RunLayout(run_dir).notebooks
    return [s for s in STAGE_ORDER if (notebooks / f"{s}.ipynb").is_file()]


def render_run(run_dir: str | Path, stages: list[str] | None = None) -> dict[str, dict]:
    """Render every executed stage notebook of a run (or the named ones); {stage: render_stage fields}."""
    wanted = executed_stages(run_dir) if stages is None else stages
    return {stage: render_stage(run_dir, stage) for stage in wanted}


def notebook_links(run_dir: str | Path) -> list[tuple[str, str, str]]:
    """(stage, reader href, full href) for each executed stage notebook, hrefs relative to the run directory.

    Listed by executed notebook, not by HTML file: the report stage builds report.html while its own notebook
    is still running, and the runner renders that notebook right after."""
    out = []
    for stage in executed_stages(run_dir):
        views = html_paths(Path("notebooks") / f"{stage}.ipynb")
        out.append((stage, views["reader"].as_posix(), views["full"].as_posix()))
    return out
