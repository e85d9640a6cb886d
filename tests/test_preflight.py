"""A checkpoint that needs trust_remote_code, in a study without it, stops before vLLM starts, saying why."""

import json
import re
import shutil

import pytest

from conftest import ROOT, run_cli, tiny_study
from fake_npu_smi import calls, install_fake_npu_smi
from studykit.evidence.journal import read_commands
from studykit.params import load_study
from studykit.engine.preflight import PreflightError, check_checkpoint, check_model, check_platform

MINICPM_PARAMS = ROOT / "params" / "minicpm-tiny-cpu.yaml"


@pytest.fixture(scope="module")
def minicpm_dir():
    from studykit.weights.minicpm_tiny import build_minicpm_tiny

    return build_minicpm_tiny(log=lambda *_: None)


def _study(tmp_path, trust: bool):
    return load_study(tiny_study(tmp_path, {"model": {"trust_remote_code": trust}}, base=MINICPM_PARAMS))


def test_missing_trust_remote_code_caught_with_reason(tmp_path, minicpm_dir):
    with pytest.raises(PreflightError) as info:
        check_model(_study(tmp_path, False), minicpm_dir)
    msg = str(info.value)
    assert "needs trust_remote_code" in msg and "model.trust_remote_code: false" in msg
    assert "auto_map (AutoConfig -> configuration_minicpm.MiniCPMConfig, AutoModelForCausalLM -> " in msg
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


# ------------------------------------------------------------------------------ platform npu, without an NPU

ASCEND_PARAMS = ROOT / "params" / "bitcpm4-0.5b-ascend.yaml"
ASCEND_DATA = ROOT / "tests" / "data" / "ascend"
EIGHT_CARDS = ASCEND_DATA / "npu-smi-info-8x910b3-busy-container-3998.txt"


def _npu_study(tmp_path, visible="0"):
    return load_study(tiny_study(tmp_path, {"npu": {"visible_devices": visible}}, base=ASCEND_PARAMS))


def _detect_with_torch_npu():
    from studykit.evidence.ascend import detect_npu

    # torch_npu "importable", npu-smi found (or not) on the real PATH
    return detect_npu(find_spec=lambda name: object())


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


@pytest.mark.parametrize("sample,exit_code,stream,message", [
    # a container without the device to itself (vllm-ascend #2698)
    ("npu-smi-info-dcmi-8005-container-2698.txt", 255, "stdout", "dcmi module initialize failed. ret is -8005"),
    # the device held by another container
    ("npu-smi-info-dcmi-8020-device-used.txt", 255, "stdout", "because the device is used. ret is -8020"),
    # a non-root user: the fake's own message, on stderr
    (None, 1, "stderr", "Permission denied"),
])
def test_failing_npu_smi_is_recorded_and_the_study_continues(tmp_path, fake_bin, capsys, sample, exit_code,
                                                             stream, message):
    if sample is None:
        out = tmp_path / "denied.txt"
        out.write_text("/usr/local/sbin/npu-smi: Permission denied\n")
    else:
        out = ASCEND_DATA / sample
    install_fake_npu_smi(fake_bin, [out], exit_code=exit_code, stream=stream)
    facts = check_platform(_npu_study(tmp_path, "0,1"), detect=_detect_with_torch_npu, torch_npu_devices=lambda: 2)
    assert facts["torch_npu_devices"] == 2 and facts["devices"] == [0, 1] and "chips" not in facts
    assert f"exited {exit_code}" in facts["npu_smi_error"] and message in facts["npu_smi_error"]
    assert calls(fake_bin) == ["info"]
    assert "npu-smi failed" in capsys.readouterr().err


def test_npu_smi_missing_is_recorded_and_the_study_continues(tmp_path, fake_bin):
    facts = check_platform(_npu_study(tmp_path), detect=_detect_with_torch_npu, torch_npu_devices=lambda: 1)
    assert "npu-smi not found" in facts["npu_smi_error"] and facts["torch_npu_devices"] == 1


def test_working_npu_smi_gives_the_chips(tmp_path, fake_bin):
    install_fake_npu_smi(fake_bin, [EIGHT_CARDS])
    facts = check_platform(_npu_study(tmp_path, "6,7"), detect=_detect_with_torch_npu, torch_npu_devices=lambda: 8)
    assert facts == {"platform": "npu", "devices": [6, 7], "chips": 8, "chip_model": ["910B3"],
                     "torch_npu_devices": 8}


def _no_device():
    raise RuntimeError("torch.npu.device_count() failed: RuntimeError: ACL stream synchronize failed")


def test_stops_when_torch_npu_sees_no_device_and_says_npu_smi_worked(tmp_path, fake_bin):
    install_fake_npu_smi(fake_bin, [EIGHT_CARDS])
    with pytest.raises(PreflightError) as info:
        check_platform(_npu_study(tmp_path), detect=_detect_with_torch_npu, torch_npu_devices=_no_device)
    msg = str(info.value)
    assert "not a usable Ascend host (no device usable): torch_npu check failed: torch.npu.device_count() failed" \
        in msg
    assert "npu-smi lists 8 chip(s)" in msg


def test_stops_when_both_checks_fail_naming_both(tmp_path, fake_bin):
    install_fake_npu_smi(fake_bin, [ASCEND_DATA / "npu-smi-info-dcmi-8005-container-2698.txt"], exit_code=255)
    with pytest.raises(PreflightError) as info:
        check_platform(_npu_study(tmp_path), detect=_detect_with_torch_npu, torch_npu_devices=lambda: 0)
    msg = str(info.value)
    assert "torch_npu check failed: torch.npu.device_count() is 0" in msg
    assert "npu-smi failed too" in msg and "ret is -8005" in msg


def test_device_ids_are_checked_against_what_torch_npu_sees(tmp_path, fake_bin):
    install_fake_npu_smi(fake_bin, [EIGHT_CARDS])  # npu-smi lists 8, but the container exposes 2
    with pytest.raises(PreflightError, match=r"asks for device\(s\) \[3\], but torch_npu sees 2 device\(s\)"):
        check_platform(_npu_study(tmp_path, "0,3"), detect=_detect_with_torch_npu, torch_npu_devices=lambda: 2)


@pytest.mark.parametrize("torch_npu_body,expected", [
    ("import torch, types\ntorch.npu = types.SimpleNamespace(device_count=lambda: 2)\n", 2),
    ("raise RuntimeError('libascendcl.so: cannot open shared object file')\n",
     RuntimeError("torch.npu.device_count() failed: RuntimeError: libascendcl.so: cannot open shared object file")),
])
def test_torch_npu_device_count_asks_a_child_process(tmp_path, monkeypatch, torch_npu_body, expected):
    from studykit.engine.preflight import torch_npu_device_count

    # stand-ins for torch and torch_npu, found first on the child's path
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("")
    (tmp_path / "torch_npu").mkdir()
    (tmp_path / "torch_npu" / "__init__.py").write_text(torch_npu_body)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{ROOT / 'lib'}")
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "5")  # the host's restriction is not the study's
    if isinstance(expected, Exception):
        with pytest.raises(RuntimeError, match=re.escape(str(expected))):
            torch_npu_device_count()
    else:
        assert torch_npu_device_count() == expected
