"""Accuracy against an fp32 reference, done right.

Reference: transformers on CPU, greedy, from the same checkpoint, keeping full-vocabulary log-probabilities.
Candidate: the vLLM server the kit starts, greedy. Compared two ways:
- free-running: both generate N tokens from the same prompt ids (the seed's token agreement). Each prompt's
  first divergence is explained by the reference's probabilities of the two tokens there: a near tie (the margin
  is within bf16-vs-fp32 noise) is not held against the port, a real divergence is (compare.py);
- teacher-forced: vLLM scores the reference's prompt + continuation (`prompt_logprobs`), so every position
  compares the two models on the same context.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from studykit.engine import cmdline
from studykit.engine.server import VllmServer, http_post_json
from studykit.plan import Step, base_url
from studykit.stages.accuracy import compare as metrics
from studykit.stages.accuracy.params import AccuracyParams
from studykit.stages.accuracy.result import AccuracyResult
from studykit.stages.deploy.stage import curl_command


def load_tokenizer(model_dir: Path, trust_remote_code: bool):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)


def reference_generate(model_dir: Path, prompts: list[dict], max_new_tokens: int, dtype: str,
                       trust_remote_code: bool, top_k: int) -> tuple[list[dict], dict]:
    """Greedy generation with full-vocabulary log-probabilities per generated position.

    Returns (per-prompt records for JSON, {prompt id: float32 array [positions, vocab]} for the npz)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype,
                                                 trust_remote_code=trust_remote_code)
    model.eval()
    records, full = [], {}
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p["prompt_ids"]])
            out = model(ids, use_cache=True)
            tokens, rows = [], []
            for _ in range(max_new_tokens):
                logprobs = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
                tok = int(torch.argmax(logprobs))
                tokens.append(tok)
                rows.append(logprobs.numpy().astype(np.float32))
                # EOS is not special here: both engines generate exactly max_new_tokens (vLLM with ignore_eos).
                out = model(torch.tensor([[tok]]), past_key_values=out.past_key_values, use_cache=True)
            arr = np.stack(rows)
            full[p["id"]] = arr
            topk = [[int(t) for t in np.argsort(-row)[:top_k]] for row in arr]
            records.append({"id": p["id"], "tokens": tokens,
                            "token_logprobs": [float(arr[i, t]) for i, t in enumerate(tokens)],
                            "topk_ids": topk})
    return records, full


def vllm_free_running(server: VllmServer, model_name: str, prompt_ids: list[int], max_new_tokens: int,
                      top_k: int, commands=None) -> dict:
    payload = {"model": model_name, "prompt": prompt_ids, "max_tokens": max_new_tokens, "temperature": 0,
               "ignore_eos": True, "logprobs": top_k, "return_token_ids": True, "return_tokens_as_token_ids": True}
    url = server.base_url + "/v1/completions"
    if commands is not None:
        commands.note("vllm free-running", curl_command(url, payload))
    answer = http_post_json(url, payload)
    choice = answer["choices"][0]
    return {"tokens": [int(t) for t in choice["token_ids"]],
            "token_logprobs": choice["logprobs"]["token_logprobs"], "text": choice["text"],
            "top_logprobs": [metrics.token_id_logprobs(pos) for pos in choice["logprobs"]["top_logprobs"]]}


def vllm_teacher_forced(server: VllmServer, model_name: str, prompt_ids: list[int], continuation: list[int],
                        top_k: int, commands=None) -> list[dict]:
    """vLLM's logprob data at each continuation position: {token id: {"logprob", "rank"}}."""
    payload = {"model": model_name, "prompt": prompt_ids + continuation, "max_tokens": 1, "temperature": 0,
               "prompt_logprobs": top_k}
    url = server.base_url + "/v1/completions"
    if commands is not None:
        commands.note("vllm teacher-forced", curl_command(url, payload))
    answer = http_post_json(url, payload)
    plp = answer["choices"][0].get("prompt_logprobs") or answer.get("prompt_logprobs")
    if plp is None or len(plp) != len(prompt_ids) + len(continuation):
        raise RuntimeError(f"vLLM returned prompt_logprobs for {0 if plp is None else len(plp)} positions, "
                           f"expected {len(prompt_ids) + len(continuation)}")
    out = []
    for pos in plp[len(prompt_ids):]:
        out.append({int(t): {"logprob": float(v["logprob"]), "rank": int(v["rank"])} for t, v in pos.items()})
    return out


def compare(prompts: list[dict], reference: list[dict], full: dict, free: list[dict], forced: list[list[dict]],
            top_k: int, near_tie_margin: float, decode=None) -> dict:
    """decode: token id -> text, to show the two tokens of each divergence (optional; ids are what count)."""
    per_prompt, all_positions = [], []
    for p, ref, cand, tf in zip(prompts, reference, free, forced):
        ref_full = full[p["id"]]
        positions = []
        for j, cand_pos in enumerate(tf):
            row = ref_full[j]
            ref_probs_on = {t: float(math.exp(row[t])) for t in cand_pos}
            m = metrics.position_metrics(ref["tokens"][j], int(np.argmax(row)), ref_probs_on, ref["topk_ids"][j],
                                         cand_pos, top_k)
            m["ref_probs_on_cand_tokens"] = {str(t): v for t, v in ref_probs_on.items()}
            m["cand"] = {str(t): v for t, v in cand_pos.items()}
            positions.append(m)
        agreement = metrics.token_agreement(ref["tokens"], cand["tokens"])
        at = agreement["first_divergence"]
        detail = metrics.first_divergence_detail(
            at, ref["tokens"], cand["tokens"], ref_full[at] if at is not None and at < len(ref_full) else None,
            cand["top_logprobs"][at] if at is not None and at < len(cand["top_logprobs"]) else None,
            near_tie_margin)
        if detail is not None and decode is not None:
            detail["ref_token_text"] = None if detail["ref_token"] is None else decode(detail["ref_token"])
            detail["vllm_token_text"] = None if detail["vllm_token"] is None else decode(detail["vllm_token"])
        per_prompt.append({"id": p["id"], "chat": p["chat"], "prompt_ids": p["prompt_ids"],
                           "ref_tokens": ref["tokens"], "vllm_tokens": cand["tokens"], "vllm_text": cand["text"],
                           "vllm_top_logprobs": [None if pos is None else {str(t): v for t, v in pos.items()}
                                                 for pos in cand["top_logprobs"]],
                           **agreement, "first_divergence_detail": detail,
                           "teacher_forced": metrics.summarize(positions), "positions": positions})
        all_positions += positions
    return {"per_prompt": per_prompt, "free_running": metrics.free_running_summary(per_prompt),
            "teacher_forced": metrics.summarize(all_positions)}


def plan(study, model_dir: Path, run_dir, port) -> list[Step]:
    """Reference first (nothing else runs beside it), then one vLLM server for every request."""
    p, url = study.accuracy, base_url(study.server.host, port)
    return [
        Step("accuracy", "transformers reference", "python", text=(
            f"# python: AutoModelForCausalLM.from_pretrained({str(model_dir)!r}, dtype=torch.{p.reference_dtype}) "
            f"on CPU, greedy {p.max_new_tokens} tokens per prompt of {p.prompts_file}, full-vocabulary log-probs")),
        Step("accuracy", "accuracy", "server", cmdline.serve_argv(study, model_dir, port)),
        Step("accuracy", "vllm free-running", "http", text=(
            f"# POST {url}/v1/completions per prompt (token ids): temperature 0, max_tokens {p.max_new_tokens}, "
            f"ignore_eos, logprobs {p.top_k_logprobs} as token ids; twice, for determinism")),
        Step("accuracy", "vllm teacher-forced", "http", text=(
            f"# POST {url}/v1/completions per prompt: prompt + the reference's continuation, max_tokens 1, "
            f"prompt_logprobs {p.top_k_logprobs} (vLLM scores the reference's tokens)")),
    ]



METHOD = ("prob errors and KL are teacher-forced: vLLM scores the reference's own continuation (prompt_logprobs), "
          "so both see the same context; KL is over vLLM's returned tokens plus one bucket for the remaining mass; "
          "no missing logprob is filled in. Free-running: at each prompt's first divergence the margin is the "
          "reference's p(own token) - p(vLLM's token) on the shared context; a margin <= near_tie_margin is a near "
          "tie, larger is a real divergence; teacher_forced.max_margin_shift is this run's measure of how far bf16 "
          "moves such a margin. The gate is token_agreement_excluding_near_ties: tokens before the first divergence "
          "agree; after a near tie the rest is not comparable, after a real divergence the rest counts as wrong. "
          "token_agreement is the seed's raw position-wise agreement, reported, not gating.")


def run(ctx, p: AccuracyParams) -> AccuracyResult:
    """The whole stage: inputs checked first (a bad prompt file fails before any model loads), the reference,
    then one vLLM server for every request; what was measured is kept if a step fails (ctx.keep)."""
    from studykit.stages.accuracy.prompts import load_prompts, tokenize_prompts

    study = ctx.study
    data: dict = {"params": p.model_dump(mode="json"), "top_k": p.top_k_logprobs,
                  "thresholds": {"min_token_agreement": p.min_token_agreement, "near_tie_margin": p.near_tie_margin,
                                 "min_top1_agreement": p.min_top1_agreement, "max_mean_kl": p.max_mean_kl},
                  "method": METHOD}
    with ctx.keep(data):
        prompts = load_prompts(p.prompts_file)
        tokenizer = load_tokenizer(ctx.model_dir, study.model.trust_remote_code)
        prompts = tokenize_prompts(prompts, tokenizer, study.model.max_model_len, p.max_new_tokens)

        t0 = time.monotonic()
        reference, full = reference_generate(ctx.model_dir, prompts, p.max_new_tokens, p.reference_dtype,
                                             study.model.trust_remote_code, p.top_k_logprobs)
        np.savez_compressed(ctx.raw_dir / "reference_logprobs.npz", **full)
        data["reference"] = {"engine": "transformers", "dtype": p.reference_dtype, "device": "cpu",
                             "seconds": round(time.monotonic() - t0, 3),
                             "full_logprobs": "raw/accuracy/reference_logprobs.npz", "per_prompt": reference}
        reference_step = ctx.step("transformers reference")
        ctx.commands.note(reference_step.label, reference_step.text)

        name = study.model.name_served
        with ctx.server_for(ctx.step("accuracy")) as srv:
            data["server"] = srv.label
            data["candidate"] = {"engine": "vllm", "dtype": study.model.dtype, "server_command": srv.command}
            free = [vllm_free_running(srv, name, q["prompt_ids"], p.max_new_tokens, p.top_k_logprobs, ctx.commands)
                    for q in prompts]
            again = [vllm_free_running(srv, name, q["prompt_ids"], p.max_new_tokens, p.top_k_logprobs)
                     for q in prompts]
            forced = [vllm_teacher_forced(srv, name, q["prompt_ids"], r["tokens"], p.top_k_logprobs, ctx.commands)
                      for q, r in zip(prompts, reference)]
        mismatched = [q["id"] for q, a, b in zip(prompts, free, again) if a["tokens"] != b["tokens"]]
        data["determinism"] = {"passes": 2, "identical": not mismatched, "mismatched": mismatched}
        summary = compare(prompts, reference, full, free, forced, p.top_k_logprobs, p.near_tie_margin,
                          decode=lambda t: tokenizer.decode([t]))
        data.update(free_running=summary["free_running"], teacher_forced=summary["teacher_forced"],
                    per_prompt=summary["per_prompt"])
    return ctx.result(data)


def charts(ctx, result: AccuracyResult) -> list[str]:
    """The teacher-forced probability error of the reference's token at each generated position, per prompt."""
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for pp in result.per_prompt:
        ax.plot([pos["abs_prob_error"] for pos in pp.positions], marker=".", label=pp.id)
    ax.set_xlabel("generated position")
    ax.set_ylabel("|p_ref − p_vllm| of the reference token")
    ax.set_title("Teacher-forced probability error per position")
    ax.legend(fontsize=6, ncol=3)
    return [ctx.save_figure(fig, "prob-error", dpi=110)]


def per_prompt_table(result: AccuracyResult):
    import pandas as pd

    rows = []
    for pp in result.per_prompt:
        d, tf = pp.first_divergence_detail, pp.teacher_forced
        rows.append({"prompt": pp.id, "chat": pp.chat, "token_agreement": pp.token_agreement,
                     "first_divergence": pp.first_divergence, "divergence_kind": d.kind if d else None,
                     "margin": d.margin if d else None, "top1_agreement": tf.top1_agreement if tf else None,
                     "prob_mae": tf.prob_mae if tf else None, "mean_kl": tf.mean_kl if tf else None})
    return pd.DataFrame(rows)


def divergence_rows(result: AccuracyResult | dict) -> list[dict]:
    """Every prompt's first free-running divergence, near ties and real ones, in prompt order, for the report:
    the two tokens, the reference's and vLLM's probabilities of each, the margin and the kind. Takes the typed
    result (the notebook) or results/accuracy.json as read (the report)."""
    if isinstance(result, AccuracyResult):
        result = result.model_dump(mode="json")
    rows = []
    for pp in result.get("per_prompt") or []:
        d = pp.get("first_divergence_detail")
        if not d:
            continue
        rows.append({"prompt": pp["id"], "position": d["position"], "kind": d["kind"],
                     "ref_token": d["ref_token"], "ref_token_text": d.get("ref_token_text"),
                     "vllm_token": d["vllm_token"], "vllm_token_text": d.get("vllm_token_text"),
                     "p_ref_ref_token": d["p_ref_ref_token"], "p_ref_vllm_token": d["p_ref_vllm_token"],
                     "margin": d["margin"], "p_vllm_ref_token": d["p_vllm_ref_token"],
                     "p_vllm_vllm_token": d["p_vllm_vllm_token"], "why": d["why"]})
    return rows


def divergence_table(result: AccuracyResult | dict):
    import pandas as pd

    return pd.DataFrame(divergence_rows(result))
