"""A real run (vLLM on CPU) writes the report; `studykit report` rebuilds it alone, leaving the stages be."""

from __future__ import annotations

import json
import math

import pytest

from conftest import run_cli, tiny_study
from studykit.results import read_json

pytestmark = pytest.mark.e2e


def test_real_run_writes_the_report_and_report_command_rebuilds_it(tmp_path, default_model_dir, no_vllm_left):
    from safetensors import safe_open

    params = tiny_study(tmp_path, {"stages": ["deploy", "report"], "deploy": {"dummy_gate": False}})
    outputs = tmp_path / "outputs"
    result = run_cli("run", str(params), env={"STUDYKIT_OUTPUTS": str(outputs)})
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = next(outputs.glob("smollm2-135m-cpu/*/"))
    assert result.stdout.strip().splitlines()[-1] == f"report: {run_dir / 'report.html'}"
    for name in ("report.zh.md", "report.en.md", "report.html"):
        assert (run_dir / name).stat().st_size > 0, name

    deploy = read_json(run_dir / "results" / "deploy.json")
    records = [json.loads(line) for line in (run_dir / "commands.jsonl").read_text().splitlines()]
    serve = next(r for r in records if r["label"] == "real-gate")
    en, zh = (run_dir / "report.en.md").read_text(), (run_dir / "report.zh.md").read_text()
    for text in (en, zh):
        assert deploy["smoke_chat"]["reply"].strip() in text
        assert f"{deploy['real_gate']['ready_seconds']:.3f}" in text
        assert f"```bash\n{serve['command']}\n```" in text
    with safe_open(str(default_model_dir / "model.safetensors"), "np") as f:
        params_count = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    assert f"{params_count:,}" in en
    assert "`LlamaForCausalLM` declared in config.json is in the installed vLLM" in en
    assert "This stage (latency) did not run (not in the study's stages)" in en

    summary = read_json(run_dir / "results" / "report.json")
    assert summary["status"] == "passed" and summary["model"]["parameters"] == params_count
    assert summary["reference"]["label"].startswith("Seed report")  # the default study compares with the seed
    state = read_json(run_dir / "run.json")
    deploy_record, first_report = state["stages"]["deploy"], state["stages"]["report"]

    again = run_cli("report", str(run_dir), "--reference", str(run_dir), env={"STUDYKIT_OUTPUTS": str(outputs)})
    assert again.returncode == 0, again.stdout + again.stderr
    state = read_json(run_dir / "run.json")
    assert state["stages"]["deploy"] == deploy_record
    assert state["stages"]["report"]["started_utc"] > first_report["started_utc"]
    assert read_json(run_dir / "results" / "report.json")["reference"]["source"] == str(run_dir)
    print(f"report stage: {first_report['wall_seconds']} s wall, "
          f"{summary['generation_seconds']} s building the report")
