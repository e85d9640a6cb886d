"""The shape of lib/studykit: no import cycle (top-level and function-local imports alike, package __init__s
included), and every registered stage is one package with the same parts, found through the registry."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from studykit import stages
from studykit.stages import STAGE_ORDER

LIB = Path(__file__).resolve().parents[1] / "lib"
PARTS = ("params", "result", "stage", "checks", "metrics", "section")


def module_files() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in (LIB / "studykit").rglob("*.py"):
        parts = list(path.relative_to(LIB).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        if "data" in parts:  # checkpoint code shipped as data (trust_remote_code), not part of the kit
            continue
        out[".".join(parts)] = (path, is_pkg)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> studykit modules it imports anywhere in its body; importing a.b.c also runs a and a.b."""
    mods = module_files()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, (path, is_pkg) in mods.items():
        package = mod if is_pkg else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                if not name.startswith("studykit"):
                    continue
                target = owner(name)
                if target and target != mod:
                    graph[mod].add(target)
                    parts = target.split(".")
                    for i in range(1, len(parts)):  # the packages on the way are imported too
                        parent = ".".join(parts[:i])
                        if parent in mods and not mod.startswith(parent + "."):
                            graph[mod].add(parent)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_function_local_imports_count(tmp_path, monkeypatch):
    """A cycle closed by an import inside a function is still a cycle."""
    pkg = tmp_path / "studykit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from studykit.b import g\n")
    (pkg / "b.py").write_text("def g():\n    from studykit import a\n")
    monkeypatch.setattr(__import__(__name__), "LIB", tmp_path)
    assert cycles(import_graph()) == [["studykit.a", "studykit.b"]]


def test_lib_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles in lib/studykit:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_every_stage_is_one_package_with_every_part(stage):
    folder = LIB / "studykit" / "stages" / stage
    missing = [part for part in PARTS if not (folder / f"{part}.py").is_file()]
    assert not missing, f"stages/{stage} lacks {missing}"
    assert stages.params_model(stage).__name__ == f"{stage.title()}Params"
    assert stages.result_model(stage).__name__ == f"{stage.title()}Result"
    stage_module = stages.module(stage, "stage")
    assert callable(stage_module.plan) and callable(stage_module.run)
    assert callable(stages.module(stage, "checks").checks)
    assert isinstance(stages.module(stage, "section").SECTIONS, dict)
    assert (LIB.parent / "notebooks" / f"{stage}.ipynb").is_file()


def test_nothing_imports_every_stage():
    """The registry loads stages by name; no module outside a stage's package imports two stages' code."""
    graph = import_graph()
    for mod, targets in graph.items():
        if mod.startswith("studykit.stages."):
            continue
        touched = {t.split(".")[2] for t in targets if t.startswith("studykit.stages.") and t.count(".") >= 2}
        touched &= set(STAGE_ORDER)
        assert len(touched) <= 1, f"{mod} imports the stages {sorted(touched)} directly; use studykit.stages"


def test_an_unknown_stage_is_named():
    with pytest.raises(KeyError, match="no stage 'nope'; known: deploy"):
        stages.module("nope", "stage")
    assert importlib.import_module("studykit.stages").STAGE_ORDER == STAGE_ORDER
