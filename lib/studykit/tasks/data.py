"""Where the stage's tasks come from, and the checks that stop it before any model loads.

A task is either one of the kit's JSONL tasks (a YAML beside its data file, read through lm-eval's
`custom_dataset` hook) or a task lm-eval ships, with its dataset read from a local directory that
`studykit data fetch` filled (tasks on the hub are rewritten to read that directory: no hub access at run time).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

KIT_TASKS_DIR = Path(__file__).resolve().parents[1] / "data" / "tasks"
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
