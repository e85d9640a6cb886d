"""Checks on the checkpoint before any vLLM process starts, so a study fails in a second with the reason
instead of after a 30-second engine start with a traceback.

The seed report's known issue 1: BitCPM4's ModelScope repository ships configuration_minicpm.py and
config.json maps AutoConfig to it (auto_map); without `--trust-remote-code` vLLM stops with
"The repository contains custom code which must be executed...". We catch that from config.json.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from studykit.engine.adaptation import AdaptationError, read_config, remote_code_reason
from studykit.engine.ray_cluster import parse_ray_status


class PreflightError(RuntimeError):
    """The study cannot work with this checkpoint; the message says why and what to change."""


def check_platform(study, detect=None, npu_smi_text: str | None = None, torch_npu_devices=None) -> dict:
    """For platform npu: can vLLM use the requested devices here? Two independent checks:

    - torch_npu (what vLLM runs on): how many devices `torch.npu.device_count()` sees, asked in a child process
      (`torch_npu_devices()` returns the count or raises RuntimeError with the reason; injectable for tests);
    - npu-smi (what the report describes the cards with): `npu-smi info` parsed by studykit.evidence.ascend.

    npu-smi fails on hosts where the study still works: for non-root users, in containers without
    /usr/local/dcmi or with the device held by another container (dcmi -8005 / -8020). Its failure is recorded in
    the returned facts (`npu_smi_error`) and printed; the study stops only when torch_npu sees no usable device,
    naming the check that failed. The parallel sizes must fit npu.visible_devices, and those ids must exist.
    Returns the facts it checked."""
    if study.platform != "npu":
        return {"platform": study.platform}
    from studykit.evidence.ascend import AscendParseError, detect_npu, parse_npu_smi_info, run_npu_smi

    ids = study.npu.device_ids
    s = study.server
    needed = s.world_size
    if study.ray is not None:
        # the world spans the cluster's nodes: the cluster is checked, this host's own cards next
        cluster = check_cluster(study)
        needed = len(ids)
    else:
        cluster = {}
    if needed > len(ids):
        raise PreflightError(
            f"tensor_parallel_size {s.tensor_parallel_size} x pipeline_parallel_size {s.pipeline_parallel_size} x "
            f"data_parallel_size {s.data_parallel_size} = {needed} devices, but npu.visible_devices "
            f"{study.npu.visible_devices!r} gives {len(ids)}")
    det = (detect or detect_npu)()
    facts: dict = {"platform": "npu", "devices": ids, **cluster}

    chips = None
    try:
        if npu_smi_text is None and not det["npu_smi"]:
            raise AscendParseError("npu-smi not found (the Ascend driver's tool is not on PATH or in /usr/local/sbin)")
        chips = parse_npu_smi_info(npu_smi_text if npu_smi_text is not None else run_npu_smi(det["npu_smi"]))
        facts.update({"chips": len(chips), "chip_model": sorted({c["name"] for c in chips})})
    except (OSError, subprocess.SubprocessError, AscendParseError) as err:
        facts["npu_smi_error"] = str(err)

    try:
        if not det["torch_npu"]:
            raise RuntimeError("torch_npu is not importable (pip install torch-npu matching torch; source CANN's "
                               "set_env.sh)")
        seen = (torch_npu_devices or torch_npu_device_count)()
        if seen < 1:
            raise RuntimeError("torch.npu.device_count() is 0")
        facts["torch_npu_devices"] = seen
    except RuntimeError as err:
        smi = (f"npu-smi lists {facts['chips']} chip(s)" if chips is not None
               else f"npu-smi failed too: {facts['npu_smi_error']}")
        raise PreflightError(f"platform npu, but this is not a usable Ascend host (no device usable): "
                             f"torch_npu check failed: {err}; {smi}") from None

    missing = [i for i in ids if i >= seen]
    if missing:
        raise PreflightError(f"npu.visible_devices {study.npu.visible_devices!r} asks for device(s) {missing}, but "
                             f"torch_npu sees {seen} device(s): allowed ids 0..{seen - 1}")
    if "npu_smi_error" in facts:
        print(f"preflight: npu-smi failed ({facts['npu_smi_error']}); continuing, torch_npu sees {seen} device(s)",
              file=sys.stderr)
    return facts


def torch_npu_device_count(timeout_s: float = 120.0) -> int:
    """`torch.npu.device_count()` in a child process, so the kit's own process never initialises the NPU runtime.
    Raises RuntimeError with the child's last line when it cannot answer."""
    code = "import torch, torch_npu; print(torch.npu.device_count())"
    # A visibility restriction in the kit's environment is the host's; the study applies its own to vLLM only.
    env = {k: v for k, v in os.environ.items() if k != "ASCEND_RT_VISIBLE_DEVICES"}
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`import torch_npu; torch.npu.device_count()` did not answer in {timeout_s:.0f} s") \
            from None
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    if proc.returncode != 0 or not last.isdigit():
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise RuntimeError(f"torch.npu.device_count() failed: {why[:300]}")
    return int(last)


def check_model(study, model_dir: str | Path) -> dict:
    """Raise PreflightError if the study cannot run this checkpoint here: the platform (check_platform), then
    the checkpoint (check_checkpoint). Returns what was checked."""
    return {**check_platform(study), **check_checkpoint(study, model_dir)}


def check_checkpoint(study, model_dir: str | Path) -> dict:
    """Raise PreflightError if the study's model settings cannot load this checkpoint."""
    model_dir = Path(model_dir)
    try:
        cfg = read_config(model_dir)
    except AdaptationError as err:
        raise PreflightError(f"model {study.model.id!r}: {err}") from None
    reason = remote_code_reason(cfg)
    if reason and not study.model.trust_remote_code:
        raise PreflightError(
            f"model {study.model.id!r} needs trust_remote_code, but the study has model.trust_remote_code: false.\n"
            f"  why: {reason}.\n"
            f"  fix: set `model.trust_remote_code: true` in the params file (vLLM then gets --trust-remote-code),\n"
            f"       after reading the checkpoint's code: {', '.join(sorted(p.name for p in model_dir.glob('*.py'))) or '(no .py files found)'}"
            f" in {model_dir}.")
    if reason:
        missing = _missing_auto_map_files(cfg, model_dir)
        if missing:
            raise PreflightError(
                f"model {study.model.id!r}: config.json auto_map points at {', '.join(missing)}, "
                f"which {model_dir} does not contain; the checkpoint is incomplete (re-download it)")
    return {"config": str(model_dir / "config.json"), "trust_remote_code_required": reason is not None,
            "reason": reason}


def _missing_auto_map_files(cfg: dict, model_dir: Path) -> list[str]:
    """auto_map values look like 'configuration_minicpm.MiniCPMConfig' or 'other/repo--module.Class'.
    Only the classes vLLM loads (config, tokenizer) are checked; modeling files are transformers' business."""
    auto_map = cfg.get("auto_map")
    if not isinstance(auto_map, dict):
        return []
    missing = set()
    for key, ref in auto_map.items():
        if key not in ("AutoConfig", "AutoTokenizer"):
            continue
        for r in (ref if isinstance(ref, (list, tuple)) else [ref]):
            if not isinstance(r, str) or "--" in r or "." not in r:
                continue  # code from another repository, or a form we do not know: leave it to transformers
            module = r.rsplit(".", 1)[0]
            if not (model_dir / f"{module.replace('.', '/')}.py").is_file():
                missing.add(f"{module}.py")
    return sorted(missing)


def check_cluster(study, status_text: str | None = None) -> dict:
    """Raise PreflightError unless `ray status` shows every node of the ray block and enough free NPUs."""
    if status_text is None:
        try:
            proc = subprocess.run(["ray", "status"], capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise PreflightError("server.distributed_executor_backend is ray, but `ray` is not installed here; "
                                 "start the cluster as `studykit run --dry-run` shows (section cluster)") from None
        if proc.returncode != 0:
            raise PreflightError(f"`ray status` failed ({proc.returncode}): no Ray cluster to join; start it as "
                                 f"`studykit run --dry-run` shows (section cluster).\n{proc.stderr.strip()[-800:]}")
        status_text = proc.stdout
    try:
        status = parse_ray_status(status_text)
    except ValueError as err:
        raise PreflightError(f"`ray status` answered something the kit cannot read: {err}") from None
    want_nodes, world = len(study.ray.nodes), study.server.world_size
    npu = status["resources"].get("NPU", {"used": 0.0, "total": 0.0})
    free = npu["total"] - npu["used"]
    short = []
    if status["active_nodes"] < want_nodes:
        short.append(f"{status['active_nodes']} active nodes, the ray block lists {want_nodes}")
    if free < world:
        short.append(f"{free:g} free NPU ({npu['used']:g} used of {npu['total']:g}), tensor x pipeline x data "
                     f"parallel needs {world}")
    if short:
        raise PreflightError("the Ray cluster is short: " + "; ".join(short)
                             + ". Start or join the missing nodes as `studykit run --dry-run` shows (section cluster).")
    return {"ray_active_nodes": status["active_nodes"], "ray_npu_total": npu["total"], "ray_npu_free": free}
