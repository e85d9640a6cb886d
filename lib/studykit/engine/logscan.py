"""Known issues and warnings in server / bench logs, grouped and counted for the report.

A vllm-ascend server log carries hundreds of torch_npu "owner does not match" warnings (seed report, known
issue 2): the report shows them as one row with a count and an example, next to every other WARNING/ERROR
grouped by its message with numbers, paths and addresses normalized away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from studykit.engine import vllm_log


@dataclass(frozen=True)
class KnownIssue:
    name: str
    level: str
    regex: re.Pattern
    note: str


KNOWN_ISSUES = (
    KnownIssue("cann_owner_mismatch", "warning",
               re.compile(r"owner does not match the current (owner|user)|Permission mismatch: The owner of"),
               "torch_npu checks that CANN files belong to the current user; they belong to the installer "
               "(root). Harmless for inference; silence it by running as the CANN owner."),
    KnownIssue("trust_remote_code_missing", "error",
               re.compile(r"contains custom code which must be executed|requires you to execute the "
                          r"configuration file|set the option `?trust_remote_code=True`?"),
               "the checkpoint ships its own configuration code (config.json auto_map): "
               "set model.trust_remote_code: true"),
    KnownIssue("expandable_segments_default", "warning",
               re.compile(r"expandable_segments currently defaults to false"),
               "torch_npu allocator hint; set npu.pytorch_npu_alloc_conf: expandable_segments:True to follow it"),
    KnownIssue("unsupported_cpu_attention", "error",
               re.compile(r"Unsupported CPU attention configuration"),
               "vLLM's CPU attention does not support this head size (16 is rejected, 64 works)"),
    KnownIssue("device_out_of_memory", "error",
               re.compile(r"OutOfMemoryError|(NPU|CUDA) out of memory|RuntimeError: .*out of memory"),
               "the device ran out of memory: lower max_num_seqs / max_model_len or the KV cache size"),
)

# Python warnings: "/path/x.py:58: UserWarning: message". Not anchored: tqdm bars end without a newline, so a
# warning can follow "... 4/4 [00:36<00:00,  9.21s/it]" on the same line.
_PY_WARNING = re.compile(r"\S+\.py:\d+: (?P<cat>\w*Warning): (?P<msg>.*)")
# c10 / torch_npu C++ warnings (glog: W, then month and day, time, file:line), current
# "[W1210 03:09:10.966659833 compiler_depend.ts:187] Warning: message" and older
# "[W compiler_depend.ts:615] Warning: message"; also not anchored (progress bars, "[rank0]:" prefixes).
_C10_WARNING = re.compile(r"\[W(?:\d{3,4} \d\d:\d\d:\d\d(?:\.\d+)?)?\s+[\w./-]+:\d+\]\s*(?:Warning:\s*)?(?P<msg>.*)")
# CANN / ACL: "[ERROR] 2025-05-13-19:24:04 (PID:1, Device:-1, RankID:-1) ERR99999 message"
_CANN_LINE = re.compile(r"^\[(?P<level>ERROR|WARNING)\]\s+(?:\S+\s+)?(?:\([^)]*\)\s+)?(?P<msg>.*)")
# Python prints the warning's source line, indented, after the message; it is not a second occurrence.
_WARN_ECHO = re.compile(r"^\s+warnings\.warn\(")
# What launchers and log collectors put before a line, one space of it included so that the indentation of
# Python's echo line survives: vLLM's "(EngineCore_DP0 pid=3150) (pid=3212) " and "(VllmWorker rank=0 pid=1) ",
# torch.distributed's "[rank0]:", "[RAW SERVER] " of test harnesses, docker compose's "service-name  | ".
_PREFIX = re.compile(rf"^(?:{vllm_log.PROCESS_PREFIX.pattern}"  # (EngineCore_DP0 pid=1) / (pid=2)
                     r"|\[rank\d+\]: ?"  # [rank0]: (torch.distributed adds a space before its own lines)
                     r"|\[[A-Z]+ [A-Z ]*[A-Z]\] ?"  # [RAW SERVER]
                     r"|[\w.-]+ *\| ?)")  # compose-service  |


def strip_prefixes(line: str) -> str:
    """The line without the launcher / collector prefixes in front of it (any number, any order)."""
    while True:
        m = _PREFIX.match(line)
        if not m or not m.group(0):
            return line
        line = line[m.end():]


_NORMALIZERS = (
    (re.compile(r"(/[\w.\-+@]+)+/?"), "<path>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b[0-9a-fA-F]{12,}\b"), "<hex>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def normalize(message: str) -> str:
    """The message with run-specific parts (paths, numbers, addresses) replaced, for grouping."""
    out = message.strip()
    for regex, repl in _NORMALIZERS:
        out = regex.sub(repl, out)
    return out[:300]


def classify(line: str) -> tuple[str, str, KnownIssue | None] | None:
    """(group key, level, known issue or None) for a log line worth counting, else None."""
    if _WARN_ECHO.match(line):
        return None
    for issue in KNOWN_ISSUES:
        if issue.regex.search(line):
            return issue.name, issue.level, issue
    vllm = vllm_log.parse(line)
    if vllm is not None and vllm.level in ("WARNING", "ERROR", "CRITICAL"):
        return normalize(vllm.message), "warning" if vllm.level == "WARNING" else "error", None
    m = _PY_WARNING.search(line)
    if m:
        return normalize(f"{m['cat']}: {m['msg']}"), "warning", None
    m = _C10_WARNING.search(line)
    if m:
        return normalize(m["msg"]), "warning", None
    m = _CANN_LINE.match(line)
    if m:
        return normalize(m["msg"]), "warning" if m["level"] == "WARNING" else "error", None
    if line.lstrip().startswith("Traceback (most recent call last)"):
        return "Traceback", "error", None
    return None


def _physical_lines(lines):
    """Lines as a terminal shows them: tqdm redraws with carriage returns, each redraw its own line."""
    for raw in lines:
        yield from vllm_log.ANSI.sub("", raw.rstrip("\n")).split("\r")


def scan_lines(lines) -> list[dict]:
    """Grouped WARNING/ERROR lines: [{pattern, level, count, example, known, note, first_line}]."""
    groups: dict[tuple[str, str], dict] = {}
    after_py_warning = False
    for n, line in enumerate(_physical_lines(lines), 1):
        body = strip_prefixes(line)
        # The indented line right after a Python warning is its source line, whatever that source says.
        if after_py_warning and body[:1].isspace():
            after_py_warning = False
            continue
        after_py_warning = bool(_PY_WARNING.search(body))
        found = classify(body)
        if not found:
            continue
        key, level, issue = found
        g = groups.get((key, level))
        if g is None:
            g = groups[(key, level)] = {"pattern": key, "level": level, "count": 0, "example": line.strip()[:500],
                                        "known": issue is not None, "note": issue.note if issue else None,
                                        "first_line": n}
        g["count"] += 1
    # Errors first, then known issues, then by how often they occur.
    return sorted(groups.values(), key=lambda g: (g["level"] != "error", not g["known"], -g["count"], g["first_line"]))
