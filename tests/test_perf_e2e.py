"""A server killed mid-bench, for real: the stage fails with the server's log tail and keeps the point that
finished. (The perf stages of a healthy run are checked on the session's default run: test_default_run_e2e.)"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import tiny_study


def load(path):
    return json.loads(Path(path).read_text())


def test_server_dies_mid_bench(tmp_path, default_model_dir, no_vllm_left):
    from studykit.stages.serve import stage
    from studykit.runner.context import StageFailed, open_stage

    p = tiny_study(tmp_path, {"serve": {"input_len": 8, "output_len": 64, "num_prompts": 8,
                                        "request_rates": [float("inf"), 1.0], "num_warmups": 0}})
    run_dir = tmp_path / "run"
    ctx = open_stage("serve", str(run_dir), str(p))
    first = ctx.raw_dir / "rate-inf-rep-1.json"
    killed = {}

    def killer():
        # let the first point finish, then kill the server while the second (8 requests at 1/s) is running
        # a loaded 2-core host can take minutes to start the engine; a kill before the first point would test a
        # death while starting (test_lifecycle's), not one mid-bench
        deadline = time.monotonic() + 1500
        while not first.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not first.exists():
            return
        time.sleep(3)
        (pid_file,) = ctx.layout.pids.glob("*.pid")  # the stage's own server
        killed["pid"] = int(pid_file.read_text().split()[0])
        os.killpg(killed["pid"], signal.SIGKILL)

    threading.Thread(target=killer, daemon=True).start()
    with pytest.raises(StageFailed):  # stage.run records what it measured (ctx.keep) and raises itself
        stage.run(ctx, ctx.study.serve)
    assert killed, "the server was never killed: the first point did not finish"
    doc = load(run_dir / "results" / "serve.json")
    assert doc["status"] == "failed"
    assert "died" in doc["error"] and "last lines of" in doc["error"]
    # the first point survived in the results and on disk
    assert [r["name"] for r in doc["runs"]] == ["rate-inf-rep-1"] and doc["runs"][0]["completed"] == 8
    assert first.is_file() and (ctx.raw_dir / "bench-serve-rate-1-rep-1.log").is_file()
