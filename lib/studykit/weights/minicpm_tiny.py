"""A tiny MiniCPM checkpoint built offline, so the seed model's architecture runs for real on CPU.

Same shape of checkpoint as OpenBMB/BitCPM4-0.5B (model_type minicpm, MiniCPMForCausalLM, an `auto_map` to a
custom configuration class, GQA, LongRoPE, scale_emb / scale_depth / dim_model_base, tied embeddings), at a size
two CPU cores start in seconds: 2 layers, hidden 256, 4 heads of 64, 2 KV heads. head_dim stays 64 because
vLLM's CPU attention rejects 16 ("Unsupported CPU attention configuration").

Weights are seeded random bf16 safetensors with the tensor names vLLM's minicpm.py loader expects
(q/k/v_proj stacked into qkv_proj, gate/up_proj into gate_up_proj, no lm_head because it is tied), scaled so
next-token distributions are peaked rather than flat (see `random_weights`): a parity test between two
near-uniform distributions would pass whatever either engine computed.
The checkpoint ships the kit's own transformers implementation (data/modeling_minicpm.py, named by
`auto_map`), the fp32 reference of the accuracy stage.
The tokenizer is the default model's (SmolLM2), so prompts and chat templates work.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import time
from pathlib import Path

from studykit import PACKAGE_DIR

from studykit.weights import files
from studykit.weights import smollm2

NAME = "minicpm-tiny"
SEED = 20250606
CONFIG_SOURCE = PACKAGE_DIR / "data" / "configuration_minicpm.py"
MODELING_SOURCE = CONFIG_SOURCE.with_name("modeling_minicpm.py")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")

HIDDEN = 256
HEADS = 4
KV_HEADS = 2
LAYERS = 2
INTERMEDIATE = 640
ORIGINAL_MAX_POSITION = 2048
MAX_POSITION = 4096


def longrope_factors(n: int) -> tuple[list[float], list[float]]:
    """Per-frequency LongRoPE factors, shaped like the published ones: short ~1, long rising with the dimension."""
    short = [round(1.0 + 0.02 * i / max(n - 1, 1), 6) for i in range(n)]
    long = [round(1.0 + 15.0 * (i / max(n - 1, 1)) ** 2, 6) for i in range(n)]
    return short, long


def tiny_config(vocab_size: int, bos_token_id: int, eos_token_id: int | list[int]) -> dict:
    head_dim = HIDDEN // HEADS
    short, long = longrope_factors(head_dim // 2)
    return {
        "architectures": ["MiniCPMForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_minicpm.MiniCPMConfig",
                     "AutoModelForCausalLM": "modeling_minicpm.MiniCPMForCausalLM"},
        "model_type": "minicpm",
        "vocab_size": vocab_size,
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "hidden_act": "silu",
        "max_position_embeddings": MAX_POSITION,
        "rms_norm_eps": 1e-6,
        "initializer_range": 0.02,
        "rope_theta": 10000.0,
        "rope_scaling": {"rope_type": "longrope", "short_factor": short, "long_factor": long,
                         "original_max_position_embeddings": ORIGINAL_MAX_POSITION},
        "scale_emb": 12,
        "scale_depth": 1.4,
        "dim_model_base": 64,
        "tie_word_embeddings": True,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "torch_dtype": "bfloat16",
        "use_cache": True,
    }


def tensor_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Checkpoint tensor names and shapes, in the Hugging Face MiniCPM layout vLLM's loader reads."""
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    head_dim = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * head_dim
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (cfg["vocab_size"], h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (h, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, h),
            p + "post_attention_layernorm.weight": (h,),
            p + "mlp.gate_proj.weight": (inter, h),
            p + "mlp.up_proj.weight": (inter, h),
            p + "mlp.down_proj.weight": (h, inter),
        })
    shapes["model.norm.weight"] = (h,)
    return shapes


def random_weights(cfg: dict, seed: int = SEED, embed_std: float = 0.08, branch_gain: float = 6.0,
                   final_norm_gain: float = 10.0) -> dict:
    """Seeded weights whose next-token distributions are peaked, not flat.

    Scales (defaults measured on the default prompts, see tests/test_minicpm_tiny.py):
    - embed_std: times scale_emb (12) puts each embedding dimension near 1, the size of one residual branch, so
      neither the token embedding nor the layers drown the other out;
    - 1/sqrt(fan_in) for every projection keeps each branch at unit scale;
    - final_norm_gain on model.norm: the logits are (norm(h) * gain / (hidden / dim_model_base)) . e, whose
      spread with gain 1 is ~0.3 nats over 49k tokens, i.e. uniform; the gain widens it to a few nats.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in tensor_shapes(cfg).items():
        if name == "model.norm.weight":
            t = torch.full(shape, final_norm_gain)
        elif name.endswith("norm.weight"):
            t = torch.ones(shape)
        elif name == "model.embed_tokens.weight":
            t = torch.randn(shape, generator=gen) * embed_std
        elif name.endswith(("o_proj.weight", "down_proj.weight")):
            t = torch.randn(shape, generator=gen) * branch_gain / shape[1] ** 0.5
        else:
            t = torch.randn(shape, generator=gen) / shape[1] ** 0.5
        tensors[name] = t.to(torch.bfloat16).contiguous()
    return tensors


def _recipe_sha256(cfg: dict, tokenizer_dir: Path) -> str:
    """Fingerprint of everything the checkpoint is made from: a change to any of it rebuilds."""
    h = hashlib.sha256()
    h.update(json.dumps(cfg, sort_keys=True).encode())
    h.update(CONFIG_SOURCE.read_bytes())
    h.update(MODELING_SOURCE.read_bytes())
    h.update(str(SEED).encode())
    h.update(inspect.getsource(random_weights).encode())
    for name in TOKENIZER_FILES:
        p = tokenizer_dir / name
        if p.is_file():
            h.update(name.encode() + files.sha256_file(p).encode())
    return h.hexdigest()


def _tokenizer_ids(tokenizer_dir: Path) -> tuple[int, int | list[int], int]:
    cfg = json.loads((tokenizer_dir / "config.json").read_text())
    return cfg["vocab_size"], cfg.get("bos_token_id", 1), cfg.get("eos_token_id", 2)


def model_dir() -> Path:
    """Where build_minicpm_tiny puts the checkpoint (whether or not it is built yet)."""
    return files.cache_root() / "models" / NAME


def build_minicpm_tiny(force: bool = False, log=print) -> Path:
    """Build (or reuse) the tiny MiniCPM checkpoint under the kit cache and return its directory."""
    tokenizer_dir = smollm2.build_default(log=log)
    vocab, bos, eos = _tokenizer_ids(tokenizer_dir)
    cfg = tiny_config(vocab, bos, eos)
    recipe = _recipe_sha256(cfg, tokenizer_dir)
    out = model_dir()
    if not force and out.is_dir():
        ok, why = files.verify(out)
        manifest = files.read_manifest(out) or {}
        if ok and manifest.get("recipe_sha256") == recipe:
            log(f"{NAME}: reusing {out} ({why})")
            return out
        log(f"{NAME}: rebuilding {out}: {why if not ok else 'recipe changed'}")
    t0 = time.monotonic()
    from safetensors.torch import save_file

    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    for source in (CONFIG_SOURCE, MODELING_SOURCE):
        shutil.copy2(source, tmp / source.name)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, tmp / name)
    gen_cfg = {"bos_token_id": bos, "eos_token_id": eos, "do_sample": False}
    (tmp / "generation_config.json").write_text(json.dumps(gen_cfg, indent=2) + "\n")
    save_file(random_weights(cfg), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    files.write_manifest(tmp, source="builtin", id=NAME, seed=SEED, recipe_sha256=recipe, dtype="bfloat16",
                           tokenizer_from=str(tokenizer_dir), build_seconds=round(time.monotonic() - t0, 1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    log(f"{NAME}: built {out} in {time.monotonic() - t0:.1f} s")
    return out
