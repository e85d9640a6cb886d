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


def _study(tmp_path, model: dict):
    from conftest import tiny_study

    from studykit.params import load_study

    return load_study(tiny_study(tmp_path, {"model": model, "stages": ["deploy"]}))


def test_default_checkpoint_is_where_the_build_puts_it_and_the_dry_run_shows_its_command(
        tmp_path, monkeypatch, default_model_dir):
    from studykit.evidence.journal import CommandLog, read_commands
    from studykit.runner.dryrun import plan
    from studykit.weights.store import checkpoint, resolve

    cache = tmp_path / "cache"
    copy = cache / "models" / default_model_dir.name
    shutil.copytree(default_model_dir, copy)
    monkeypatch.setenv("STUDYKIT_CACHE", str(cache))
    study = _study(tmp_path, {"source": "builtin", "id": "smollm2-135m-instruct"})
    assert checkpoint(study).model_dir == copy  # known before anything is built

    step = plan(study)[1][0]
    assert (step.stage, step.kind, step.argv) == ("weights", "command", ["studykit", "model", "build-default"])
    assert step.command == "studykit model build-default  # cached: reused if intact"

    run_dir = tmp_path / "run"
    assert resolve(study, CommandLog(run_dir, "deploy")) == copy
    (note,) = read_commands(run_dir)
    assert (note["label"], note["command"], note["extra"]["model_dir"]) == (step.label, "studykit model build-default",
                                                                             str(copy))


def test_minicpm_tiny_checkpoint_is_in_the_kit_cache(tmp_path, monkeypatch):
    from studykit.weights.store import checkpoint

    monkeypatch.setenv("STUDYKIT_CACHE", str(tmp_path / "cache"))
    got = checkpoint(_study(tmp_path, {"source": "builtin", "id": "minicpm-tiny", "trust_remote_code": True}))
    assert got.model_dir == tmp_path / "cache" / "models" / "minicpm-tiny"
    assert got.argv == ["studykit", "model", "build-minicpm-tiny"]


def test_local_checkpoint_runs_nothing_and_must_be_a_directory(tmp_path):
    import pytest

    from studykit.runner.dryrun import plan
    from studykit.weights.files import WeightsError
    from studykit.weights.store import resolve

    model = tmp_path / "ckpt"
    model.mkdir()
    study = _study(tmp_path, {"source": "local", "id": "mine", "path": str(model)})
    step = plan(study)[1][0]
    assert (step.kind, step.argv, step.command) == ("python", [], f"# local checkpoint {model}")
    assert resolve(study) == model
    model.rmdir()
    with pytest.raises(WeightsError, match=f"model.path '{model}' is not a directory"):
        resolve(study)
