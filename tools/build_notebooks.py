"""Build notebooks/<stage>.ipynb from notebooks/src/<stage>.py with jupytext (percent format).

The sources are jupytext's percent format: `# %%` starts a code cell, `# %% [markdown]` a Markdown cell and
`# %% tags=["parameters"]` papermill's parameters cell. Notebooks are data: edit the .py source, run this, commit
both; a test checks that every committed .ipynb is exactly what this builds.
Usage: python tools/build_notebooks.py [STAGE ...]   (default: every source)
"""

import io
import sys
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "notebooks" / "src"
KERNEL = {"name": "studykit", "display_name": "Python (studykit)", "language": "python"}


def build(src: Path):
    nb = jupytext.read(src, fmt="py:percent")
    # Only the kernel goes into the notebook: jupytext's own metadata would pair the .ipynb with its source, and
    # Jupyter would then write a run_dir set by hand back into notebooks/src.
    nb.metadata = {"kernelspec": KERNEL, "language_info": {"name": "python"}}
    # jupytext draws random cell ids; numbered ones keep a rebuild of an unchanged source byte-identical.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{src.stem}-{i}"
    return nb


def text(src: Path) -> str:
    """The .ipynb file's text as built from `src` (jupytext.write, which ends the file with a newline)."""
    out = io.StringIO()
    jupytext.write(build(src), out, fmt="ipynb")
    return out.getvalue()


def main(stages):
    sources = [SRC / f"{s}.py" for s in stages] if stages else sorted(SRC.glob("*.py"))
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        known = ", ".join(p.stem for p in sorted(SRC.glob("*.py")))
        sys.exit(f"no notebook source {', '.join(missing)}; the sources are: {known}")
    for src in sources:
        out = ROOT / "notebooks" / f"{src.stem}.ipynb"
        out.write_text(text(src), encoding="utf-8")
        print(out)


if __name__ == "__main__":
    main(sys.argv[1:])
