"""Bad study definitions stop before anything starts: exit 2, a message naming the key, no run directory."""

import pytest
import yaml

from conftest import DEFAULT_PARAMS, run_cli, tiny_study
from studykit.params import ParamsError, load_study, parse_study

BAD = [
    ({"model": {"sourcee": "builtin"}}, "model.sourcee", "unknown key"),
    ({"colour": "blue"}, "colour", "unknown key"),
    ({"model": {"max_model_len": "long"}}, "model.max_model_len", "valid integer"),
    ({"model": {"max_model_len": -5}}, "model.max_model_len", "greater than 0"),
    ({"latency": {"input_len": -1}}, "latency.input_len", "greater than 0"),
    ({"server": {"port": 70000}}, "server.port", "1..65535"),
    ({"server": {"port": "eighty"}}, "server.port", "auto"),
    ({"platform": "gpu"}, "platform", "'cpu' or 'npu'"),
    ({"model": {"source": "local", "path": "/nonexistent/model"}}, "model", "not an existing directory"),
    ({"model": {"source": "local", "path": None}}, "model", "needs model.path"),
    ({"model": {"source": "modelscope", "id": "OpenBMB/BitCPM4-0.5B"}}, "model", "revision"),
    ({"model": {"id": "no-such-builtin"}}, "model", "allowed: smollm2-135m-instruct"),
    ({"stages": ["deploy", "warp"]}, "stages[1]", "'deploy'"),
    ({"name": "has space"}, "name", "pattern"),
]


@pytest.mark.parametrize("override,key,allowed", BAD, ids=[b[1] + ":" + b[2][:12] for b in BAD])
def test_bad_params_message_names_key_and_allowed(tmp_path, override, key, allowed):
    path = tiny_study(tmp_path, override)
    with pytest.raises(ParamsError) as info:
        load_study(path)
    msg = str(info.value)
    assert f"  {key}:" in msg, msg
    assert allowed in msg, msg


def test_cli_bad_params_exit_2_and_no_run_dir(tmp_path):
    path = tiny_study(tmp_path, {"server": {"port": 0}, "model": {"dtypo": "x"}})
    outputs = tmp_path / "outputs"
    result = run_cli("run", str(path), env={"STUDYKIT_OUTPUTS": str(outputs)})
    assert result.returncode == 2, result.stderr
    assert "server.port" in result.stderr and "model.dtypo" in result.stderr
    assert not outputs.exists()


def test_cli_missing_params_file_and_not_yaml(tmp_path):
    outputs = tmp_path / "outputs"
    missing = run_cli("run", str(tmp_path / "nope.yaml"), env={"STUDYKIT_OUTPUTS": str(outputs)})
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    bad_yaml = run_cli("run", str(broken), env={"STUDYKIT_OUTPUTS": str(outputs)})
    assert bad_yaml.returncode == 2 and "not valid YAML" in bad_yaml.stderr
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    not_mapping = run_cli("run", str(listy), env={"STUDYKIT_OUTPUTS": str(outputs)})
    assert not_mapping.returncode == 2 and "mapping" in not_mapping.stderr
    assert not outputs.exists()


def test_cli_unknown_stage_is_usage_error(tmp_path):
    result = run_cli("run", str(DEFAULT_PARAMS), "--stages", "deploy,warp",
                     env={"STUDYKIT_OUTPUTS": str(tmp_path / "o")})
    assert result.returncode == 2 and "warp" in result.stderr
    assert not (tmp_path / "o").exists()


def test_default_study_is_valid_and_cpu_defaults_to_eager():
    study = load_study(DEFAULT_PARAMS)
    assert study.platform == "cpu" and study.enforce_eager
    npu = parse_study({**yaml.safe_load(DEFAULT_PARAMS.read_text()), "platform": "npu"})
    assert not npu.enforce_eager  # graph mode is the Ascend default


def test_local_relative_path_resolves_against_params_file(tmp_path):
    (tmp_path / "ckpt").mkdir()
    path = tiny_study(tmp_path, {"model": {"source": "local", "path": "ckpt", "id": "mine"}})
    assert load_study(path).model.path == (tmp_path / "ckpt").resolve()


def test_ray_backend_on_cpu_is_a_params_error_exit_2(tmp_path):
    path = tiny_study(tmp_path, {"server": {"distributed_executor_backend": "ray", "tensor_parallel_size": 2}})
    with pytest.raises(ParamsError, match="current platform cpu does not support ray") as info:
        load_study(path)
    assert "allowed on cpu: 'mp'" in str(info.value)
    outputs = tmp_path / "outputs"
    result = run_cli("run", str(path), env={"STUDYKIT_OUTPUTS": str(outputs)})
    assert result.returncode == 2 and "does not support ray" in result.stderr, result.stderr
    assert not outputs.exists()
    # The same backend is a valid choice where vLLM supports it, and mp stays valid on cpu.
    assert parse_study({**yaml.safe_load(path.read_text()), "platform": "npu"}).server.distributed_executor_backend == "ray"
    mp = tiny_study(tmp_path, {"server": {"distributed_executor_backend": "mp", "tensor_parallel_size": 2}})
    assert load_study(mp).server.distributed_executor_backend == "mp"


@pytest.mark.parametrize("revision", ["a1b2c3d", "0123456789abcdef0123456789abcdef01234567", "v1.0", "1.2.3",
                                      "v2", "v1.0-rc1"])
def test_pinned_modelscope_revision_is_accepted(tmp_path, revision):
    path = tiny_study(tmp_path, {"model": {"source": "modelscope", "id": "OpenBMB/BitCPM4-0.5B", "revision": revision}})
    assert load_study(path).model.revision == revision


@pytest.mark.parametrize("revision", ["master", "main", "HEAD", "dev", "feature/x", "abc12", "release"])
def test_branch_revision_is_a_params_error_naming_the_value(tmp_path, revision):
    path = tiny_study(tmp_path, {"model": {"source": "modelscope", "id": "OpenBMB/BitCPM4-0.5B", "revision": revision}})
    with pytest.raises(ParamsError) as info:
        load_study(path)
    msg = str(info.value)
    assert f"model.revision {revision!r}" in msg and "commit id" in msg and "allow_unpinned_revision" in msg, msg


def test_branch_revision_allowed_when_the_study_says_so(tmp_path):
    path = tiny_study(tmp_path, {"model": {"source": "modelscope", "id": "OpenBMB/BitCPM4-0.5B", "revision": "master",
                                           "allow_unpinned_revision": True}})
    assert load_study(path).model.revision == "master"


def test_cli_branch_revision_exits_2(tmp_path):
    path = tiny_study(tmp_path, {"model": {"source": "modelscope", "id": "OpenBMB/BitCPM4-0.5B", "revision": "main"}})
    result = run_cli("run", str(path), env={"STUDYKIT_OUTPUTS": str(tmp_path / "o")})
    assert result.returncode == 2 and "model.revision 'main'" in result.stderr, result.stderr
    assert not (tmp_path / "o").exists()


def test_ascend_profile_says_it_is_unpinned_and_how_to_pin():
    from conftest import ROOT

    path = ROOT / "params" / "bitcpm4-0.5b-ascend.yaml"
    study = load_study(path)
    assert study.model.revision == "master" and study.model.allow_unpinned_revision
    assert "Files" in path.read_text() and "commit id" in path.read_text()


def test_prompts_file_and_reference_resolve_against_params_file(tmp_path, monkeypatch):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "prompts.jsonl").write_text('{"id": "a", "prompt": "hi"}\n')
    (tmp_path / "study" / "ref.yaml").write_text("metrics: {}\n")
    path = tiny_study(tmp_path / "study", {"accuracy": {"prompts_file": "prompts.jsonl"},
                                           "report": {"reference": "ref.yaml"}})
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    study = load_study(path)
    assert study.accuracy.prompts_file == str((tmp_path / "study" / "prompts.jsonl").resolve())
    assert study.report.reference == str((tmp_path / "study" / "ref.yaml").resolve())


def test_builtin_prompts_and_kit_root_reference_are_left_as_written():
    study = load_study(DEFAULT_PARAMS)
    assert study.accuracy.prompts_file == "builtin:default"
    # Not beside the params file: left for the report's loader (working directory, then kit root).
    assert study.report.reference == yaml.safe_load(DEFAULT_PARAMS.read_text())["report"]["reference"]


def test_infinite_request_rate_survives_params_yaml_and_notebook_injection(tmp_path):
    """The run's params.yaml and papermill's injected values are JSON: inf must come back as inf, not null."""
    from studykit.params import dump_study

    study = load_study(tiny_study(tmp_path, {"serve": {"request_rates": [4, float("inf")]}}))
    again = parse_study(yaml.safe_load(dump_study(study)))
    assert again.serve.request_rates == [4.0, float("inf")]
    assert study.stage_params("serve")["request_rates"] == [4.0, "Infinity"]
