"""Adaptation notes for the report: is the checkpoint's architecture one vLLM already implements, and does
loading it need `--trust-remote-code`? (The seed report's section 7: "architecture reused, zero code changes".)

Everything comes from the checkpoint's config.json and vLLM's own model registry, so the note is true for
the vLLM that is installed, not for the one the seed used.
"""

from __future__ import annotations

import json
from pathlib import Path


class AdaptationError(ValueError):
    """The checkpoint has no readable config.json."""


def read_config(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdaptationError(f"{path} does not exist: {model_dir} is not a Hugging Face-style checkpoint") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AdaptationError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(cfg, dict):
        raise AdaptationError(f"{path} must hold a JSON object, got {type(cfg).__name__}")
    return cfg


def remote_code_reason(cfg: dict) -> str | None:
    """Why transformers will want to run code from the checkpoint, or None if it will not."""
    auto_map = cfg.get("auto_map")
    if not auto_map:
        return None
    if isinstance(auto_map, dict):
        pairs = ", ".join(f"{k} -> {v}" for k, v in auto_map.items())
    else:
        pairs = repr(auto_map)
    return f"config.json has auto_map ({pairs}): transformers loads these classes from the checkpoint's own .py files"


def vllm_registry_lookup(archs: list[str]) -> dict[str, dict]:
    """For each architecture: is it in vLLM's ModelRegistry, and which vLLM module implements it."""
    try:
        # Imported lazily: importing vLLM takes seconds and the report must still render without it.
        from vllm.model_executor.models.registry import ModelRegistry
    except Exception as err:  # noqa: BLE001 - vLLM missing or broken is a fact to report, not a crash
        return {a: {"in_vllm_registry": None, "error": f"vLLM registry not importable: {err}"} for a in archs}
    supported = ModelRegistry.get_supported_archs()
    out = {}
    for arch in archs:
        entry: dict = {"in_vllm_registry": arch in supported}
        registered = ModelRegistry.models.get(arch)
        module = getattr(registered, "module_name", None)
        if module:
            entry["vllm_module"] = module
            entry["vllm_class"] = getattr(registered, "class_name", arch)
        out[arch] = entry
    return out


def vllm_version() -> str | None:
    from studykit.engine.launcher import installed_vllm_distribution

    found = installed_vllm_distribution()
    return f"{found[0]} {found[1]}" if found else None


def adaptation_notes(model_dir: str | Path) -> dict:
    """Facts for the report's adaptation section, read from the checkpoint and the installed vLLM."""
    model_dir = Path(model_dir)
    cfg = read_config(model_dir)
    archs = cfg.get("architectures") or []
    if isinstance(archs, str):
        archs = [archs]
    registry = vllm_registry_lookup(list(archs))
    reason = remote_code_reason(cfg)
    custom_code = sorted(p.name for p in model_dir.glob("*.py"))
    in_registry = [a for a in archs if registry.get(a, {}).get("in_vllm_registry")]
    notes = {
        "model_type": cfg.get("model_type"),
        "architectures": list(archs),
        "registry": registry,
        "architecture_in_vllm": bool(in_registry),
        "new_model_code_needed": not in_registry,
        "auto_map": cfg.get("auto_map"),
        "trust_remote_code_required": reason is not None,
        "trust_remote_code_reason": reason,
        "custom_code_files": custom_code,
        "vllm": vllm_version(),
    }
    if in_registry:
        arch = in_registry[0]
        notes["summary"] = (f"{arch} is registered in vLLM ({registry[arch].get('vllm_module', '?')}): "
                            "the existing implementation is reused, no new model code.")
    elif archs:
        notes["summary"] = (f"{', '.join(archs)} not in vLLM's registry: vLLM would fall back to the Transformers "
                            "backend or need a new model implementation.")
    else:
        notes["summary"] = "config.json names no architectures"
    return notes
