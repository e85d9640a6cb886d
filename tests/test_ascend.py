"""Ascend parsers on recorded outputs (tests/data/ascend/README.md says where each format comes from), the
npu platform's detection and device checks, and the Ascend variables and parallel flags given to vLLM."""

import os
from pathlib import Path

import pytest

from conftest import ROOT, tiny_study
from studykit import ascend, engine
from studykit.ascend import AscendParseError
from studykit.params import ParamsError, load_study
from studykit.preflight import PreflightError, check_platform

DATA = ROOT / "tests" / "data" / "ascend"
ASCEND_PARAMS = ROOT / "params" / "bitcpm4-0.5b-ascend.yaml"


def sample(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8", errors="replace")


def test_npu_smi_a2_two_chips():
    text = sample("npu-smi-info-a2-2chip.txt")
    chips = ascend.parse_npu_smi_info(text)
    assert [(c["npu_id"], c["chip_id"], c["name"]) for c in chips] == [(0, 0, "910B3"), (1, 0, "910B3")]
    busy, idle = chips
    assert (busy["hbm_used_mb"], busy["hbm_total_mb"], busy["aicore_percent"]) == (58212, 65536, 37)
    assert (idle["hbm_used_mb"], idle["hbm_total_mb"], idle["aicore_percent"]) == (3391, 65536, 0)
    assert busy["power_w"] == 171.4 and busy["temp_c"] == 47 and busy["health"] == "OK"
    assert busy["bus_id"] == "0000:C1:00.0" and busy["phy_id"] is None
    assert ascend.parse_npu_smi_version(text) == {"npu_smi_version": "25.5.2", "version": "25.5.2"}
    assert ascend.summarize_chips(chips) == {"chip_count": 2, "chip_model": "910B3",
                                             "hbm_total_mb_per_chip": [65536, 65536],
                                             "hbm_used_mb_per_chip": [58212, 3391]}
    assert ascend.parse_npu_smi_processes(text) == [
        {"npu_id": 0, "chip_id": 0, "pid": 418822, "name": "python3.11", "memory_mb": 54820}]


def test_npu_smi_a3_layout_two_chips_one_npu():
    text = sample("npu-smi-info-a3-phyid.txt")
    chips = ascend.parse_npu_smi_info(text)
    assert [(c["npu_id"], c["chip_id"], c["phy_id"]) for c in chips] == [(0, 0, 0), (0, 1, 1)]
    assert chips[1]["power_w"] is None  # the second chip of an NPU shows '-'
    assert (chips[1]["hbm_used_mb"], chips[1]["hbm_total_mb"]) == (31877, 65536)  # '31877/ 65536'
    assert chips[1]["aicore_percent"] == 12
    assert ascend.parse_npu_smi_version(text)["version"] == "26.0.rc2"
    procs = ascend.parse_npu_smi_processes(text)
    assert procs == [{"npu_id": 0, "chip_id": 1, "pid": 632268, "name": "python3.11", "memory_mb": 28413}]


def test_npu_smi_ddr_memory_column_and_warning_health():
    chips = ascend.parse_npu_smi_info(sample("npu-smi-info-910-ddr.txt"))
    assert [(c["memory_used_mb"], c["memory_total_mb"]) for c in chips] == [(1201, 13553), (2410, 15665)]
    assert [c["hbm_total_mb"] for c in chips] == [32768, 32768]
    assert chips[1]["health"] == "Warning"


def test_npu_smi_truncated_output_is_a_clear_error():
    with pytest.raises(AscendParseError) as info:
        ascend.parse_npu_smi_info(sample("npu-smi-info-truncated.txt"))
    assert "line 8" in str(info.value) and "cut short" in str(info.value)


@pytest.mark.parametrize("text,needle", [
    (sample("npu-smi-info-dcmi-error.txt"), "dcmi module initialize failed"),
    ("", "(empty)"),
    (sample("ascend_toolkit_install-8.5.1.info"), "package_name=Ascend-cann-toolkit"),
])
def test_not_npu_smi_output_is_named(text, needle):
    with pytest.raises(AscendParseError) as info:
        ascend.parse_npu_smi_info(text)
    assert "not `npu-smi info` output" in str(info.value) and needle in str(info.value)


def test_npu_smi_bad_row_names_line_and_expected_columns():
    lines = sample("npu-smi-info-a2-2chip.txt").splitlines()
    lines[7] = lines[7].replace("58212/ 65536", "lots of HBM  ")
    with pytest.raises(AscendParseError) as info:
        ascend.parse_npu_smi_info("\n".join(lines))
    assert "line 8" in str(info.value) and "HBM-Usage(MB)" in str(info.value)


def test_cann_and_driver_info():
    cann = ascend.parse_cann_info(sample("ascend_toolkit_install-8.5.1.info"))
    assert cann["version"] == "8.5.1" and cann["arch"] == "aarch64"
    assert cann["path"] == "/usr/local/Ascend/cann-8.5.1/aarch64-linux"
    assert ascend.parse_cann_info(sample("ascend_toolkit_install-8.1.RC1.info"))["version"] == "8.1.RC1"
    drv = ascend.parse_driver_info(sample("driver-version-25.5.2.info"))
    assert drv["version"] == "25.5.2" and drv["ascendhal_version"] == "7.35.23"


def test_malformed_info_files_are_clear_errors():
    with pytest.raises(AscendParseError, match=r"bad\.info line 1: expected key=value"):
        ascend.parse_driver_info(sample("version-info-malformed.info"), "bad.info")
    with pytest.raises(AscendParseError, match="no 'version=' line"):
        ascend.parse_cann_info("package_name=Ascend-cann-toolkit\narch=aarch64\n")
    with pytest.raises(AscendParseError, match="is empty"):
        ascend.parse_cann_info("\n# nothing\n")


def fake_ascend_root(tmp_path: Path, layout: str) -> Path:
    root = tmp_path / "Ascend"
    if layout == "cann-8.5":
        d = root / "cann-8.5.1" / "aarch64-linux"
        d.mkdir(parents=True)
        (d / "ascend_toolkit_install.info").write_text(sample("ascend_toolkit_install-8.5.1.info"))
        (root / "ascend-toolkit").mkdir()
        os.symlink(root / "cann-8.5.1", root / "ascend-toolkit" / "latest")
    else:
        d = root / "ascend-toolkit" / "8.1.RC1" / "aarch64-linux"
        d.mkdir(parents=True)
        (d / "ascend_toolkit_install.info").write_text(sample("ascend_toolkit_install-8.1.RC1.info"))
        os.symlink(root / "ascend-toolkit" / "8.1.RC1", root / "ascend-toolkit" / "latest")
    (root / "driver").mkdir()
    (root / "driver" / "version.info").write_text(sample("driver-version-25.5.2.info"))
    return root


@pytest.mark.parametrize("layout,version", [("cann-8.5", "8.5.1"), ("toolkit-8.1", "8.1.RC1")])
def test_capture_ascend_on_a_recorded_host(tmp_path, layout, version):
    root = fake_ascend_root(tmp_path, layout)
    cap = ascend.capture_ascend(root=root, npu_smi_text=sample("npu-smi-info-a2-2chip.txt"), environ={})
    assert cap["cann"]["version"] == version
    assert cap["driver"]["version"] == "25.5.2"
    assert cap["npu_smi"]["version"] == "25.5.2" and cap["npu_smi"]["chip_count"] == 2
    assert cap["npu_smi"]["hbm_used_mb_per_chip"] == [58212, 3391]
    assert set(cap["packages"]) >= {"torch-npu", "vllm-ascend", "torch"}
    assert cap["errors"] == []


def test_capture_ascend_never_raises_on_broken_host(tmp_path):
    root = tmp_path / "Ascend"
    (root / "driver").mkdir(parents=True)
    (root / "driver" / "version.info").write_bytes((DATA / "version-info-malformed.info").read_bytes())
    cap = ascend.capture_ascend(root=root, npu_smi_text=sample("npu-smi-info-dcmi-error.txt"), environ={})
    joined = "\n".join(cap["errors"])
    assert "npu-smi: not `npu-smi info` output" in joined
    assert "cann: no ascend_toolkit_install.info" in joined
    assert "driver:" in joined and "expected key=value" in joined
    assert "npu_smi" not in cap and "cann" not in cap and "driver" not in cap


def test_detect_npu_needs_both_torch_npu_and_npu_smi():
    found = ascend.detect_npu(which=lambda _: "/usr/local/sbin/npu-smi", find_spec=lambda _: object())
    assert found["available"] and found["npu_smi"] == "/usr/local/sbin/npu-smi"
    no_torch_npu = ascend.detect_npu(which=lambda _: "/usr/local/sbin/npu-smi", find_spec=lambda _: None)
    assert not no_torch_npu["available"] and "torch_npu" in no_torch_npu["reasons"][0]
    here = ascend.detect_npu()  # this machine: no Ascend
    assert not here["available"] and len(here["reasons"]) == 2


def _npu_study(tmp_path, overrides):
    return load_study(tiny_study(tmp_path, overrides, base=ASCEND_PARAMS))


AVAILABLE = lambda: {"available": True, "torch_npu": True, "npu_smi": "npu-smi", "reasons": []}  # noqa: E731


def test_check_platform_on_recorded_two_chip_host(tmp_path):
    text = sample("npu-smi-info-a2-2chip.txt")
    ok = check_platform(_npu_study(tmp_path, {"npu": {"visible_devices": "1"}}), detect=AVAILABLE, npu_smi_text=text)
    assert ok == {"platform": "npu", "chips": 2, "devices": [1], "chip_model": ["910B3"]}
    with pytest.raises(PreflightError, match=r"asks for device\(s\) \[2\].*allowed ids 0..1"):
        check_platform(_npu_study(tmp_path, {"npu": {"visible_devices": "0,2"}}), detect=AVAILABLE, npu_smi_text=text)
    with pytest.raises(PreflightError, match="tensor_parallel_size 2 .* = 2 devices, but npu.visible_devices '0' gives 1"):
        check_platform(_npu_study(tmp_path, {"server": {"tensor_parallel_size": 2}}), detect=AVAILABLE,
                       npu_smi_text=text)
    with pytest.raises(PreflightError, match="cannot read the devices"):
        check_platform(_npu_study(tmp_path, {}), detect=AVAILABLE, npu_smi_text=sample("npu-smi-info-dcmi-error.txt"))


def test_check_platform_here_says_why_not(tmp_path):
    with pytest.raises(PreflightError) as info:
        check_platform(_npu_study(tmp_path, {}))
    assert "torch_npu is not importable" in str(info.value) and "npu-smi not found" in str(info.value)
    assert check_platform(load_study(ROOT / "params" / "smollm2-135m-cpu.yaml")) == {"platform": "cpu"}


def test_platform_env_passes_ascend_variables(tmp_path):
    study = _npu_study(tmp_path, {"npu": {"visible_devices": "2,3", "pytorch_npu_alloc_conf": "expandable_segments:True",
                                          "task_queue_enable": "2", "hccl_env": {"HCCL_BUFFSIZE": "1024"}}})
    env = engine.platform_env(study)
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "2,3"
    assert env["PYTORCH_NPU_ALLOC_CONF"] == "expandable_segments:True"
    assert env["TASK_QUEUE_ENABLE"] == "2" and env["HCCL_BUFFSIZE"] == "1024"
    assert env["VLLM_USE_MODELSCOPE"] == "True" and env["HF_HUB_OFFLINE"] == "1"
    assert "VLLM_CPU_KVCACHE_SPACE" not in env
    assert study.npu.device_ids == [2, 3]


@pytest.mark.parametrize("override,key,allowed", [
    ({"npu": {"visible_devices": "0;1"}}, "npu.visible_devices", "pattern"),
    ({"npu": {"hccl_env": {"NCCL_DEBUG": "INFO"}}}, "npu.hccl_env", "HCCL_* variables only"),
    ({"server": {"distributed_executor_backend": "slurm"}}, "server.distributed_executor_backend", "'mp' or 'ray'"),
    ({"server": {"tensor_parallel_size": 0}}, "server.tensor_parallel_size", "greater than 0"),
])
def test_bad_npu_params_named(tmp_path, override, key, allowed):
    with pytest.raises(ParamsError) as info:
        load_study(tiny_study(tmp_path, override, base=ASCEND_PARAMS))
    assert f"  {key}:" in str(info.value) and allowed in str(info.value)


def test_graph_mode_default_and_enforce_eager_param(tmp_path):
    graph = _npu_study(tmp_path, {})
    assert "--enforce-eager" not in engine.engine_flags(graph)
    eager = _npu_study(tmp_path, {"server": {"enforce_eager": True}})
    assert "--enforce-eager" in engine.engine_flags(eager)


def test_parallel_sizes_and_backend_reach_serve_and_bench(tmp_path):
    study = _npu_study(tmp_path, {"server": {"tensor_parallel_size": 4, "pipeline_parallel_size": 2,
                                             "data_parallel_size": 1, "distributed_executor_backend": "mp"}})
    for argv in (engine.serve_argv(study, "/m", 8000), engine.bench_argv(study, "latency", "/m", [])):
        i = argv.index("--tensor-parallel-size")
        assert argv[i + 1] == "4"
        assert argv[argv.index("--pipeline-parallel-size") + 1] == "2"
        assert "--data-parallel-size" not in argv  # 1 is vLLM's default: not passed
        assert argv[argv.index("--distributed-executor-backend") + 1] == "mp"
    single = _npu_study(tmp_path, {})
    assert not any(a.endswith("-parallel-size") or a == "--distributed-executor-backend"
                   for a in engine.serve_argv(single, "/m", 8000))
