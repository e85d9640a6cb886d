"""Bad prompt files are refused with a clear message, before any model loads."""

import pytest

from conftest import run_cli, tiny_study
from studykit.stages.accuracy.prompts import PromptFileError, load_prompts, tokenize_prompts


def test_default_set_has_chinese_and_english_chat_and_raw():
    prompts = load_prompts("builtin:default")
    assert len(prompts) >= 8
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in p["text"]) for p in prompts)
    assert any(p["text"].isascii() for p in prompts)
    assert {p["chat"] for p in prompts} == {True, False}


@pytest.mark.parametrize("content,needle", [
    (None, "does not exist"),
    (b"", "has no prompts"),
    (b"\xff\xfe bad", "is not UTF-8"),
    (b'{"text": "ok"}\n{not json}\n', ":2: not a JSON object"),
    (b'{"txt": "x"}\n', "non-empty string \"text\""),
    (b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "id 'a' is used twice"),
])
def test_bad_files(tmp_path, content, needle):
    path = tmp_path / "prompts.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PromptFileError, match=needle.replace("(", r"\(")):
        load_prompts(str(path))


def test_prompt_longer_than_max_model_len(default_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(default_model_dir))
    prompts = [{"id": "long", "text": "word " * 300, "chat": False}]
    with pytest.raises(PromptFileError, match="prompt 'long' has 30[0-9] tokens.*exceeds max_model_len 256"):
        tokenize_prompts(prompts, tok, 256, 16)


def test_stage_fails_on_bad_file_before_any_server(tmp_path):
    bad = tmp_path / "empty.jsonl"
    bad.write_text("")
    params = tiny_study(tmp_path, {"stages": ["accuracy"], "accuracy": {"prompts_file": str(bad)}})
    outputs = tmp_path / "outputs"
    result = run_cli("run", str(params), env={"STUDYKIT_OUTPUTS": str(outputs)})
    assert result.returncode == 1
    assert "has no prompts" in result.stdout
    run_dir = next(outputs.glob("*/*/"))
    assert not list((run_dir / "logs").glob("*.log"))  # no server was started
