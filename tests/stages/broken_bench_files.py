"""The broken result files every `vllm bench` JSON parser must refuse with a message naming the file."""

import json

import pytest
from studykit.engine.benchjson import BenchParseError


def message(parse, path) -> str:
    with pytest.raises(BenchParseError) as err:
        parse(path)
    assert str(path) in str(err.value)
    return str(err.value)


def broken_file_messages(parse, good_text: str, tmp_path) -> dict[str, str]:
    """{case: the parser's error}: empty, truncated, a JSON list, a dict missing the fields, a path not there."""
    cases = {"empty": "", "truncated": good_text[: len(good_text) // 2], "list": "[1, 2]",
             "missing": json.dumps({"model_id": "x"})}
    for name, content in cases.items():
        (tmp_path / f"{name}.json").write_text(content)
    return {name: message(parse, tmp_path / f"{name}.json") for name in [*cases, "absent"]}
