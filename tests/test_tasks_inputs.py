"""The tasks stage's inputs without a model: bad input stops it before any model loads, the shipped items are what
the generator makes, the lm-eval command lines, a hub task read from its fetched directory. Pairing, checks and
`run` are in tests/stages/test_tasks.py."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from studykit.params import load_study
from studykit.stages.tasks.params import TasksParams
from studykit.stages.tasks import defaults
from studykit.stages.tasks.data import (
    KIT_TASKS_DIR,
    TaskInputError,
    read_items,
    resolve_tasks,
    write_task_dir,
)
from studykit.stages.tasks import stage as tasks_stage

ROOT = Path(__file__).resolve().parents[1]


# --- the shipped tasks -------------------------------------------------------------------------------------------


def test_committed_items_are_the_generators_output():
    for path, items in defaults.build().items():
        assert path.read_text(encoding="utf-8") == defaults.render(items), \
            f"{path.name} differs from the generator: run `python -m studykit.tasks.defaults`"


@pytest.mark.parametrize("path,output_type", [(defaults.MC_FILE, "multiple_choice"),
                                              (defaults.GEN_FILE, "generate_until")])
def test_shipped_tasks_have_100_items_in_both_languages(path, output_type):
    items = read_items(path, output_type)
    assert len(items) >= 100
    assert {i["lang"] for i in items} == {"en", "zh"}
    assert min(sum(i["lang"] == lang for i in items) for lang in ("en", "zh")) >= 40


def test_multiple_choice_answers_are_right_by_construction():
    # spot-check the generator's certainty: the keyed choice of every sum is the sum
    for item in read_items(defaults.MC_FILE):
        if item["kind"] == "addition" and item["lang"] == "en":
            a, b = (int(x) for x in item["question"].split("What is ")[1].split("?")[0].split(" + "))
            assert item["choices"][item["answer"]].strip() == str(a + b)


@pytest.mark.parametrize("path,key", [(defaults.MC_FILE, "question"), (defaults.GEN_FILE, "prompt")])
def test_shipped_prompts_are_distinct(path, key):
    prompts = [i[key] for i in read_items(path)]
    assert len(set(prompts)) == len(prompts)


def test_chinese_numerals():
    assert [defaults.number_zh(n) for n in (7, 10, 11, 20, 63, 99)] == ["七", "十", "十一", "二十", "六十三", "九十九"]
    assert defaults.number_en(62) == "sixty-two"


# --- bad input ---------------------------------------------------------------------------------------------------


def _task_dir(tmp_path: Path, lines: list[str], name: str = "my_mc") -> Path:
    d = tmp_path / "mytasks"
    d.mkdir()
    shutil.copy(KIT_TASKS_DIR / "utils.py", d / "utils.py")
    yaml_text = (KIT_TASKS_DIR / "studykit_mc.yaml").read_text(encoding="utf-8")
    (d / f"{name}.yaml").write_text(yaml_text.replace("task: studykit_mc", f"task: {name}")
                                    .replace("data_files: studykit_mc.jsonl", f"data_files: {name}.jsonl"),
                                    encoding="utf-8")
    (d / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return d


GOOD = json.dumps({"id": "a", "question": "Q?", "choices": [" x", " y"], "answer": 0})


def test_malformed_jsonl_line_names_file_line_and_value(tmp_path):
    d = _task_dir(tmp_path, [GOOD, json.dumps({"id": "b", "question": "Q?", "choices": [" x", " y"], "answer": 1}),
                             '{"id": "c", "question": "Q?", "choices": [" x"'])
    with pytest.raises(TaskInputError) as err:
        resolve_tasks(TasksParams(tasks=["my_mc"], include_path=[str(d)]))
    msg = str(err.value)
    assert f"{d / 'my_mc.jsonl'}, line 3" in msg and "not valid JSON" in msg and '"id": "c"' in msg


def test_answer_key_outside_the_choices(tmp_path):
    d = _task_dir(tmp_path, [GOOD, json.dumps({"id": "b", "question": "Q?", "choices": [" x", " y"], "answer": 2})])
    with pytest.raises(TaskInputError, match=r"line 2: item 'b': answer key 2 is outside the choices; "
                                             r"allowed: an index 0\.\.1"):
        resolve_tasks(TasksParams(tasks=["my_mc"], include_path=[str(d)]))


def test_missing_data_file(tmp_path):
    d = _task_dir(tmp_path, [GOOD])
    (d / "my_mc.jsonl").unlink()
    with pytest.raises(TaskInputError, match=r"task data file '.*my_mc\.jsonl' does not exist"):
        resolve_tasks(TasksParams(tasks=["my_mc"], include_path=[str(d)]))


def test_missing_include_path(tmp_path):
    with pytest.raises(TaskInputError, match=r"tasks.include_path: '.*nowhere' is not an existing directory"):
        resolve_tasks(TasksParams(tasks=["studykit_mc"], include_path=[str(tmp_path / "nowhere")]))


def test_unknown_task_name_is_named_with_close_matches():
    with pytest.raises(TaskInputError) as err:
        resolve_tasks(TasksParams(tasks=["studykit_mc", "gsm8kk"]))
    msg = str(err.value)
    assert "lm-eval knows no task, group or tag named 'gsm8kk'" in msg and "gsm8k" in msg


def test_hub_task_without_a_fetched_dataset_is_refused():
    with pytest.raises(TaskInputError, match=r"'gsm8k' \(task 'gsm8k'\) reads dataset 'openai/gsm8k' from the hub"):
        resolve_tasks(TasksParams(tasks=["gsm8k"]))


def test_metrics_and_baselines_must_name_listed_tasks_in_params():
    with pytest.raises(ValueError, match=r"name \['gsm8k'\], which are not in tasks \['studykit_mc'\]"):
        TasksParams(tasks=["studykit_mc"], baselines={"gsm8k": 0.5})
    with pytest.raises(ValueError, match=r"metrics are 'metric,filter'.*'studykit_mc': 'acc'"):
        TasksParams(metrics={"studykit_mc": "acc"})


def test_baseline_outside_0_1_is_a_params_error():
    with pytest.raises(ValueError, match="baseline scores must be within 0..1"):
        TasksParams(baselines={"studykit_mc": 45.0})


def test_bad_input_stops_the_stage_before_any_model_loads(tmp_path):
    """The stage fails naming the bad line, results/tasks.json says so, and the model was never resolved."""
    from conftest import tiny_study
    from studykit.runner.context import StageContext, StageFailed, open_stage

    class NoModel(StageContext):
        @property
        def model_dir(self):
            raise AssertionError("the model was resolved before the inputs were checked")

    d = _task_dir(tmp_path, [GOOD, '{"id": "x", "question": "Q?", "choices": [" x", " y"], "answer": "y"}'])
    opened = open_stage("tasks", str(tmp_path / "run"), str(tiny_study(tmp_path)))
    ctx = NoModel("tasks", opened.run_dir, opened.study)
    p = TasksParams(tasks=["my_mc"], include_path=[str(d)])
    with pytest.raises(StageFailed, match="line 2: item 'x': answer key 'y' is outside the choices"):
        tasks_stage.run(ctx, p)
    doc = json.loads((tmp_path / "run" / "results" / "tasks.json").read_text())
    assert doc["status"] == "failed" and doc["error"].startswith("TaskInputError: ") and doc["params"]["tasks"] == ["my_mc"]


# --- the run's task directory and the command lines ---------------------------------------------------------------


def test_task_dir_is_a_self_contained_copy(tmp_path):
    resolved = resolve_tasks(TasksParams())
    target = write_task_dir(resolved, tmp_path / "taskdefs")
    copied = sorted(p.name for p in target.rglob("*") if p.is_file())
    assert copied == ["studykit_gen.jsonl", "studykit_gen.yaml", "studykit_mc.jsonl", "studykit_mc.yaml", "utils.py"]


def test_plan_runs_the_same_tasks_on_both_backends(tmp_path):
    study = load_study(ROOT / "params" / "smollm2-135m-cpu.yaml").model_copy(
        update={"tasks": TasksParams(limit=7, max_gen_toks=4)})
    steps = tasks_stage.plan(study, Path("/m/model"), tmp_path, 8123)
    assert [(s.label, s.kind) for s in steps] == [("lm-eval reference", "command"), ("tasks", "server"),
                                                 ("lm-eval vllm", "command")]
    ref, serve, cand = (s.argv for s in steps)
    assert ref[:4] == [sys.executable, "-m", "lm_eval", "run"]

    def opts(argv):
        return {a: argv[i + 1] for i, a in enumerate(argv) if a.startswith("--") and i + 1 < len(argv)
                and a not in ("--model_args", "--output_path", "--model")}

    assert opts(ref) | {"--device": None} == opts(cand) | {"--device": None}
    assert opts(ref)["--limit"] == "7" and opts(ref)["--gen_kwargs"] == "max_gen_toks=4"
    assert ref[ref.index("--model") + 1] == "hf" and cand[cand.index("--model") + 1] == "local-completions"
    ref_args = ref[ref.index("--model_args") + 1]
    cand_args = cand[cand.index("--model_args") + 1]
    assert "pretrained=/m/model" in ref_args and "dtype=float32" in ref_args and "add_bos_token" not in ref_args
    assert "base_url=http://127.0.0.1:8123/v1/completions" in cand_args and "tokenizer=/m/model" in cand_args
    assert "add_bos_token=True" in cand_args and "tokenized_requests=True" in cand_args
    assert serve[serve.index("--port") + 1] == "8123"
    assert all(s.command for s in steps) and "HF_DATASETS_OFFLINE=1" in steps[0].command


# --- a hub task reads its fetched local directory ---------------------------------------------------------------


def _fake_gsm8k(root: Path) -> None:
    """A dataset directory laid out like the hub's openai/gsm8k (config 'main', parquet splits)."""
    import datasets

    (root / "main").mkdir(parents=True)
    rows = [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(8)]
    for split in ("train", "test"):
        datasets.Dataset.from_list(rows).to_parquet(str(root / "main" / f"{split}-00000-of-00001.parquet"))
    (root / "README.md").write_text("---\nconfigs:\n- config_name: main\n  data_files:\n"
                                    "  - split: train\n    path: main/train-*\n"
                                    "  - split: test\n    path: main/test-*\n---\n", encoding="utf-8")


def test_hub_task_is_pointed_at_its_local_dataset(tmp_path, monkeypatch):
    from studykit.stages.tasks.params import TaskDataset
    from studykit.stages.tasks.data import local_dataset_dir

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    data_dir = tmp_path / "datasets"
    p = TasksParams(tasks=["gsm8k"], data_dir=str(data_dir),
                    datasets=[TaskDataset(dataset_path="openai/gsm8k", modelscope_id="modelscope/gsm8k",
                                          revision="v1")])
    with pytest.raises(TaskInputError, match=r"modelscope/gsm8k@v1 \(for 'openai/gsm8k'\) is not in .*run "
                                             r"`studykit data fetch PARAMS` first"):
        resolve_tasks(p)
    local = local_dataset_dir(data_dir, "modelscope/gsm8k", "v1")
    _fake_gsm8k(local)
    resolved = resolve_tasks(p)
    assert resolved["hub"]["gsm8k"]["leaves"] == ["gsm8k"]
    target = write_task_dir(resolved, tmp_path / "taskdefs")
    from lm_eval.tasks import TaskManager

    task = TaskManager(include_path=str(target)).load_task_or_group(["gsm8k"])["gsm8k"]
    docs = list(task.eval_docs)
    assert len(docs) == 8 and docs[3]["question"] == "What is 3 + 3?"


# --- a researcher's own task with local data, in every form lm-eval's docs show -----------------------------------

DOC_TASK = """task: {name}
dataset_path: {builder}
dataset_name: null
dataset_kwargs:
  data_files: {data_files}
output_type: generate_until
test_split: {split}
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
metric_list:
  - metric: exact_match
"""
ROWS = [{"prompt": f"{i} + {i} =", "answer": str(2 * i)} for i in range(5)]


def _write_rows(path: Path, rows: list[dict], fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    else:
        path.write_text("prompt,answer\n" + "".join(f"{r['prompt']},{r['answer']}\n" for r in rows),
                        encoding="utf-8")


def _doc_tasks(tmp_path: Path) -> Path:
    """Four tasks as lm-eval's new-task guide writes local data: a path, a list, a split -> path mapping (json
    array), a split -> path mapping (csv, absolute); relative paths beside the YAML."""
    d = tmp_path / "mytasks"
    _write_rows(d / "data" / "one.jsonl", ROWS, "jsonl")
    _write_rows(d / "data" / "a.jsonl", ROWS[:2], "jsonl")
    _write_rows(d / "data" / "b.jsonl", ROWS[2:], "jsonl")
    _write_rows(d / "data" / "test.json", ROWS, "json")
    _write_rows(tmp_path / "elsewhere" / "test.csv", ROWS, "csv")
    for name, builder, files, split in (
            ("doc_path", "json", "data/one.jsonl", "train"),
            ("doc_list", "json", "[data/a.jsonl, data/b.jsonl]", "train"),
            ("doc_splits", "json", "{test: data/test.json}", "test"),
            ("doc_csv", "csv", "{test: " + str(tmp_path / "elsewhere" / "test.csv") + "}", "test")):
        (d / f"{name}.yaml").write_text(DOC_TASK.format(name=name, builder=builder, data_files=files, split=split),
                                        encoding="utf-8")
    return d


def test_local_data_in_every_documented_form_is_checked_and_read_by_lm_eval(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    d = _doc_tasks(tmp_path)
    names = ["doc_path", "doc_list", "doc_splits", "doc_csv"]
    resolved = resolve_tasks(TasksParams(tasks=names, include_path=[str(d)]))
    local = resolved["local"]
    assert {n: local[n]["form"] for n in names} == {"doc_path": "path", "doc_list": "list", "doc_splits": "splits",
                                                    "doc_csv": "splits"}
    assert local["doc_list"]["data_files"] == {"train": [str(d / "data" / "a.jsonl"), str(d / "data" / "b.jsonl")]}
    assert {n: local[n]["rows"] for n in names} == {"doc_path": {"train": 5}, "doc_list": {"train": 5},
                                                    "doc_splits": {"test": 5}, "doc_csv": {"test": 5}}
    # the run's copy names the files by absolute path, so lm-eval reads them wherever it runs
    target = write_task_dir(resolved, tmp_path / "taskdefs")
    monkeypatch.chdir(tmp_path / "elsewhere")
    from lm_eval.tasks import TaskManager

    loaded = TaskManager(include_path=str(target)).load_task_or_group(names)
    for name in names:
        docs = list(loaded[name].eval_docs)
        assert [doc["prompt"] for doc in docs] == [r["prompt"] for r in ROWS], name
        assert str(docs[3]["answer"]) == "6"


def test_local_data_split_the_task_does_not_have_is_named(tmp_path):
    d = _doc_tasks(tmp_path)
    (d / "doc_path.yaml").write_text(DOC_TASK.format(name="doc_path", builder="json", data_files="data/one.jsonl",
                                                     split="test"), encoding="utf-8")
    with pytest.raises(TaskInputError, match=r"test_split 'test' is not a split of its data_files, which give "
                                             r"\['train'\] \(a bare path or a list is datasets' 'train' split"):
        resolve_tasks(TasksParams(tasks=["doc_path"], include_path=[str(d)]))


def test_local_data_missing_file_and_bad_form_are_named(tmp_path):
    d = _doc_tasks(tmp_path)
    (d / "data" / "test.json").unlink()
    with pytest.raises(TaskInputError, match=r"task data file '.*data/test\.json' does not exist .*a relative path "
                                             r"is read from the task YAML's directory"):
        resolve_tasks(TasksParams(tasks=["doc_splits"], include_path=[str(d)]))
    (d / "doc_splits.yaml").write_text(DOC_TASK.format(name="doc_splits", builder="json", data_files="{test: 5}",
                                                       split="test"), encoding="utf-8")
    with pytest.raises(TaskInputError, match=r"data_files \{'test': 5\} is not a form lm-eval documents"):
        resolve_tasks(TasksParams(tasks=["doc_splits"], include_path=[str(d)]))


def test_local_data_bad_json_line_is_named(tmp_path):
    d = _doc_tasks(tmp_path)
    (d / "data" / "one.jsonl").write_text(json.dumps(ROWS[0]) + "\n" + '{"prompt": "x"\n', encoding="utf-8")
    with pytest.raises(TaskInputError, match=r"one\.jsonl, line 2: not valid JSON"):
        resolve_tasks(TasksParams(tasks=["doc_path"], include_path=[str(d)]))
