"""vLLM's log line, parsed once for the start-up breakdown, the warning scan and the shutdown split: on lines of the
recorded logs in tests/data/logs (tests/data/logs/startup/README.md and tests/data/ascend/README.md say where each
comes from)."""

from datetime import datetime

import pytest
from conftest import ROOT

from studykit.engine.vllm_log import ANSI, parse

LOGS = ROOT / "tests" / "data" / "logs"
ASCEND = ROOT / "tests" / "data" / "ascend"


def line(path, number: int) -> str:
    """Line `number` (1-based) of a recorded log, colours removed as every reader of a log does first."""
    return ANSI.sub("", path.read_text(encoding="utf-8", errors="replace").splitlines()[number - 1])


def test_coloured_worker_line_of_a_cpu_serve_log():
    got = parse(line(LOGS / "startup" / "cpu-serve-real-gate.log", 49))
    assert (got.process, got.level, got.where) == ("Worker", "INFO", "default_loader.py:501")
    assert got.message == "Loading weights took 1.59 seconds"
    assert got.local_time(2026) == datetime(2026, 11, 26, 7, 27, 24)


def test_api_server_traceback_line_keeps_its_message_only():
    got = parse(line(LOGS / "vllm-cpu-serve-group-term-stop.log", 157))
    assert (got.process, got.level, got.where) == ("APIServer", "ERROR", "async_llm.py:906")
    assert got.message.rstrip() == "Traceback (most recent call last):"


def test_bench_startup_log_names_each_spawned_process():
    lines = [ANSI.sub("", raw) for raw in
             (LOGS / "startup" / "cpu-bench-startup.log").read_text(encoding="utf-8", errors="replace").splitlines()]
    parsed = [p for text in lines if (p := parse(text))]
    # counted independently: every logger line here starts with "(<name> pid=" or with its level
    named = [text[1:text.index(" pid=")] for text in lines if text.startswith("(") and " pid=" in text]
    assert sorted(p.process for p in parsed if p.process) == sorted(named)
    assert {p.process for p in parsed} == {"Process-1", "Process-2", "Process-3"}


def test_level_glued_to_a_progress_bar():
    got = parse(line(LOGS / "startup" / "npu-vllm-ascend-1487-qwen3-8b.log", 9))
    assert (got.process, got.level, got.where) == (None, "INFO", "monitor.py:34")
    assert got.message == "torch.compile takes 14.83 s in total"
    assert (got.month, got.day, got.hour, got.minute, got.second) == (6, 29, 6, 18, 46)


def test_child_of_a_child_prefix_names_the_first_process():
    got = parse("(EngineCore_DP0 pid=3150) (pid=3212) WARNING 11-25 02:33:41 [file.py:12] message")
    assert (got.process, got.level, got.message) == ("EngineCore_DP0", "WARNING", "message")
    assert parse("(VllmWorker rank=0 pid=1) INFO 01-02 03:04:05.678 [w.py:1] up").process == "VllmWorker"


@pytest.mark.parametrize("path, number", [
    (LOGS / "startup" / "cpu-serve-real-gate.log", 68),  # uvicorn's "INFO:     Started server process [12268]"
    (LOGS / "startup" / "cpu-serve-real-gate.log", 1),  # Triton's notice, printed before logging is set up
    (ASCEND / "vllm-ascend-engine-prefix-6678.log", 1),  # a Python warning behind two process prefixes
])
def test_lines_the_vllm_logger_did_not_write(path, number):
    assert parse(line(path, number)) is None


def test_leap_day_needs_a_leap_year():
    got = parse("INFO 02-29 10:00:00 [api_utils.py:286] non-default args: {}")
    assert got.local_time(2028) == datetime(2028, 2, 29, 10, 0, 0)
    with pytest.raises(ValueError):
        got.local_time(2027)
