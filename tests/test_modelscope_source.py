"""Weights from ModelScope only: cache hit offline, revision mismatch refused, files checked against what
ModelScope lists for the revision, and a clear message when the hub cannot be reached."""

import json
import os
import re
import subprocess
import sys

import pytest

import modelscope
from conftest import ROOT, run_cli, tiny_study, why_run_failed
from studykit.weights import modelscope as ms
from studykit.weights import files
from studykit.weights import store
from studykit.evidence.journal import CommandLog, read_commands
from studykit.params import load_study
from studykit.weights.files import WeightsError

MODEL_ID = "OpenBMB/BitCPM4-0.5B"
FILES = {"config.json": b'{"architectures": ["MiniCPMForCausalLM"], "auto_map": {"AutoConfig": '
                        b'"configuration_minicpm.MiniCPMConfig"}}',
         "configuration_minicpm.py": b"# config class\n", "model.safetensors": b"\x00" * 1000}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDYKIT_CACHE", str(tmp_path / "cache"))
    # Were anything to reach for the network, it would fail fast here instead of reaching modelscope.cn.
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "http://127.0.0.1:1")
    return tmp_path / "cache"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the cache-hit path must not call ModelScope")

    monkeypatch.setattr(modelscope, "snapshot_download", refuse)
    monkeypatch.setattr(ms, "hub_listing", refuse)


def prepared(model_id=MODEL_ID, revision="abc123", manifest_revision=None) -> "os.PathLike":
    d = ms.cache_dir_for(model_id, revision)
    d.mkdir(parents=True)
    for name, data in FILES.items():
        (d / name).write_bytes(data)
    files.write_manifest(d, source="modelscope", id=model_id, revision=manifest_revision or revision)
    return d


def listing_of(files: dict) -> list[dict]:
    import hashlib

    return [{"path": k, "size": len(v), "sha256": hashlib.sha256(v).hexdigest()} for k, v in files.items()]


def fake_snapshot(files: dict, seen: dict):
    def snapshot_download(model_id, revision=None, local_dir=None, **kw):
        seen.update(model_id=model_id, revision=revision, local_dir=local_dir, hf_offline=os.environ.get("HF_HUB_OFFLINE"))
        for name, data in files.items():
            (ms.Path(local_dir) / name).write_bytes(data)
        return local_dir

    return snapshot_download


def test_cache_hit_is_offline_and_recorded(cache, no_network, tmp_path):
    d = prepared()
    log = CommandLog(tmp_path / "run", "deploy")
    assert ms.download(MODEL_ID, "abc123", commands=log, log=lambda *_: None) == d
    (note,) = read_commands(tmp_path / "run")
    assert note["command"] == f"modelscope download --model {MODEL_ID} --revision abc123 --local_dir {d}"
    assert note["extra"]["cached"] is True


def test_resolve_uses_modelscope_for_a_modelscope_study(cache, no_network, tmp_path):
    d = prepared(revision="v1.0")
    study = load_study(tiny_study(tmp_path, {"model": {"source": "modelscope", "id": MODEL_ID, "revision": "v1.0",
                                                       "trust_remote_code": True}}))
    assert store.resolve(study) == d
    assert d == cache / "modelscope" / "OpenBMB" / "BitCPM4-0.5B" / "v1.0"


def test_revision_mismatch_refused(cache, no_network):
    prepared(revision="v2", manifest_revision="v1")
    with pytest.raises(WeightsError) as info:
        ms.download(MODEL_ID, "v2", log=lambda *_: None)
    msg = str(info.value)
    assert "revision mismatch" in msg and f"{MODEL_ID}@v1" in msg and f"{MODEL_ID}@v2" in msg


def test_other_model_in_the_directory_refused(cache, no_network):
    d = prepared(revision="v1")
    files.write_manifest(d, source="modelscope", id="someone/else", revision="v1")
    with pytest.raises(WeightsError, match="holds someone/else@v1"):
        ms.download(MODEL_ID, "v1", log=lambda *_: None)


def test_download_checks_files_against_hub_listing(cache, monkeypatch):
    seen = {}
    monkeypatch.setattr(modelscope, "snapshot_download", fake_snapshot(FILES, seen))
    monkeypatch.setattr(ms, "hub_listing", lambda mid, rev: listing_of(FILES))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    d = ms.download(MODEL_ID, "abc123", log=lambda *_: None)
    assert seen["model_id"] == MODEL_ID and seen["revision"] == "abc123"
    assert seen["hf_offline"] == "1" and "HF_HUB_OFFLINE" not in os.environ  # offline during, restored after
    manifest = files.read_manifest(d)
    assert (manifest["id"], manifest["revision"], manifest["hub_listing_checked"]) == (MODEL_ID, "abc123", True)
    assert {r["file"] for r in manifest["files"]} == set(FILES)
    assert manifest["command"].startswith("modelscope download --model OpenBMB/BitCPM4-0.5B --revision abc123")
    assert files.verify(d)[0]


def test_download_differing_from_listing_refused(cache, monkeypatch):
    monkeypatch.setattr(modelscope, "snapshot_download", fake_snapshot(FILES, {}))
    other = dict(FILES, **{"model.safetensors": b"\x01" * 1000})
    monkeypatch.setattr(ms, "hub_listing", lambda mid, rev: listing_of(other) + [{"path": "extra.bin", "size": 1}])
    with pytest.raises(WeightsError) as info:
        ms.download(MODEL_ID, "abc123", log=lambda *_: None)
    msg = str(info.value)
    assert "model.safetensors: sha256" in msg and "extra.bin: listed by ModelScope" in msg
    assert not ms.cache_dir_for(MODEL_ID, "abc123").exists()  # nothing unverified is left as a usable cache


def test_changed_cached_file_downloads_again(cache, monkeypatch):
    d = prepared()
    (d / "model.safetensors").write_bytes(b"\x02" * 1000)
    seen = {}
    monkeypatch.setattr(modelscope, "snapshot_download", fake_snapshot(FILES, seen))
    monkeypatch.setattr(ms, "hub_listing", lambda mid, rev: listing_of(FILES))
    assert ms.download(MODEL_ID, "abc123", log=lambda *_: None) == d
    assert seen["revision"] == "abc123" and (d / "model.safetensors").read_bytes() == FILES["model.safetensors"]


@pytest.mark.parametrize("model_id,revision,needle", [
    ("BitCPM4-0.5B", "v1", "owner/name"),
    (MODEL_ID, "", "revision ''"),
    (MODEL_ID, "../etc", "revision '../etc'"),
])
def test_bad_id_or_revision(cache, model_id, revision, needle):
    with pytest.raises(WeightsError, match=re.escape(needle)):
        ms.download(model_id, revision, log=lambda *_: None)


def test_unreachable_hub_message(tmp_path):
    """The real ModelScope client against an endpoint nothing listens on (this machine has no route to
    modelscope.cn either): the error names the hub, the model and revision, and says no other hub was tried."""
    code = ("from studykit.weights.modelscope import download\n"
            "from studykit.weights.files import WeightsError\n"
            "try:\n    download('OpenBMB/BitCPM4-0.5B', 'master', log=lambda *_: None)\n"
            "except WeightsError as e:\n    print('WEIGHTS-ERROR', e)\n")
    env = {**os.environ, "STUDYKIT_CACHE": str(tmp_path / "cache"), "MODELSCOPE_ENDPOINT": "http://127.0.0.1:1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    out = r.stdout
    assert "WEIGHTS-ERROR ModelScope download of OpenBMB/BitCPM4-0.5B@master from http://127.0.0.1:1 failed" in out, \
        r.stdout + r.stderr
    assert "No other hub was tried" in out and "Connection refused" in out
    assert not (tmp_path / "cache" / "modelscope" / "OpenBMB" / "BitCPM4-0.5B" / "master").exists()
    assert "huggingface" not in (r.stdout + r.stderr).lower()


@pytest.mark.e2e
def test_modelscope_study_runs_offline_from_prepared_cache(tmp_path, no_vllm_left):
    """The Ascend profile's weights path on CPU: a study with source modelscope whose revision is already in the
    kit cache (the tiny MiniCPM, copied there with its manifest) deploys with the hub unreachable; vLLM gets
    VLLM_USE_MODELSCOPE and serves the cached directory under the ModelScope id."""
    import shutil

    from studykit.weights.minicpm_tiny import build_minicpm_tiny

    cache = tmp_path / "cache"
    target = cache / "modelscope" / "OpenBMB" / "MiniCPM-tiny" / "v1"
    shutil.copytree(build_minicpm_tiny(log=lambda *_: None), target)
    files.write_manifest(target, source="modelscope", id="OpenBMB/MiniCPM-tiny", revision="v1")
    params = tiny_study(tmp_path, {
        "model": {"source": "modelscope", "id": "OpenBMB/MiniCPM-tiny", "revision": "v1", "served_model_name": None},
        "stages": ["deploy"], "deploy": {"dummy_gate": False}}, base=ROOT / "params" / "minicpm-tiny-cpu.yaml")
    outputs = tmp_path / "outputs"
    r = run_cli("run", str(params), env={"STUDYKIT_OUTPUTS": str(outputs), "STUDYKIT_CACHE": str(cache),
                                          "MODELSCOPE_ENDPOINT": "http://127.0.0.1:1"}, timeout=900)
    (run_dir,) = (outputs / "minicpm-tiny-cpu").iterdir()
    assert r.returncode == 0, why_run_failed(r, run_dir)
    records = read_commands(run_dir)
    note = next(x for x in records if x["label"] == "modelscope download")
    assert note["extra"]["cached"] is True and "--revision v1" in note["command"]
    serve = next(x for x in records if x["is_vllm"])
    assert serve["env"]["VLLM_USE_MODELSCOPE"] == "True" and serve["env"]["HF_HUB_OFFLINE"] == "1"
    assert str(target) in serve["argv"] and "--served-model-name" in serve["argv"]
    deploy = json.loads((run_dir / "results" / "deploy.json").read_text())
    assert [m["id"] for m in deploy["models"]] == ["OpenBMB/MiniCPM-tiny"] and deploy["smoke_chat"]["reply"].strip()
