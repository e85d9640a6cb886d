"""Fault injection: the STUDYKIT_FAULT parser and plugin (unit), and real vLLM with a fault on (e2e)."""

from __future__ import annotations

import importlib.metadata
import logging
import sys
import tomllib
import types
from pathlib import Path

import pytest
import torch

from studykit.faults import ENV_VAR, FAULTS, FaultError, faults_in_log, parse
from studykit.faults import plugin

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINT = "studykit.faults.plugin:register"


# ---- parsing -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [None, "", "   "])
def test_unset_or_blank_is_no_fault(text):
    assert parse(text) is None


def test_unknown_fault_names_every_known_fault():
    with pytest.raises(FaultError) as err:
        parse("rope_stlye")
    msg = str(err.value)
    assert "'rope_stlye'" in msg and ENV_VAR in msg
    for name in FAULTS:
        assert name in msg


def test_defaults_are_filled_and_values_override_them():
    spec = parse("sampler_second_choice")
    assert (spec.name, spec.params) == ("sampler_second_choice", {"p": 0.3})
    spec = parse(" decode_delay , ms=2.5 ,frac=0.05")
    assert spec.params == {"ms": 2.5, "frac": 0.05}
    assert parse("rope_style").params == {}


@pytest.mark.parametrize("text, says", [
    ("kv_stale,afterr=3", "its parameters: after=<number>"),
    ("rope_style,k=1", "its parameters: none"),
    ("kv_stale,after", "no parameter 'after'"),
    ("rope_theta,base=ten", "base='ten' is not a number"),
    ("sampler_second_choice,p=1.5", "p=1.5"),
    ("kv_stale,after=2.5", "after=2.5"),
    ("decode_delay,ms=0", "not both 0"),
    ("rope_theta,base=1", "base=1.0"),
])
def test_bad_parameters_are_named(text, says):
    with pytest.raises(FaultError, match="STUDYKIT_FAULT") as err:
        parse(text)
    assert says in str(err.value)


def test_the_log_line_names_the_fault_and_reads_back():
    spec = parse("decode_delay,ms=2")
    line = spec.log_line()
    assert "fault=decode_delay" in line and "ms=2" in line and "frac=0" in line
    for url in FAULTS["decode_delay"].imitates:
        assert url in line
    log = f"(EngineCore pid=1) WARNING x [plugin.py:30] {line}\n(Worker pid=2) WARNING x [plugin.py:30] {line}\n"
    assert faults_in_log(log) == [("decode_delay", {"frac": 0.0, "ms": 2.0})] * 2
    assert faults_in_log("INFO nothing injected here\n") == []


def test_the_catalog_is_complete():
    from studykit.faults.patches import INSTALL

    assert len(FAULTS) >= 7  # six correctness faults at least, plus the decode delay
    assert set(INSTALL) == set(FAULTS)
    for fault in FAULTS.values():
        assert fault.imitates and all(u.startswith("https://github.com/") for u in fault.imitates), fault.name
        assert fault.patched.startswith("vllm."), fault.name
        assert parse(fault.name).params == {k: float(v) for k, v in fault.params.items()}  # defaults are valid


# ---- the plugin ----------------------------------------------------------------------------------------------

@pytest.fixture
def no_patches(monkeypatch):
    """A stand-in for studykit.faults.patches that records installs instead of patching vLLM."""
    fake = types.ModuleType("studykit.faults.patches")
    fake.installed = []
    fake.install = fake.installed.append
    monkeypatch.setitem(sys.modules, "studykit.faults.patches", fake)
    return fake


def test_plugin_is_inert_without_the_variable(monkeypatch, no_patches, caplog):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with caplog.at_level(logging.DEBUG, logger="vllm.studykit.faults"):
        plugin.register()
    assert no_patches.installed == [] and caplog.records == []


def test_plugin_refuses_an_unknown_fault_loudly(monkeypatch, no_patches, caplog):
    monkeypatch.setenv(ENV_VAR, "kv_stael,after=3")
    with caplog.at_level(logging.ERROR, logger="vllm.studykit.faults"), pytest.raises(FaultError):
        plugin.register()
    assert no_patches.installed == []
    assert "unknown fault 'kv_stael'" in caplog.text and "kv_stale" in caplog.text


def test_plugin_installs_and_logs_the_active_fault(monkeypatch, no_patches, caplog):
    monkeypatch.setenv(ENV_VAR, "kv_stale,after=7")
    with caplog.at_level(logging.INFO, logger="vllm.studykit.faults"):
        plugin.register()
    assert [(s.name, s.params) for s in no_patches.installed] == [("kv_stale", {"after": 7.0})]
    assert faults_in_log(caplog.text) == [("kv_stale", {"after": 7.0})]


def test_pyproject_registers_the_plugin_with_vllm():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    group = data["project"]["entry-points"]["vllm.general_plugins"]
    assert list(group.values()) == [ENTRY_POINT]
    module, _, func = ENTRY_POINT.partition(":")
    assert getattr(__import__(module, fromlist=[func]), func) is plugin.register


# ---- patch arithmetic that does not need an engine ------------------------------------------------------------

def test_token_positions_follow_each_requests_seq_len():
    from studykit.faults.patches import _token_positions

    # request 0: a 3-token prefill from scratch; request 1: one decode token at position 9 (10 tokens known);
    # request 2: the second chunk (positions 4..5) of a chunked prefill
    md = types.SimpleNamespace(query_start_loc=torch.tensor([0, 3, 4, 6], dtype=torch.int32),
                               seq_lens=torch.tensor([3, 10, 6], dtype=torch.int32))
    assert _token_positions(md).tolist() == [0, 1, 2, 9, 4, 5]


# ---- real vLLM ----------------------------------------------------------------------------------------------

PROMPT = "Once upon a time, in a small village by the sea, there lived"  # top probability 0.18 at its 2nd token
MODEL_FAULT = "kv_stale,after=16"  # the prompt is 15 tokens: the cache goes stale from the 2nd generated token


def _plugin_pythonpath(tmp_path: Path) -> str:
    """PYTHONPATH for the server; when the venv was installed before the kit declared its entry point, a
    throwaway dist-info makes vLLM's entry-point lookup find the plugin."""
    paths = [str(ROOT / "lib")]
    declared = [ep.value for ep in importlib.metadata.entry_points(group="vllm.general_plugins")]
    if ENTRY_POINT not in declared:
        info = tmp_path / "shim" / "studykit_faults_dev-0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: studykit-faults-dev\nVersion: 0\n")
        (info / "entry_points.txt").write_text(f"[vllm.general_plugins]\nstudykit_faults = {ENTRY_POINT}\n")
        paths.insert(0, str(info.parent))
    return ":".join(paths)


def _complete(study, model_dir, tmp_path, label: str, fault: str | None) -> tuple[str | None, str]:
    """One `vllm serve` with STUDYKIT_FAULT=fault: the greedy completion of PROMPT and the server log."""
    from studykit.engine.cmdline import platform_env, serve_argv
    from studykit.engine.server import ServerError, VllmServer, free_port, http_post_json
    from studykit.evidence.journal import CommandLog

    port = free_port()
    env = {**platform_env(study), "PYTHONPATH": _plugin_pythonpath(tmp_path / label)}
    if fault:
        env[ENV_VAR] = fault
    log = tmp_path / f"{label}.log"
    server = VllmServer(serve_argv(study, model_dir, port), host="127.0.0.1", port=port, env_extra=env,
                        log_path=log, commands=CommandLog(tmp_path, "faults"), label=label, ready_timeout_s=600)
    try:
        with server:
            out = http_post_json(server.base_url + "/v1/completions",
                                 {"model": study.model.name_served, "prompt": PROMPT, "max_tokens": 12,
                                  "temperature": 0})
            return out["choices"][0]["text"], log.read_text(errors="replace")
    except ServerError:
        return None, log.read_text(errors="replace")


@pytest.mark.e2e
def test_faults_change_the_greedy_completion(tmp_path, default_model_dir, no_vllm_left):
    from studykit.params import load_study

    study = load_study(ROOT / "params" / "smollm2-135m-cpu.yaml")
    clean, clean_log = _complete(study, default_model_dir, tmp_path, "clean", None)
    assert clean, clean_log[-3000:]
    assert faults_in_log(clean_log) == []

    for fault in ("sampler_second_choice", MODEL_FAULT):
        text, log = _complete(study, default_model_dir, tmp_path, fault.split(",")[0], fault)
        assert text is not None, log[-3000:]
        spec = parse(fault)
        # the engine core and the worker that runs the model each loaded the plugin and said so
        assert faults_in_log(log).count((spec.name, spec.params)) >= 2, log[-3000:]
        assert text != clean, (fault, text)

    text, log = _complete(study, default_model_dir, tmp_path, "unknown", "rope_stlye")
    assert text is None, "vLLM served with an unknown fault name"
    assert "unknown fault 'rope_stlye'" in log and "rope_style" in log


# ---- the patches' own logic, around stand-ins for the vLLM functions they wrap (vLLM imported, no engine) -----

def test_decode_delay_sleeps_on_decode_only_steps(monkeypatch):
    import time

    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    from studykit.faults.patches import _decode_delay

    monkeypatch.setattr(GPUModelRunner, "execute_model", lambda self, so, it=None: "out")
    _decode_delay({"ms": 60.0, "frac": 0.0})

    def wall(scheduled):
        t0 = time.perf_counter()
        assert GPUModelRunner.execute_model(None, types.SimpleNamespace(num_scheduled_tokens=scheduled)) == "out"
        return time.perf_counter() - t0

    assert wall({"a": 1, "b": 1}) >= 0.06  # every request decodes one token
    assert wall({"a": 1, "b": 7}) < 0.03   # a prefill chunk in the step: not a decode step
    assert wall({}) < 0.03


def test_sampler_slips_once_per_request_where_the_model_is_unsure(monkeypatch):
    from vllm.v1.sample.sampler import Sampler
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    from studykit.faults.patches import _sampler_second_choice

    monkeypatch.setattr(Sampler, "sample", lambda self, logits, md, mode=None: (logits.argmax(-1), None))
    monkeypatch.setattr(GPUModelRunner, "_sample", lambda self, logits, spec: self.sampler.sample(logits, self.md))
    _sampler_second_choice({"p": 0.3})

    def step(req_ids, probs, discard=None, temperature=None):
        runner = types.SimpleNamespace(
            sampler=Sampler.__new__(Sampler), input_batch=types.SimpleNamespace(req_ids=req_ids),
            discard_request_mask=types.SimpleNamespace(np=discard or [False] * len(req_ids)),
            md=types.SimpleNamespace(all_greedy=temperature is None, temperature=temperature))
        logits = torch.tensor(probs).log()
        return GPUModelRunner._sample(runner, logits, None)[0].tolist()

    unsure, sure, tie = [0.28, 0.26, 0.24, 0.22], [0.7, 0.1, 0.1, 0.1], [0.23, 0.27, 0.27, 0.23]
    # a: unsure -> its second choice; b: sure -> untouched; c: being prefilled in chunks -> discarded, untouched
    assert step(["a", "b", "c"], [unsure, sure, unsure], discard=[False, False, True]) == [1, 0, 0]
    # a slipped already; c's first real step slips; at an exact tie greedy takes the first, the fault the other
    assert step(["a", "c", "d"], [unsure, unsure, tie]) == [0, 1, 2]
    # sampling requests (temperature > 0) are not the greedy path the fault imitates
    assert step(["e"], [unsure], temperature=torch.tensor([0.8])) == [0]
