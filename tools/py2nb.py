"""Build notebooks/<stage>.ipynb from notebooks/src/<stage>.py (cells split on `# %%` lines).

`# %% [markdown]` starts a Markdown cell (lines lose their leading `# `); `# %% parameters` starts the
papermill parameters cell. Notebooks are data: edit the .py source, run this, commit both, no outputs.
Usage: python tools/py2nb.py [STAGE ...]   (default: every source)
"""

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "notebooks" / "src"
KERNEL = {"name": "studykit", "display_name": "Python (studykit)", "language": "python"}


def convert(src: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    kind, tags, lines = None, [], []

    def flush():
        text = "\n".join(lines).strip("\n")
        if kind is None and not text:
            return
        if kind == "markdown":
            body = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in text.splitlines())
            nb.cells.append(nbformat.v4.new_markdown_cell(body))
        else:
            cell = nbformat.v4.new_code_cell(text)
            if tags:
                cell.metadata["tags"] = list(tags)
            nb.cells.append(cell)

    for line in src.read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            flush()
            rest = line[4:].strip()
            kind = "markdown" if rest == "[markdown]" else "code"
            tags = ["parameters"] if rest == "parameters" else []
            lines = []
        else:
            lines.append(line)
    flush()
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{src.stem}-{i}"
    return nb


def main(stages):
    sources = [SRC / f"{s}.py" for s in stages] if stages else sorted(SRC.glob("*.py"))
    for src in sources:
        out = ROOT / "notebooks" / f"{src.stem}.ipynb"
        nbformat.write(convert(src), out)
        print(out)


if __name__ == "__main__":
    main(sys.argv[1:])
