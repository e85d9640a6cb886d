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




TITLED = "import setproctitle, time; setproctitle.setproctitle({title!r}); time.sleep({pause}); {then}time.sleep(120)"
# After 2 s (sampled and orphaned by then) the server-to-be starts an engine core in its session, as vllm serve does.
ENGINE_CORE = ("import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
               + repr(TITLED.format(title="VLLM::EngineCore", pause=0, then="")) + "]); ")


def _orphan(script: str, release=None):
    """A process running `script` in a session of its own, whose starter exits: init or a subreaper adopts it,
    so it ends outside this pytest's process tree. With `release`, the starter waits until release() has run,
    while the orphan-to-be is still its child."""
    starter = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {script!r}], "
         "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
         "print(p.pid, flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proc = psutil.Process(int(starter.stdout.readline()))
    deadline = time.monotonic() + 30
    while "VLLM::" not in " ".join(proc.cmdline()) and time.monotonic() < deadline:
        time.sleep(0.05)
    if release:
        release()
    starter.communicate("go\n", timeout=30)
    assert os.getpid() not in [p.pid for p in proc.parents()], "the orphan is still in pytest's process tree"
    return proc


def test_leftover_fixture_counts_only_the_tests_own_vllm_processes():
    """no_vllm_left's logic (conftest.OwnProcesses): a vLLM-titled process started outside the test's watch (a
    study beside the suite) is not the test's; one the test started is, also once orphaned out of the process
    tree, and so is a process started later in its session (its engine core). setproctitle blanks the environment
    these processes show, as vLLM's do. The old count (every vLLM process on the machine) took all three."""
    from conftest import OwnProcesses, vllm_processes

    stranger = _orphan(TITLED.format(title="VLLM::EngineCore", pause=0, then=""))
    own = OwnProcesses()
    ours = _orphan(TITLED.format(title="VLLM::APIServer", pause=2, then=ENGINE_CORE), release=own.sample)
    cores = []
    try:
        deadline = time.monotonic() + 30
        while not (cores := ours.children()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cores and (cores[0].pid, cores[0].create_time()) not in own.seen  # born after the sample
        assert {stranger.pid, ours.pid, cores[0].pid} <= {p.pid for p in vllm_processes()}
        assert sorted(p.pid for p in own.vllm_left()) == sorted([ours.pid, cores[0].pid])
        assert not own.owns(stranger)
        for p in (ours, *cores):
            p.kill()
        psutil.wait_procs([ours, *cores], timeout=10)
        assert own.wait_vllm_gone(timeout_s=5) == []
        assert stranger.is_running()
    finally:
        for p in (stranger, ours, *cores):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
