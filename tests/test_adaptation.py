"""Adaptation notes: the checkpoint's architectures looked up in the installed vLLM's registry, and whether
trust_remote_code is needed (config.json auto_map)."""

import json

import pytest

from studykit.engine.adaptation import AdaptationError, adaptation_notes


@pytest.fixture(scope="module")
def minicpm_dir():
    from studykit.weights.minicpm_tiny import build_minicpm_tiny

    return build_minicpm_tiny(log=lambda *_: None)


def test_minicpm_found_in_registry_and_needs_remote_code(minicpm_dir):
    notes = adaptation_notes(minicpm_dir)
    assert notes["architectures"] == ["MiniCPMForCausalLM"] and notes["model_type"] == "minicpm"
    entry = notes["registry"]["MiniCPMForCausalLM"]
    assert entry["in_vllm_registry"] is True
    assert entry["vllm_module"] == "vllm.model_executor.models.minicpm"
    assert notes["architecture_in_vllm"] and not notes["new_model_code_needed"]
    assert notes["trust_remote_code_required"] is True
    assert "auto_map" in notes["trust_remote_code_reason"] and "configuration_minicpm.MiniCPMConfig" in \
        notes["trust_remote_code_reason"]
    assert notes["custom_code_files"] == ["configuration_minicpm.py", "modeling_minicpm.py"]
    assert "reused" in notes["summary"] and notes["vllm"].startswith("vllm")


def test_default_model_needs_no_remote_code(default_model_dir):
    notes = adaptation_notes(default_model_dir)
    assert notes["architectures"] == ["LlamaForCausalLM"]
    assert notes["registry"]["LlamaForCausalLM"]["in_vllm_registry"] is True
    assert notes["trust_remote_code_required"] is False and notes["trust_remote_code_reason"] is None


def test_unknown_architecture_is_reported_not_guessed(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["NoSuchModelForCausalLM"],
                                                      "model_type": "nosuch"}))
    notes = adaptation_notes(tmp_path)
    assert notes["registry"]["NoSuchModelForCausalLM"]["in_vllm_registry"] is False
    assert notes["new_model_code_needed"] and "not in vLLM's registry" in notes["summary"]


@pytest.mark.parametrize("content,needle", [(None, "does not exist"), ("{not json", "not valid JSON"),
                                            ("[1, 2]", "JSON object")])
def test_bad_config_is_a_clear_error(tmp_path, content, needle):
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    with pytest.raises(AdaptationError, match=needle):
        adaptation_notes(tmp_path)
