"""Stage notebooks are data: committed without outputs, built by jupytext from notebooks/src/ (percent format)
byte for byte, and their parameters cell is exactly run_dir, params_path + the stage's params block (names and
defaults), each line with a `# help:`."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from studykit.params import Study
from studykit.stages import STAGE_ORDER

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def stage_defaults(stage: str) -> dict:
    field = Study.model_fields[stage]
    block = field.default_factory() if field.default_factory else field.default
    return json.loads(block.model_dump_json())


def parameters_cell(nb) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"want exactly one cell tagged 'parameters', found {len(cells)}"
    return cells[0]


def test_every_stage_has_a_notebook_and_a_source():
    missing = [s for s in STAGE_ORDER if not (ROOT / "notebooks" / f"{s}.ipynb").is_file()]
    missing_src = [s for s in STAGE_ORDER if not (ROOT / "notebooks" / "src" / f"{s}.py").is_file()]
    assert not missing and not missing_src, f"notebooks missing: {missing}; sources missing: {missing_src}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts (run tools/build_notebooks.py)"
    assert nb.metadata.get("kernelspec", {}).get("name") == "studykit"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_built_from_its_source(path):
    spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "tools" / "build_notebooks.py")
    build_notebooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_notebooks)
    src = ROOT / "notebooks" / "src" / f"{path.stem}.py"
    assert src.is_file(), f"{path.name} has no source {src}"
    assert path.read_text(encoding="utf-8") == build_notebooks.text(src), \
        f"{path.name} differs from what jupytext builds from {src.name}: run " \
        f"`.venv/bin/python tools/build_notebooks.py {path.stem}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_parameters_are_the_stage_block(path):
    stage = path.stem
    assert stage in STAGE_ORDER, f"{path.name} is not a stage notebook ({', '.join(STAGE_ORDER)})"
    params = pm.inspect_notebook(str(path))
    expected = {"run_dir": "", "params_path": "", **stage_defaults(stage)}
    assert list(params) == list(expected), f"{path.name}: parameter names differ from the {stage} params block"
    for name, want in expected.items():
        got = ast.literal_eval(params[name]["default"])
        assert got == want, f"{path.name}: {name} defaults to {got!r}, the params block says {want!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_parameter_line_has_help(path):
    cell = parameters_cell(nbformat.read(path, as_version=4))
    lines = [line for line in cell.source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    bare = [line for line in lines if "# help:" not in line]
    assert not bare, f"{path.name}: parameter lines without '# help:': {bare}"
