"""Where the stage's tasks come from, and the checks that stop it before any model loads.

A task is one of:
- the kit's JSONL tasks (a YAML beside its data file, read through lm-eval's `custom_dataset` hook
  `utils.load_items`; the kit's item format, validated line by line);
- a task with local data in the form lm-eval documents (docs/new_task_guide.md, "Using Local Datasets"):
  `dataset_path: json` (or csv, parquet, arrow, text) with `dataset_kwargs: {data_files: ...}` as one path, a list
  of paths, or a split -> path(s) mapping. A bare path or a list is datasets' "train" split. A relative path is
  read from the task YAML's directory: lm-eval would read it from the directory `lm_eval` runs in, which under the
  kit is the kit's notebook directory, not the user's; the run's copy of the YAML names the absolute paths;
- a task lm-eval ships, with its dataset read from a local directory that `studykit data fetch` filled (tasks on
  the hub are rewritten to read that directory: no hub access at run time).
"""

from __future__ import annotations

import csv
import glob
import json
from pathlib import Path
from typing import Any

import yaml

from studykit import PACKAGE_DIR

KIT_TASKS_DIR = PACKAGE_DIR / "data" / "tasks"
OUTPUT_TYPES = ("multiple_choice", "generate_until")


class TaskInputError(ValueError):
    """Bad task input: the message names the file, the line and the value."""


KIT_HOOK = "!function utils.load_items"  # the kit's custom_dataset hook (data/tasks/utils.py)
# datasets' packaged builders for local files; the kit reads json and csv itself to name a bad row before any
# model loads, the others it checks for existence only
FILE_BUILDERS = ("json", "csv", "parquet", "arrow", "text")
TASK_SPLITS = ("test_split", "validation_split", "training_split", "fewshot_split")


class FunctionRef(str):
    """A `!function module.name` of a task YAML, kept as its text so the run's copy can write it back."""


class _TaskYamlLoader(yaml.SafeLoader):
    """lm-eval YAML uses `!function module.name`; the kit only needs to see that a function is named."""


class _TaskYamlDumper(yaml.SafeDumper):
    pass


_TaskYamlLoader.add_constructor("!function",
                                lambda loader, node: FunctionRef(f"!function {loader.construct_scalar(node)}"))
_TaskYamlDumper.add_representer(
    FunctionRef, lambda dumper, ref: dumper.represent_scalar("!function", ref.removeprefix("!function ")))


def read_task_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskYamlLoader)
    except (OSError, yaml.YAMLError) as err:
        raise TaskInputError(f"{path}: cannot read task YAML: {err}") from None
    if not isinstance(data, dict):
        raise TaskInputError(f"{path}: a task YAML is a mapping, got {type(data).__name__}")
    return data


def task_config(path: Path, _seen: frozenset[Path] = frozenset()) -> dict[str, Any]:
    """A task YAML with its `include`s merged as lm-eval merges them (an include path is relative to the YAML
    that names it; the including file's own keys win)."""
    path = Path(path).resolve()
    if path in _seen:
        raise TaskInputError(f"{path}: include cycle through {sorted(map(str, _seen))}")
    cfg = read_task_yaml(path)
    includes = cfg.pop("include", None)
    if includes is None:
        return cfg
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        inc_path = Path(inc) if Path(inc).is_absolute() else path.parent / inc
        if not inc_path.is_file():
            return {**merged, **cfg}  # an include lm-eval resolves elsewhere (its own task tree): not local data
        base = task_config(inc_path, _seen | {path})
        base.pop("task_list", None)
        merged.update(base)
    return {**merged, **cfg}


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


def _is_local(cfg: dict[str, Any]) -> bool:
    kwargs = cfg.get("dataset_kwargs")
    return (isinstance(cfg.get("task"), str) and isinstance(kwargs, dict) and "data_files" in kwargs
            and (cfg.get("custom_dataset") == KIT_HOOK or cfg.get("dataset_path") in FILE_BUILDERS))


def local_tasks(task_dirs: list[Path]) -> dict[str, Path]:
    """{task name: its YAML} for every task in the dirs whose data are local files: the kit's hook, or a datasets
    file builder (json, csv, ...) with dataset_kwargs.data_files."""
    found: dict[str, Path] = {}
    for root in task_dirs:
        for path in sorted(Path(root).rglob("*.yaml")):
            cfg = task_config(path)
            if _is_local(cfg):
                found[cfg["task"]] = path
    return found


def data_file_splits(data_files: Any, where: str) -> tuple[str, dict[str, list[str]]]:
    """(form, {split: [paths as written]}) of a data_files value in the forms datasets accepts: one path, a list
    of paths (both are the 'train' split), or a split -> path or list mapping."""
    def paths(value: Any) -> list[str] | None:
        if isinstance(value, str) and value:
            return [value]
        if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
            return list(value)
        return None

    if isinstance(data_files, dict) and data_files:
        out = {str(split): paths(v) for split, v in data_files.items()}
        bad = {k: data_files[k] for k, v in out.items() if v is None}
        if not bad:
            return "splits", out  # type: ignore[return-value]
    elif paths(data_files) is not None:
        return ("path" if isinstance(data_files, str) else "list"), {"train": paths(data_files)}  # type: ignore
    raise TaskInputError(f"{where}: dataset_kwargs.data_files {data_files!r} is not a form lm-eval documents; "
                         "allowed: a path, a list of paths, or a mapping split -> path or list of paths "
                         "(e.g. {test: data/test.jsonl})")


def _resolve(pattern: str, yaml_dir: Path, where: str) -> list[Path]:
    path = Path(pattern).expanduser()
    full = path if path.is_absolute() else yaml_dir / path
    if any(ch in pattern for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(str(full), recursive=True))
        if not found:
            raise TaskInputError(f"{where}: data_files pattern {pattern!r} matches no file (looked for {full})")
        return found
    if not full.is_file():
        raise TaskInputError(f"task data file {str(full)!r} does not exist ({where}: data_files {pattern!r}"
                             + ("" if path.is_absolute() else "; a relative path is read from the task YAML's "
                                                              "directory") + ")")
    return [full]


def _count_rows(path: Path, builder: str, field: str | None) -> int | None:
    """Rows of a json/jsonl/csv file, read as datasets would; the first bad row is named. None: not read here."""
    if builder == "csv":
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh)
                rows = sum(1 for _ in reader)
                if not reader.fieldnames:
                    raise TaskInputError(f"{path}: a csv data file needs a header row, got an empty file")
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise TaskInputError(f"{path}: cannot read as csv: {err}") from None
        return rows
    if builder != "json":
        return None
    text = path.read_text(encoding="utf-8")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if whole is not None:
        rows = whole.get(field) if isinstance(whole, dict) and field else whole
        if isinstance(rows, dict) and not field:
            return 1  # one JSON object is one row (datasets reads a single object as one record)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise TaskInputError(f"{path}: a json data file is JSON lines, a list of objects or (with "
                                 f"dataset_kwargs.field) an object holding one; got {type(rows).__name__}")
        return len(rows)
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise _item_error(path, number, f"not valid JSON ({err.msg} at column {err.colno}): "
                                            f"{line.strip()!r:.120}") from None
        if not isinstance(row, dict):
            raise _item_error(path, number, f"a row is a JSON object, got {type(row).__name__}: {row!r:.80}")
        count += 1
    return count


def check_local_task(yaml_path: Path) -> dict[str, Any]:
    """Validate a local-data task against its YAML: {"task", "yaml", "form", "builder", "data_files": {split:
    [absolute paths]}, "rows" (json/csv: {split: n}), "output_type"}; the kit's own tasks also give "items"."""
    cfg = task_config(yaml_path)
    name, output_type, data_files = cfg["task"], cfg.get("output_type"), cfg["dataset_kwargs"]["data_files"]
    where = f"{yaml_path} (task {name!r})"
    if cfg.get("custom_dataset") == KIT_HOOK:
        if output_type not in OUTPUT_TYPES:
            raise TaskInputError(f"{yaml_path}: output_type {output_type!r} is not one the kit's JSONL tasks "
                                 f"support; allowed: {', '.join(OUTPUT_TYPES)}")
        if not isinstance(data_files, str):
            raise TaskInputError(f"{where}: the kit's hook {KIT_HOOK} reads one JSONL file beside the YAML, got "
                                 f"data_files {data_files!r}; for a list or a split mapping use lm-eval's own "
                                 "`dataset_path: json` instead of custom_dataset")
        data_file = yaml_path.parent / data_files
        items = read_items(data_file, output_type)
        return {"task": name, "yaml": str(yaml_path), "form": "kit", "builder": "studykit jsonl",
                "data_files": {"test": [str(data_file)]}, "rows": {"test": len(items)}, "items": len(items),
                "output_type": output_type}
    form, splits = data_file_splits(data_files, where)
    resolved = {split: [str(p) for pattern in pats for p in _resolve(pattern, yaml_path.parent, where)]
                for split, pats in splits.items()}
    for key in TASK_SPLITS:
        split = cfg.get(key)
        if split is not None and split not in resolved:
            raise TaskInputError(
                f"{where}: {key} {split!r} is not a split of its data_files, which give {sorted(resolved)}"
                + (" (a bare path or a list is datasets' 'train' split: write data_files as {"
                   f"{split}: FILE}} or set {key}: train)" if form != "splits" else ""))
    builder = cfg["dataset_path"]
    rows = {}
    for split, files in resolved.items():
        counts = [_count_rows(Path(f), builder, cfg["dataset_kwargs"].get("field")) for f in files]
        if None not in counts:
            if sum(counts) == 0:  # type: ignore[arg-type]
                raise TaskInputError(f"{where}: split {split!r} ({', '.join(files)}) holds no rows")
            rows[split] = sum(counts)  # type: ignore[arg-type]
    return {"task": name, "yaml": str(yaml_path), "form": form, "builder": builder, "data_files": resolved,
            "rows": rows, "output_type": output_type}


def _absolute_data_files(data_files: Any, yaml_dir: Path) -> Any:
    """data_files in the form the user wrote, every relative path made absolute against the YAML's directory."""
    def fix(p: str) -> str:
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else yaml_dir / q)

    if isinstance(data_files, str):
        return fix(data_files)
    if isinstance(data_files, list):
        return [fix(p) for p in data_files]
    return {split: _absolute_data_files(v, yaml_dir) for split, v in data_files.items()}


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

    Returns {"task_dirs", "local": {task: check}, "hub": {task: {"leaves", "overrides": {leaf: (yaml, dir)}}}}.
    Raises TaskInputError naming the bad value, before anything loads a model. lm-eval's task index (~15 s to
    build) is only consulted for names the kit's own tasks do not cover."""
    task_dirs = [KIT_TASKS_DIR, *_user_task_dirs(p.include_path)]
    local = local_tasks(task_dirs)
    checked = {name: check_local_task(local[name]) for name in p.tasks if name in local}
    others = [name for name in p.tasks if name not in local]
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
                if leaf in local:
                    checked.setdefault(leaf, check_local_task(local[leaf]))
                    continue
                if not path or cfg.get("custom_dataset"):
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
    return {"task_dirs": [str(d) for d in task_dirs], "local": checked, "hub": hub}


def write_task_dir(resolved: dict[str, Any], target: Path) -> Path:
    """The run's own copy of every task definition it uses, as lm-eval's one --include_path: the kit's and
    the study's task directories (a local-data task's YAML rewritten to name its data files by absolute path,
    the files lm-eval then reads being the ones checked), plus one YAML per hub task pointing it at its local
    dataset directory."""
    import shutil

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    copies = {}
    for i, src in enumerate(resolved["task_dirs"]):
        copies[Path(src)] = target / f"{i:02d}-{Path(src).name}"
        shutil.copytree(src, copies[Path(src)], ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "README*"))
    for info in resolved["local"].values():
        if info["form"] == "kit":
            continue  # the hook reads the file beside the YAML, copied with it
        src_yaml = Path(info["yaml"])
        src_dir = next(d for d in copies if src_yaml.is_relative_to(d))
        copy = copies[src_dir] / src_yaml.relative_to(src_dir)
        cfg = read_task_yaml(copy)
        kwargs = dict(task_config(src_yaml)["dataset_kwargs"])
        kwargs["data_files"] = _absolute_data_files(kwargs["data_files"], src_yaml.parent)
        cfg["dataset_kwargs"] = kwargs
        copy.write_text(f"# copied by studykit from {src_yaml}; data_files made absolute (a relative path is read "
                        "from the task YAML's directory)\n"
                        + yaml.dump(cfg, Dumper=_TaskYamlDumper, allow_unicode=True, sort_keys=False),
                        encoding="utf-8")
    local = target / "local-datasets"
    for info in resolved["hub"].values():
        for leaf, (yaml_path, dataset_dir) in info["overrides"].items():
            local.mkdir(exist_ok=True)
            (local / f"{leaf}.yaml").write_text(
                yaml.safe_dump({"include": yaml_path, "task": leaf, "dataset_path": dataset_dir},
                               allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target
