"""Ascend parsers on recorded outputs (tests/data/ascend/README.md says where each format comes from), the
npu platform's detection and device checks, and the Ascend variables and parallel flags given to vLLM."""

import os
from pathlib import Path

import pytest

from conftest import ROOT, tiny_study
from studykit.evidence import ascend
from studykit.engine import cmdline
from studykit.evidence.ascend import AscendParseError
from studykit.params import ParamsError, load_study
from studykit.engine.preflight import PreflightError, check_platform

DATA = ROOT / "tests" / "data" / "ascend"
ASCEND_PARAMS = ROOT / "params" / "bitcpm4-0.5b-ascend.yaml"


def sample(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8", errors="replace")


def test_npu_smi_8x910b3_host_busy_from_a_container():
    # vllm-ascend #3998: eight 910B3, every card held by two processes whose names a container cannot see.
    text = sample("npu-smi-info-8x910b3-busy-container-3998.txt")
    chips = ascend.parse_npu_smi_info(text)
    assert [(c["npu_id"], c["chip_id"], c["name"]) for c in chips] == [(i, 0, "910B3") for i in range(8)]
    assert [c["hbm_used_mb"] for c in chips] == [4487, 4483, 4482, 4481, 4481, 4481, 4481, 4482]
    assert {c["hbm_total_mb"] for c in chips} == {65536} and {c["aicore_percent"] for c in chips} == {0}
    first = chips[0]
    assert (first["power_w"], first["temp_c"], first["health"], first["bus_id"]) == (94.3, 53, "OK", "0000:C1:00.0")
    assert first["phy_id"] is None and "device_id" not in first
    assert ascend.parse_npu_smi_version(text) == {"npu_smi_version": "25.3.rc1", "version": "25.3.rc1"}
    assert ascend.summarize_chips(chips)["chip_model"] == "910B3"
    procs = ascend.parse_npu_smi_processes(text)
    assert len(procs) == 16 and {p["name"] for p in procs} == {""}
    assert procs[:2] == [{"npu_id": 0, "chip_id": 0, "pid": 2698909, "name": "", "memory_mb": 600},
                         {"npu_id": 0, "chip_id": 0, "pid": 2701550, "name": "", "memory_mb": 538}]
    assert sorted({p["npu_id"] for p in procs}) == list(range(8))


def test_npu_smi_26x_wide_layout_a3_two_chips_of_one_npu():
    # vllm-ascend #12980, npu-smi 26.0.rc2: wider columns, Phy-ID, the second chip's power '-'.
    text = sample("npu-smi-info-a3-26.0rc2-wide-12980-head.txt")
    chips = ascend.parse_npu_smi_info(text)
    assert [(c["npu_id"], c["chip_id"], c["phy_id"]) for c in chips] == [(0, 0, 0), (0, 1, 1)]
    assert [c["power_w"] for c in chips] == [162.6, None]
    assert [(c["hbm_used_mb"], c["hbm_total_mb"]) for c in chips] == [(3419, 65536), (2874, 65536)]
    assert ascend.parse_npu_smi_version(text)["version"] == "26.0.rc2"


def test_npu_smi_26x_process_table_with_container_column():
    # the end of the same output: 'NNNNN/ 65536' (no space) and the 'Process id in container' column
    text = sample("npu-smi-info-a3-26.0rc2-wide-12980-tail.txt")
    assert ascend.parse_npu_smi_processes(text) == [
        {"npu_id": 0, "chip_id": 0, "pid": 632268, "name": "python3.1", "memory_mb": 197}]
    with pytest.raises(AscendParseError, match="not `npu-smi info` output"):
        ascend.parse_npu_smi_info(text)  # the header is not in this part


def test_npu_smi_ddr_memory_column_910probe():
    # vllm-ascend #1047: 910ProB cards with a non-zero Memory-Usage (DDR) column next to HBM
    chips = ascend.parse_npu_smi_info(sample("npu-smi-info-910probe-ddr-1047-head.txt"))
    assert [c["name"] for c in chips] == ["910ProB", "910ProB"]
    assert [(c["memory_used_mb"], c["memory_total_mb"]) for c in chips] == [(2387, 13553), (1840, 15665)]
    assert [(c["hbm_used_mb"], c["hbm_total_mb"]) for c in chips] == [(18, 32768), (8, 32768)]


def test_npu_smi_310p_has_device_column_and_no_hbm():
    # vllm-ascend #2416: 310P3, 'Chip Device' row, power 'NA', no HBM pair
    chips = ascend.parse_npu_smi_info(sample("npu-smi-info-310p3-2416-head.txt"))
    assert [(c["npu_id"], c["chip_id"], c["device_id"]) for c in chips] == [(2, 0, 0), (2, 1, 1)]
    assert [c["power_w"] for c in chips] == [None, None] and [c["hbm_used_mb"] for c in chips] == [None, None]
    assert [(c["memory_used_mb"], c["memory_total_mb"]) for c in chips] == [(1417, 44216), (1516, 43757)]


def test_npu_smi_busy_910b2_without_space_before_total():
    # vllm-ascend #5707: '59891/ 65536'
    (chip,) = ascend.parse_npu_smi_info(sample("npu-smi-info-910b2-busy-5707-head.txt"))
    assert (chip["name"], chip["hbm_used_mb"], chip["hbm_total_mb"]) == ("910B2", 59891, 65536)


def test_npu_smi_truncated_output_is_a_clear_error():
    with pytest.raises(AscendParseError) as info:
        ascend.parse_npu_smi_info(sample("npu-smi-info-truncated.txt"))
    assert "line 8" in str(info.value) and "cut short" in str(info.value)


@pytest.mark.parametrize("text,needle", [
    (sample("npu-smi-info-dcmi-8005-container-2698.txt"), "dcmi module initialize failed. ret is -8005"),
    (sample("npu-smi-info-dcmi-8020-device-used.txt"), "because the device is used. ret is -8020"),
    ("", "(empty)"),
    (sample("ascend_toolkit_install-8.3.RC1-3998.info"), "package_name=Ascend-cann-toolkit"),
    (sample("npu-smi-info-t-usages-telegraf.txt"), "NPU ID                         : 0"),
])
def test_not_npu_smi_output_is_named(text, needle):
    with pytest.raises(AscendParseError) as info:
        ascend.parse_npu_smi_info(text)
    assert "not `npu-smi info` output" in str(info.value) and needle in str(info.value)


def test_npu_smi_bad_row_names_line_and_expected_columns():
    lines = sample("npu-smi-info-8x910b3-busy-container-3998.txt").splitlines()
    lines[7] = lines[7].replace("4487 / 65536", "lots of HBM ")
    with pytest.raises(AscendParseError) as info:
        ascend.parse_npu_smi_info("\n".join(lines))
    assert "line 8" in str(info.value) and "HBM-Usage(MB)" in str(info.value)


def test_npu_smi_eight_busy_cards_with_ddr_column():
    # Ascend/mind-cluster fault-diagnosis guide: eight cards (names shown as 'xxx'), each with a python process
    # holding 30 GB, hugepages in use, a DDR Memory-Usage pair before the HBM one.
    text = sample("npu-smi-info-8card-busy-ddr-mindcluster.txt")
    chips = ascend.parse_npu_smi_info(text)
    assert len(chips) == 8 and [c["hbm_used_mb"] for c in chips][:4] == [30710, 30710, 30710, 30709]
    assert (chips[3]["memory_used_mb"], chips[3]["memory_total_mb"]) == (3845, 15039)
    assert (chips[0]["hugepages_used_pages"], chips[0]["hugepages_total_pages"]) == (1123, 1123)
    assert ascend.parse_npu_smi_version(text) == {"npu_smi_version": "23.0.rc3", "version": "23.0.rc2.3"}
    procs = ascend.parse_npu_smi_processes(text)
    assert [p["pid"] for p in procs] == [139667, 139577, 139446, 139372, 139258, 139163, 139126, 139090]
    assert {p["name"] for p in procs} == {"python"} and procs[1]["memory_mb"] == 30782


def test_cann_info_real_files():
    for arch in ("aarch64", "x86_64"):
        cann = ascend.parse_cann_info(sample(f"ascend_toolkit_install-8.5.0-{arch}-mindcluster.info"))
        assert (cann["version"], cann["innerversion"], cann["arch"]) == ("8.5.0", "V100R001C25SPC001B212", arch)
        assert cann["path"] == f"/usr/local/Ascend/cann-8.5.0/{arch}-linux"
    cann = ascend.parse_cann_info(sample("ascend_toolkit_install-8.3.RC1-3998.info"))
    assert (cann["version"], cann["innerversion"], cann["arch"]) == ("8.3.RC1", "V100R001C23SPC001B235", "aarch64")
    assert cann["path"] == "/usr/local/Ascend/ascend-toolkit/8.3.RC1/aarch64-linux"
    assert ascend.parse_cann_info(sample("ascend_toolkit_install-8.1.RC1.info"))["version"] == "8.1.RC1"


def test_driver_info_real_file():
    drv = ascend.parse_driver_info(sample("driver-version-24.1.rc1-mindcluster.info"))
    assert drv == {"version": "24.1.rc1", "innerversion": "V100R001C15SPC006B220", "ascendhal_version": "7.35.19",
                   "compatible_version_fw": "[7.0.0,7.2.99]"}


def test_driver_info_package_version_wins():
    # newer drivers add package_version (the release, e.g. 24.1.rc2.2) next to Version; a unit check on key order,
    # not a recorded file
    assert ascend.parse_driver_info("Version=24.1.rc2\npackage_version=24.1.rc2.2\n")["version"] == "24.1.rc2.2"


def test_malformed_info_files_are_clear_errors():
    with pytest.raises(AscendParseError, match=r"bad\.info line 1: expected key=value"):
        ascend.parse_driver_info(sample("version-info-malformed.info"), "bad.info")
    with pytest.raises(AscendParseError, match="no 'version=' line"):
        ascend.parse_cann_info("package_name=Ascend-cann-toolkit\narch=aarch64\n")
    with pytest.raises(AscendParseError, match="is empty"):
        ascend.parse_cann_info("\n# nothing\n")


def fake_ascend_root(tmp_path: Path, layout: str) -> Path:
    """Where CANN puts its info file: ascend-toolkit/<version>/<arch>-linux (<= 8.3) or cann-<version>/<arch>-linux
    (8.5), each with a real file of that version."""
    root = tmp_path / "Ascend"
    if layout == "cann-8.5":
        d = root / "cann-8.5.0" / "aarch64-linux"
        d.mkdir(parents=True)
        (d / "ascend_toolkit_install.info").write_text(sample("ascend_toolkit_install-8.5.0-aarch64-mindcluster.info"))
        (root / "ascend-toolkit").mkdir()
        os.symlink(root / "cann-8.5.0", root / "ascend-toolkit" / "latest")
    else:
        d = root / "ascend-toolkit" / "8.3.RC1" / "aarch64-linux"
        d.mkdir(parents=True)
        (d / "ascend_toolkit_install.info").write_text(sample("ascend_toolkit_install-8.3.RC1-3998.info"))
        os.symlink(root / "ascend-toolkit" / "8.3.RC1", root / "ascend-toolkit" / "latest")
    (root / "driver").mkdir()
    (root / "driver" / "version.info").write_text(sample("driver-version-24.1.rc1-mindcluster.info"))
    return root


@pytest.mark.parametrize("layout,version", [("cann-8.5", "8.5.0"), ("toolkit-8.3", "8.3.RC1")])
def test_capture_ascend_on_a_recorded_host(tmp_path, layout, version):
    root = fake_ascend_root(tmp_path, layout)
    cap = ascend.capture_ascend(root=root, npu_smi_text=sample("npu-smi-info-8x910b3-busy-container-3998.txt"),
                                environ={})
    assert cap["cann"]["version"] == version
    assert cap["driver"]["version"] == "24.1.rc1"
    assert cap["npu_smi"]["version"] == "25.3.rc1" and cap["npu_smi"]["chip_count"] == 8
    assert cap["npu_smi"]["hbm_used_mb_per_chip"][:2] == [4487, 4483]
    assert len(cap["npu_smi"]["processes"]) == 16
    assert set(cap["packages"]) >= {"torch-npu", "vllm-ascend", "torch"}
    assert cap["errors"] == []


def test_capture_ascend_never_raises_on_broken_host(tmp_path):
    root = tmp_path / "Ascend"
    (root / "driver").mkdir(parents=True)
    (root / "driver" / "version.info").write_bytes((DATA / "version-info-malformed.info").read_bytes())
    cap = ascend.capture_ascend(root=root, npu_smi_text=sample("npu-smi-info-dcmi-8005-container-2698.txt"),
                                environ={})
    joined = "\n".join(cap["errors"])
    assert "npu-smi: not `npu-smi info` output" in joined and "ret is -8005" in joined
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


def test_check_platform_on_recorded_eight_card_host(tmp_path):
    text = sample("npu-smi-info-8x910b3-busy-container-3998.txt")
    eight = lambda: 8  # noqa: E731
    ok = check_platform(_npu_study(tmp_path, {"npu": {"visible_devices": "7"}}), detect=AVAILABLE,
                        npu_smi_text=text, torch_npu_devices=eight)
    assert ok == {"platform": "npu", "devices": [7], "chips": 8, "chip_model": ["910B3"], "torch_npu_devices": 8}
    with pytest.raises(PreflightError,
                       match=r"asks for device\(s\) \[8\].*torch_npu sees 8 device\(s\): allowed ids 0..7"):
        check_platform(_npu_study(tmp_path, {"npu": {"visible_devices": "0,8"}}), detect=AVAILABLE,
                       npu_smi_text=text, torch_npu_devices=eight)
    with pytest.raises(PreflightError,
                       match="tensor_parallel_size 2 .* = 2 devices, but npu.visible_devices '0' gives 1"):
        check_platform(_npu_study(tmp_path, {"server": {"tensor_parallel_size": 2}}), detect=AVAILABLE,
                       npu_smi_text=text, torch_npu_devices=eight)


def test_check_platform_here_says_why_not(tmp_path):
    with pytest.raises(PreflightError) as info:
        check_platform(_npu_study(tmp_path, {}))
    assert "torch_npu is not importable" in str(info.value) and "npu-smi not found" in str(info.value)
    assert check_platform(load_study(ROOT / "params" / "smollm2-135m-cpu.yaml")) == {"platform": "cpu"}


def test_platform_env_passes_ascend_variables(tmp_path):
    study = _npu_study(tmp_path, {"npu": {"visible_devices": "2,3", "pytorch_npu_alloc_conf": "expandable_segments:True",
                                          "task_queue_enable": "2", "hccl_env": {"HCCL_BUFFSIZE": "1024"}}})
    env = cmdline.platform_env(study)
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
    assert "--enforce-eager" not in cmdline.engine_flags(graph)
    eager = _npu_study(tmp_path, {"server": {"enforce_eager": True}})
    assert "--enforce-eager" in cmdline.engine_flags(eager)


def test_parallel_sizes_and_backend_reach_serve_and_bench(tmp_path):
    study = _npu_study(tmp_path, {"server": {"tensor_parallel_size": 4, "pipeline_parallel_size": 2,
                                             "data_parallel_size": 1, "distributed_executor_backend": "mp"}})
    for argv in (cmdline.serve_argv(study, "/m", 8000), cmdline.bench_argv(study, "latency", "/m", [])):
        i = argv.index("--tensor-parallel-size")
        assert argv[i + 1] == "4"
        assert argv[argv.index("--pipeline-parallel-size") + 1] == "2"
        assert "--data-parallel-size" not in argv  # 1 is vLLM's default: not passed
        assert argv[argv.index("--distributed-executor-backend") + 1] == "mp"
    single = _npu_study(tmp_path, {})
    assert not any(a.endswith("-parallel-size") or a == "--distributed-executor-backend"
                   for a in cmdline.serve_argv(single, "/m", 8000))
