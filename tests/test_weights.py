import json
import shutil

from studykit.weights import files
from studykit.weights import smollm2


def test_manifest_verify_detects_change_and_missing(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"x" * 100)
    files.write_manifest(tmp_path, source="test")
    assert files.verify(tmp_path) == (True, "all files match the manifest")
    (tmp_path / "model.safetensors").write_bytes(b"y" * 100)
    ok, why = files.verify(tmp_path)
    assert not ok and "model.safetensors changed" in why
    (tmp_path / "model.safetensors").unlink()
    ok, why = files.verify(tmp_path)
    assert not ok and "model.safetensors missing" in why
    assert files.weight_bytes(tmp_path) == 0


def test_default_model_is_reused_when_intact_and_rebuilt_when_not(tmp_path, monkeypatch, default_model_dir):
    # Work on a copy of the cached build so the shared cache is never touched.
    cache = tmp_path / "cache"
    copy = cache / "models" / default_model_dir.name
    shutil.copytree(default_model_dir, copy)
    monkeypatch.setenv("STUDYKIT_CACHE", str(cache))
    messages = []
    assert smollm2.build_default(log=messages.append) == copy
    assert "reusing" in messages[-1]

    manifest = json.loads((copy / files.MANIFEST).read_text())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {f["file"] for f in manifest["files"]}
    assert manifest["built_from"].endswith(smollm2.GGUF_NAME)

    (copy / "config.json").write_text("{}")
    messages.clear()
    smollm2.build_default(log=messages.append)
    assert any("rebuilding" in m and "config.json changed" in m for m in messages)
    assert files.verify(copy)[0]
    config = json.loads((copy / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert (copy / "chat_template.jinja").exists() or "chat_template" in (copy / "tokenizer_config.json").read_text()
