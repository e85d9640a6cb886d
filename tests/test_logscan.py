"""Known issues and warnings in server logs: grouped, counted, with an example, errors first."""

from conftest import ROOT
from studykit.logscan import normalize, scan_lines, scan_log, scan_logs

LOG = ROOT / "tests" / "data" / "ascend" / "vllm-ascend-serve.log"


def by_pattern(groups):
    return {g["pattern"]: g for g in groups}


def test_cann_owner_warnings_grouped_and_counted():
    groups = by_pattern(scan_log(LOG))
    owner = groups["cann_owner_mismatch"]
    # 4 warnings (2 paths x 2 processes); Python's echo of the warnings.warn(...) source line is not counted.
    assert owner["count"] == 4 and owner["known"] and owner["level"] == "warning"
    assert "/usr/local/Ascend/cann-8.5.1 owner does not match" in owner["example"]
    assert "CANN" in owner["note"]
    assert groups["expandable_segments_default"]["count"] == 1


def test_generic_messages_grouped_after_normalization():
    groups = scan_log(LOG)
    aborted = [g for g in groups if g["pattern"].startswith("Error in chat completion stream generator")]
    assert len(aborted) == 1 and aborted[0]["count"] == 2 and aborted[0]["level"] == "error"
    assert "request 7 was aborted" in aborted[0]["example"]  # the example keeps the real line
    ignored = [g for g in groups if "were present in the request but ignored" in g["pattern"]]
    assert ignored[0]["count"] == 2 and ignored[0]["level"] == "warning"
    cann = [g for g in groups if "UNKNOWN applicaiton exception" in g["pattern"]]
    assert cann and cann[0]["level"] == "error"
    # INFO lines are not counted at all.
    assert not any("Available plugins" in g["example"] for g in groups)


def test_errors_come_first_then_known_issues():
    levels = [(g["level"], g["known"]) for g in scan_log(LOG)]
    assert levels == sorted(levels, key=lambda lk: (lk[0] != "error", not lk[1]))
    assert levels[0][0] == "error"


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
    assert ulimit["pattern"] == "Found ulimit of <n> and failed to automatically increase"


def test_trust_remote_code_error_is_a_known_issue():
    line = ("ValueError: The repository /models/x contains custom code which must be executed to correctly "
            "load the model.")
    (g,) = scan_lines([line])
    assert g["pattern"] == "trust_remote_code_missing" and g["level"] == "error" and "trust_remote_code" in g["note"]


def test_normalize_removes_run_specific_parts():
    assert normalize("loaded /root/.cache/x/model.safetensors in 1.25 s at 0x7f3a2b") == \
        "loaded <path> in <n> s at <hex>"


def test_scan_logs_merges_counts(tmp_path):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text(LOG.read_text())
    b.write_text("/x/collect_env.py:58: UserWarning: Warning: The /usr/local/Ascend/cann-8.5.1 owner does not "
                 "match the current owner.\n")
    merged = by_pattern(scan_logs([a, b]))
    assert merged["cann_owner_mismatch"]["count"] == 5
    assert merged["cann_owner_mismatch"]["sources"] == ["a.log", "b.log"]


def test_empty_log(tmp_path):
    p = tmp_path / "empty.log"
    p.write_text("")
    assert scan_log(p) == []
