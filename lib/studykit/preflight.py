"""Checks on the checkpoint before any vLLM process starts, so a study fails in a second with the reason
instead of after a 30-second engine start with a traceback.

The seed report's known issue 1: BitCPM4's ModelScope repository ships configuration_minicpm.py and
config.json maps AutoConfig to it (auto_map); without `--trust-remote-code` vLLM stops with
"The repository contains custom code which must be executed...". We catch that from config.json.
"""

from __future__ import annotations

from pathlib import Path

from .adaptation import AdaptationError, read_config, remote_code_reason


class PreflightError(RuntimeError):
    """The study cannot work with this checkpoint; the message says why and what to change."""


def check_platform(study, detect=None, npu_smi_text: str | None = None) -> dict:
    """For platform npu: torch_npu importable, npu-smi present, the requested devices exist, and the parallel
    sizes fit on them. Raises PreflightError naming what is missing; returns the facts it checked."""
    if study.platform != "npu":
        return {"platform": study.platform}
    from .ascend import AscendParseError, detect_npu, parse_npu_smi_info, run_npu_smi

    det = (detect or detect_npu)()
    if not det["available"]:
        raise PreflightError("platform npu, but this is not a usable Ascend host: " + "; ".join(det["reasons"]))
    ids = study.npu.device_ids
    s = study.server
    needed = s.tensor_parallel_size * s.pipeline_parallel_size * s.data_parallel_size
    if needed > len(ids):
        raise PreflightError(
            f"tensor_parallel_size {s.tensor_parallel_size} x pipeline_parallel_size {s.pipeline_parallel_size} x "
            f"data_parallel_size {s.data_parallel_size} = {needed} devices, but npu.visible_devices "
            f"{study.npu.visible_devices!r} gives {len(ids)}")
    try:
        chips = parse_npu_smi_info(npu_smi_text if npu_smi_text is not None else run_npu_smi(det["npu_smi"]))
    except (OSError, AscendParseError) as err:
        raise PreflightError(f"platform npu: cannot read the devices with npu-smi: {err}") from None
    missing = [i for i in ids if i >= len(chips)]
    if missing:
        raise PreflightError(f"npu.visible_devices {study.npu.visible_devices!r} asks for device(s) {missing}, but "
                             f"npu-smi lists {len(chips)} chip(s): allowed ids 0..{len(chips) - 1}")
    return {"platform": "npu", "chips": len(chips), "devices": ids,
            "chip_model": sorted({c["name"] for c in chips})}


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
