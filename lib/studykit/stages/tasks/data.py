"""Where the stage's tasks come from, and the checks that stop it before any model loads.

A task is either one of the kit's JSONL tasks (a YAML beside its data file, read through lm-eval's
`custom_dataset` hook) or a task lm-eval ships, with its dataset read from a local directory that
`studykit data fetch` filled (tasks on the hub are rewritten to read that directory: no hub access at run time).
"""

from __future__ import annotations

import json
from pathlib import Path

from studykit import PACKAGE_DIR
from typing import Any

import yaml

KIT_TASKS_DIR = PACKAGE_DIR / "data" / "tasks"
OUTPUT_TYPES = ("multiple_choice", "generate_until")


class TaskInputError(ValueError):
    """Bad task input: the message names the file, the line and the value."""


class _TaskYamlLoader(yaml.SafeLoader):
    """lm-eval YAML uses `!function module.name`; the kit only needs to see that a function is named."""


_TaskYamlLoader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")


def read_task_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskYamlLoader)
    except (OSError, yaml.YAMLError) as err:
        raise TaskInputError(f"{path}: cannot read task YAML: {err}") from None
    if not isinstance(data, dict):
        raise TaskInputError(f"{path}: a task YAML is a mapping, got {type(data).__name__}")
    return data


def _item_error(path: Path, line: int, msg: str) -> TaskInputError:
    return TaskInputError(f"{path}, line {line}: {msg}")


def _check_item(item: Any, path: Path, line: int, output_type: str | None) -> str:
    """Validate one item; returns its output type (given, or told by its keys)."""
    if not isinstance(item, dict):
        raise _item_error(path, line, f"an item is a JSON object, got {type(item).__name__}: {item!r:.80}")
    kind = output_type or ("multiple_choice" if "choices" in item else "generate_until")
    if not isinstance(item.get("id"), str) or not item["id"]:
        raise _item_error(path, line, f"'id' must be a non-empty string, got {item.get('id')!r}")
    if kind == "multiple_choice":
        for key in ("question", "choices", "answer"):
            if key not in item:
                raise _item_error(path, line, f"item {item['id']!r} has no {key!r} (a multiple-choice item needs "
                                              "question, choices, answer)")
        if not isinstance(item["question"], str) or not item["question"]:
            raise _item_error(path, line, f"item {item['id']!r}: 'question' must be a non-empty string, "
                                          f"got {item['question']!r}")
        choices = item["choices"]
        if (not isinstance(choices, list) or len(choices) < 2
                or not all(isinstance(c, str) and c.strip() for c in choices)):
            raise _item_error(path, line, f"item {item['id']!r}: 'choices' must be a list of at least 2 non-empty "
                                          f"strings, got {choices!r}")
        if len(set(choices)) != len(choices):
            raise _item_error(path, line, f"item {item['id']!r}: 'choices' repeat a choice: {choices!r}")
        answer = item["answer"]
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise _item_error(path, line, f"item {item['id']!r}: answer key {answer!r} is outside the choices; "
                                          f"allowed: an index 0..{len(choices) - 1} into {choices!r}")
    elif kind == "generate_until":
        for key in ("prompt", "answer"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise _item_error(path, line, f"item {item['id']!r}: {key!r} must be a non-empty string, "
                                              f"got {item.get(key)!r} (a generative item needs prompt, answer)")
    else:
        raise _item_error(path, line, f"output type {kind!r} is not one the kit's JSONL tasks support; "
                                      f"allowed: {', '.join(OUTPUT_TYPES)}")
    return kind


def read_items(path: str | Path, output_type: str | None = None) -> list[dict]:
    """Every item of a JSONL task file, validated; the first bad line stops it, named by number."""
    path = Path(path)
    if not path.is_file():
        raise TaskInputError(f"task data file {str(path)!r} does not exist")
    items, ids = [], {}
    with open(path, encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except json.JSONDecodeError as err:
                raise _item_error(path, number, f"not valid JSON ({err.msg} at column {err.colno}): "
                                                f"{text.strip()!r:.120}") from None
            _check_item(item, path, number, output_type)
            if item["id"] in ids:
                raise _item_error(path, number, f"id {item['id']!r} already used on line {ids[item['id']]}")
            ids[item["id"]] = number
            items.append(item)
    if not items:
        raise TaskInputError(f"task data file {path} holds no items")
    return items


def jsonl_tasks(task_dirs: list[Path]) -> dict[str, Path]:
    """{task name: its YAML} for every JSONL-backed task (one with dataset_kwargs.data_files) in the dirs."""
    found: dict[str, Path] = {}
    for root in task_dirs:
        for path in sorted(Path(root).rglob("*.yaml")):
            cfg = read_task_yaml(path)
            if isinstance(cfg.get("task"), str) and isinstance(cfg.get("dataset_kwargs"), dict) \
                    and "data_files" in cfg["dataset_kwargs"]:
                found[cfg["task"]] = path
    return found


def check_jsonl_task(yaml_path: Path) -> dict[str, Any]:
    """Validate a JSONL task's data against its YAML; {"task", "yaml", "data_file", "items", "output_type"}."""
    cfg = read_task_yaml(yaml_path)
    output_type = cfg.get("output_type")
    if output_type not in OUTPUT_TYPES:
        raise TaskInputError(f"{yaml_path}: output_type {output_type!r} is not one the kit's JSONL tasks "
                             f"support; allowed: {', '.join(OUTPUT_TYPES)}")
    data_file = yaml_path.parent / str(cfg["dataset_kwargs"]["data_files"])
    items = read_items(data_file, output_type)
    return {"task": cfg["task"], "yaml": str(yaml_path), "data_file": str(data_file), "items": len(items),
            "output_type": output_type}


# --- the study's task list, resolved before any model loads ------------------------------------------------------


def local_dataset_dir(data_dir: str | Path, modelscope_id: str, revision: str) -> Path:
    """Where `studykit data fetch` puts one dataset: one directory per (id, revision), like the weights cache."""
    return Path(data_dir).expanduser().resolve() / modelscope_id / revision


def _user_task_dirs(include_path: list[str]) -> list[Path]:
    dirs = []
    for entry in include_path:
        path = Path(entry).expanduser()
        if not path.is_dir():
            raise TaskInputError(f"tasks.include_path: {entry!r} is not an existing directory of task YAML files")
        dirs.append(path.resolve())
    return dirs


def _leaves(index: dict, name: str, seen: set[str] | None = None) -> list[str]:
    """Leaf task names under a task, group or tag of lm-eval's index."""
    seen = seen if seen is not None else set()
    if name in seen:
        return []
    seen.add(name)
    entry = index.get(name)
    if entry is None:
        return []
    kind = entry.kind.name
    if kind in ("TASK", "PY_TASK"):
        return [name]
    if kind == "TAG":
        members = [n for n, e in index.items() if name in (e.tags or ()) and e.kind.name in ("TASK", "PY_TASK")]
        return sorted(members)
    out = []
    for sub in (entry.cfg or {}).get("task", []):
        sub_name = sub if isinstance(sub, str) else (sub.get("task") if isinstance(sub, dict) else None)
        if isinstance(sub_name, str):
            out += _leaves(index, sub_name, seen)
    return out


def resolve_tasks(p) -> dict[str, Any]:
    """Check every task name, data file and dataset directory of the study's tasks block.

    Returns {"task_dirs", "jsonl": {task: check}, "hub": {task: {"leaves", "overrides": {leaf: (yaml, dir)}}}}.
    Raises TaskInputError naming the bad value, before anything loads a model. lm-eval's task index (~15 s to
    build) is only consulted for names the kit's own tasks do not cover."""
    task_dirs = [KIT_TASKS_DIR, *_user_task_dirs(p.include_path)]
    jsonl = jsonl_tasks(task_dirs)
    checked = {name: check_jsonl_task(jsonl[name]) for name in p.tasks if name in jsonl}
    others = [name for name in p.tasks if name not in jsonl]
    hub: dict[str, Any] = {}
    if others:
        from lm_eval.tasks import TaskManager

        from studykit.stages.tasks.lmeval import lm_eval_version

        index = TaskManager(include_path=[str(d) for d in task_dirs]).task_index
        unknown = [n for n in others if n not in index]
        if unknown:
            import difflib

            hints = {n: difflib.get_close_matches(n, list(index), n=3) for n in unknown}
            raise TaskInputError(
                "tasks.tasks: lm-eval knows no task, group or tag named "
                + ", ".join(f"{n!r}" + (f" (close: {', '.join(hints[n])})" if hints[n] else "") for n in unknown)
                + f"; looked in lm-eval {lm_eval_version()}'s tasks and {', '.join(map(str, task_dirs))}")
        fetched = {d.dataset_path: d for d in p.datasets}
        for name in others:
            leaves = _leaves(index, name)
            overrides = {}
            for leaf in leaves:
                entry = index[leaf]
                cfg = entry.cfg or {}
                path = cfg.get("dataset_path")
                if leaf in jsonl or not path or cfg.get("custom_dataset"):
                    continue
                if path not in fetched:
                    raise TaskInputError(
                        f"tasks.tasks: {name!r} (task {leaf!r}) reads dataset {path!r} from the hub, and the stage "
                        f"does not download; add it to tasks.datasets (dataset_path {path!r}, modelscope_id, "
                        f"revision) and run `studykit data fetch PARAMS`")
                ds = fetched[path]
                local = local_dataset_dir(p.data_dir, ds.modelscope_id, ds.revision)
                if not local.is_dir():
                    raise TaskInputError(
                        f"tasks.datasets: {ds.modelscope_id}@{ds.revision} (for {path!r}) is not in {local}; "
                        f"run `studykit data fetch PARAMS` first")
                overrides[leaf] = (str(entry.yaml_path), str(local))
            hub[name] = {"leaves": leaves, "overrides": overrides}
    return {"task_dirs": [str(d) for d in task_dirs], "jsonl": checked, "hub": hub}


def write_task_dir(resolved: dict[str, Any], target: Path) -> Path:
    """The run's own copy of every task definition it uses, as lm-eval's one --include_path: the kit's and
    the study's task directories, plus one YAML per hub task pointing it at its local dataset directory."""
    import shutil

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for i, src in enumerate(resolved["task_dirs"]):
        shutil.copytree(src, target / f"{i:02d}-{Path(src).name}",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "README*"))
    local = target / "local-datasets"
    for info in resolved["hub"].values():
        for leaf, (yaml_path, dataset_dir) in info["overrides"].items():
            local.mkdir(exist_ok=True)
            (local / f"{leaf}.yaml").write_text(
                yaml.safe_dump({"include": yaml_path, "task": leaf, "dataset_path": dataset_dir},
                               allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target
