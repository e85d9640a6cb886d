"""What the checkpoint is: config.json, the kit's manifest, and parameter counts from safetensors headers.

This describes the model (like reading its card), it measures nothing: a parameter count is the sum of the
tensor shapes the weight files declare, read from their JSON headers without loading a single weight.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from studykit.weights.files import MANIFEST


def safetensors_header(path: Path) -> dict:
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > 100 * 1024 * 1024:
            raise ValueError(f"{path.name}: header length {n} is not plausible")
        return json.loads(fh.read(n))


def count_parameters(model_dir: Path) -> dict:
    """{"parameters": N, "tensors": T, "dtypes": {dtype: params}, "files": [...]} from every *.safetensors."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    total, tensors, dtypes = 0, 0, {}
    for f in files:
        for name, meta in safetensors_header(f).items():
            if name == "__metadata__" or not isinstance(meta, dict):
                continue
            n = math.prod(meta.get("shape") or [])
            total += n
            tensors += 1
            dtypes[meta.get("dtype", "?")] = dtypes.get(meta.get("dtype", "?"), 0) + n
    return {"parameters": total if files else None, "tensors": tensors, "dtypes": dtypes,
            "files": [f.name for f in files]}


def rope_type(config: dict) -> str | None:
    for key in ("rope_parameters", "rope_scaling"):
        block = config.get(key)
        if isinstance(block, dict):
            return block.get("rope_type") or block.get("type")
    return "default" if "rope_theta" in config else None


def describe_model(model_dir: str | Path | None) -> dict[str, Any]:
    """A flat description for the report's first section; keys are None where the checkpoint says nothing."""
    info: dict[str, Any] = {"model_dir": str(model_dir) if model_dir else None, "found": False}
    if not model_dir or not Path(model_dir).is_dir():
        return info
    model_dir = Path(model_dir)
    info["found"] = True
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    try:
        manifest = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    heads, kv = config.get("num_attention_heads"), config.get("num_key_value_heads")
    attention = None
    if heads and kv:
        attention = "MHA" if kv == heads else ("MQA" if kv == 1 else "GQA")
    try:
        counted = count_parameters(model_dir)
    except (OSError, ValueError, struct.error) as err:
        counted = {"parameters": None, "error": str(err)}
    files = manifest.get("files") or []
    info.update({
        "architectures": config.get("architectures") or [],
        "model_type": config.get("model_type"),
        "parameters": counted.get("parameters"),
        "parameter_dtypes": counted.get("dtypes") or {},
        "num_hidden_layers": config.get("num_hidden_layers"),
        "hidden_size": config.get("hidden_size"),
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "attention": attention,
        "hidden_act": config.get("hidden_act"),
        "vocab_size": config.get("vocab_size"),
        "max_position_embeddings": config.get("max_position_embeddings"),
        "rope_type": rope_type(config),
        "rope_theta": (config.get("rope_parameters") or {}).get("rope_theta", config.get("rope_theta")),
        "tie_word_embeddings": config.get("tie_word_embeddings"),
        "config_dtype": config.get("dtype") or config.get("torch_dtype"),
        "auto_map": bool(config.get("auto_map")),
        "files": files,
        "total_bytes": sum(f.get("bytes") or 0 for f in files) if files else None,
        "source": {k: manifest.get(k) for k in ("source", "id", "revision", "built_from", "built_from_sha256")
                   if manifest.get(k) is not None},
    })
    return info
