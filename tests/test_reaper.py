"""reap_leftovers against a live process group (a plain python child in its own session, not vLLM)."""

import os
import signal
import subprocess
import sys
import time

import psutil

from studykit.evidence.journal import group_alive
from studykit.engine.server import reap_leftovers


def _live_group_with_pid_file(pid_dir):
    # The leader starts a grandchild so the whole group, not only the leader, has to go.
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    pid_dir.mkdir(parents=True, exist_ok=True)
    (pid_dir / f"{proc.pid}.pid").write_text(f"{proc.pid}\nleftover for the test\n")
    deadline = time.monotonic() + 30
    while not psutil.Process(proc.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_reap_leftovers_kills_the_group_and_removes_its_pid_file(tmp_path):
    pid_dir = tmp_path / "run" / "pids"
    proc = _live_group_with_pid_file(pid_dir)
    members = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert len(members) == 2 and group_alive(proc.pid)
    try:
        assert reap_leftovers(pid_dir) == [proc.pid]
        proc.wait(timeout=10)
        for p in members:
            assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE, f"{p.pid} survived"
        assert not list(pid_dir.glob("*.pid"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_reap_leftovers_forgets_a_pid_file_whose_group_is_gone(tmp_path):
    pid_dir = tmp_path / "pids"
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    proc.wait()
    pid_dir.mkdir()
    (pid_dir / f"{proc.pid}.pid").write_text(f"{proc.pid}\ngone\n")
    assert reap_leftovers(pid_dir) == []
    assert not list(pid_dir.glob("*.pid"))
