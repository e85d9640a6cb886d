"""A checkpoint that needs trust_remote_code, in a study without it, stops before vLLM starts, saying why."""

import json
import shutil

import pytest

from conftest import ROOT, run_cli, tiny_study
from studykit.commands import read_commands
from studykit.params import load_study
from studykit.preflight import PreflightError, check_checkpoint, check_model

MINICPM_PARAMS = ROOT / "params" / "minicpm-tiny-cpu.yaml"


@pytest.fixture(scope="module")
def minicpm_dir():
    from studykit.minicpm_tiny import build_minicpm_tiny

    return build_minicpm_tiny(log=lambda *_: None)


def _study(tmp_path, trust: bool):
    return load_study(tiny_study(tmp_path, {"model": {"trust_remote_code": trust}}, base=MINICPM_PARAMS))


def test_missing_trust_remote_code_caught_with_reason(tmp_path, minicpm_dir):
    with pytest.raises(PreflightError) as info:
        check_model(_study(tmp_path, False), minicpm_dir)
    msg = str(info.value)
    assert "needs trust_remote_code" in msg and "model.trust_remote_code: false" in msg
    assert "auto_map (AutoConfig -> configuration_minicpm.MiniCPMConfig)" in msg
    assert "configuration_minicpm.py" in msg and "model.trust_remote_code: true" in msg


def test_trust_remote_code_set_passes(tmp_path, minicpm_dir):
    checked = check_model(_study(tmp_path, True), minicpm_dir)
    assert checked["trust_remote_code_required"] and checked["platform"] == "cpu"


def test_default_model_needs_nothing(tmp_path, default_model_dir):
    study = load_study(ROOT / "params" / "smollm2-135m-cpu.yaml")
    assert check_model(study, default_model_dir)["trust_remote_code_required"] is False


def test_auto_map_file_missing_means_incomplete_checkpoint(tmp_path, minicpm_dir):
    broken = tmp_path / "ckpt"
    shutil.copytree(minicpm_dir, broken)
    (broken / "configuration_minicpm.py").unlink()
    with pytest.raises(PreflightError, match="auto_map points at configuration_minicpm.py, which .* does not contain"):
        check_checkpoint(_study(tmp_path, True), broken)


def test_modeling_files_not_needed_by_vllm_are_not_required(tmp_path, minicpm_dir):
    # BitCPM's auto_map also maps AutoModelForCausalLM to modeling_minicpm.py; vLLM never imports it.
    ckpt = tmp_path / "ckpt"
    shutil.copytree(minicpm_dir, ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["auto_map"]["AutoModelForCausalLM"] = "modeling_minicpm.MiniCPMForCausalLM"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    assert check_checkpoint(_study(tmp_path, True), ckpt)["trust_remote_code_required"]


def test_no_config_json(tmp_path):
    with pytest.raises(PreflightError, match="config.json does not exist"):
        check_checkpoint(_study(tmp_path, True), tmp_path)


def test_study_without_trust_remote_code_stops_before_vllm(tmp_path, minicpm_dir, no_vllm_left):
    """Through papermill, as a user runs it: the deploy stage fails with the explanation, and no vllm command
    was started (none in commands.jsonl)."""
    params = tiny_study(tmp_path, {"model": {"trust_remote_code": False}, "stages": ["deploy"]}, base=MINICPM_PARAMS)
    outputs = tmp_path / "outputs"
    r = run_cli("run", str(params), env={"STUDYKIT_OUTPUTS": str(outputs)}, timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    (run_dir,) = (outputs / "minicpm-tiny-cpu").iterdir()
    state = json.loads((run_dir / "run.json").read_text())
    error = state["stages"]["deploy"]["error"]
    assert error.startswith("PreflightError") and "needs trust_remote_code" in error and "auto_map" in error
    assert not any(rec["is_vllm"] for rec in read_commands(run_dir))
    assert "needs trust_remote_code" in r.stdout
