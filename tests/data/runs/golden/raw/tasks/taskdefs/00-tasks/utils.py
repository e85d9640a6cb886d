"""lm-eval's `custom_dataset` hook for the kit's JSONL tasks: the data file sits beside the task YAML, so the
task reads it with no download and no absolute path. Validation is the kit's own (one rule set for the
stage's pre-flight and for lm-eval)."""

from pathlib import Path


def load_items(data_files: str, **_metadata):
    import datasets

    from studykit.stages.tasks.data import read_items

    items = read_items(Path(__file__).resolve().parent / data_files)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(items)})
