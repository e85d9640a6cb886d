"""Accuracy against an fp32 reference, done right.

Reference: transformers on CPU, greedy, from the same checkpoint, keeping full-vocabulary log-probabilities.
Calibration: the same checkpoint in the other dtype (bfloat16 against a float32 reference), teacher-forced on the
reference's continuation, no vLLM: the rounding noise every threshold is a stated multiple of (compare.py).
Candidate: the vLLM server the kit starts, greedy. Compared two ways:
- free-running: vLLM generates from the prompt; at each position where its token differs from the reference's,
  the two tokens are judged in both engines' probabilities (near tie or real divergence, compare.py) and vLLM
  resumes from the reference's prefix through that position, so every position is judged on the reference's
  context and its sampler runs at each;
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


def calibrate(model_dir: Path, prompts: list[dict], reference: list[dict], full: dict, dtype: str,
              trust_remote_code: bool, top_k: int) -> dict:
    """The checkpoint in `dtype` teacher-forced on each prompt + the reference's tokens (one forward pass per
    prompt), compared with the reference's rows: compare.calibration_summary plus the dtypes."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype),
                                                 trust_remote_code=trust_remote_code)
    model.eval()
    positions = []
    with torch.inference_mode():
        for p, ref in zip(prompts, reference):
            ids = p["prompt_ids"] + ref["tokens"]
            logits = model(torch.tensor([ids])).logits[0, len(p["prompt_ids"]) - 1:len(ids) - 1]
            rows = torch.log_softmax(logits.float(), dim=-1).numpy()
            positions += metrics.calibration_positions(full[p["id"]], rows, ref["tokens"], top_k)
    del model
    return metrics.calibration_summary(positions)


def vllm_free_running(server: VllmServer, model_name: str, prompt_ids: list[int], max_new_tokens: int,
                      top_k: int, commands=None) -> dict:
    """One greedy request: the tokens, their text and vLLM's top-k log-probabilities per position, by token id."""
    payload = {"model": model_name, "prompt": prompt_ids, "max_tokens": max_new_tokens, "temperature": 0,
               "ignore_eos": True, "logprobs": top_k, "return_token_ids": True, "return_tokens_as_token_ids": True}
    url = server.base_url + "/v1/completions"
    if commands is not None:
        commands.note("vllm free-running", curl_command(url, payload))
    answer = http_post_json(url, payload)
    choice = answer["choices"][0]
    return {"tokens": [int(t) for t in choice["token_ids"]], "text": choice["text"],
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


def compare(prompts: list[dict], reference: list[dict], full: dict, judged: list[dict], forced: list[list[dict]],
            top_k: int, decode=None) -> dict:
    """judged: each prompt's compare.judge_free_running output (its first request is the plain free run).
    decode: token id -> text, to show the two tokens of each divergence (optional; ids are what count)."""
    per_prompt, all_positions = [], []
    for p, ref, walk, tf in zip(prompts, reference, judged, forced):
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
        plain = walk["requests"][0]
        agreement = metrics.token_agreement(ref["tokens"], plain["tokens"])
        divergences = walk["divergences"]
        if decode is not None:
            for d in divergences:
                d["ref_token_text"] = None if d["ref_token"] is None else decode(d["ref_token"])
                d["vllm_token_text"] = None if d["vllm_token"] is None else decode(d["vllm_token"])

        def by_id(tops):
            return [None if pos is None else {str(t): v for t, v in pos.items()} for pos in tops]

        per_prompt.append({"id": p["id"], "chat": p["chat"], "prompt_ids": p["prompt_ids"],
                           "ref_tokens": ref["tokens"], "vllm_tokens": plain["tokens"], "vllm_text": plain["text"],
                           "vllm_top_logprobs": by_id(plain["top_logprobs"]), **agreement,
                           "first_divergence_detail": divergences[0] if divergences else None,
                           "verdicts": walk["verdicts"], "divergences": divergences,
                           "requests": [{"start": r["start"], "tokens": r["tokens"],
                                         "top_logprobs": by_id(r["top_logprobs"])} for r in walk["requests"]],
                           "teacher_forced": metrics.summarize(positions), "positions": positions})
        all_positions += positions
    return {"per_prompt": per_prompt, "free_running": metrics.free_running_summary(per_prompt),
            "teacher_forced": metrics.summarize(all_positions)}


def calibration_dtype(reference_dtype: str) -> str:
    return "bfloat16" if reference_dtype == "float32" else "float32"


def plan(study, model_dir: Path, run_dir, port) -> list[Step]:
    """Reference and calibration first (nothing else runs beside them), then one vLLM server for every request."""
    p, url = study.accuracy, base_url(study.server.host, port)
    n = p.max_new_tokens
    return [
        Step("accuracy", "transformers reference", "python", text=(
            f"# python: AutoModelForCausalLM.from_pretrained({str(model_dir)!r}, dtype=torch.{p.reference_dtype}) "
            f"on CPU, greedy {n} tokens per prompt of {p.prompts_file}, full-vocabulary log-probs")),
        Step("accuracy", "calibration", "python", text=(
            f"# python: the same checkpoint in dtype=torch.{calibration_dtype(p.reference_dtype)}, one forward pass "
            f"per prompt over prompt + the reference's tokens; its noise against the reference sets the thresholds "
            f"the params leave empty")),
        Step("accuracy", "accuracy", "server", cmdline.serve_argv(study, model_dir, port)),
        Step("accuracy", "vllm free-running", "http", text=(
            f"# POST {url}/v1/completions per prompt (token ids): temperature 0, max_tokens {n}, ignore_eos, "
            f"logprobs {p.top_k_logprobs} as token ids; after each divergence one more request from the prompt + "
            f"the reference's tokens through it (1 to {n} requests per prompt); the plain request twice, for "
            f"determinism")),
        Step("accuracy", "vllm teacher-forced", "http", text=(
            f"# POST {url}/v1/completions per prompt: prompt + the reference's continuation, max_tokens 1, "
            f"prompt_logprobs {p.top_k_logprobs} (vLLM scores the reference's tokens)")),
    ]


METHOD = ("Calibration: the checkpoint in the other dtype (bfloat16 for a float32 reference) teacher-forced on the "
          "reference's continuation, no vLLM; each threshold the params leave empty is a stated multiple of its "
          "noise (threshold_basis). Teacher-forced: vLLM scores the reference's own continuation (prompt_logprobs), "
          "so both see the same context; KL is over vLLM's returned tokens plus one bucket for the remaining mass; "
          "no missing logprob is filled in. Free-running: where vLLM's greedy token differs from the reference's, "
          "the position is a near tie only if vLLM emitted its own top token (up to an exact tie), both engines' "
          "margins between the two tokens are <= near_tie_margin and the KL there is <= max_near_tie_kl; else it is "
          "a real divergence. vLLM then resumes from the prompt + the reference's tokens through that position, so "
          "every position is judged on the reference's context. The gate: real divergences <= "
          "max_real_divergences. token_agreement is the seed's raw agreement of the plain free run, not gating.")


def run(ctx, p: AccuracyParams) -> AccuracyResult:
    """The whole stage: inputs checked first (a bad prompt file fails before any model loads), the reference, the
    calibration and the thresholds, then one vLLM server for every request; what was measured is kept if a step
    fails (ctx.keep)."""
    from studykit.stages.accuracy.prompts import load_prompts, tokenize_prompts

    study = ctx.study
    data: dict = {"params": p.model_dump(mode="json"), "top_k": p.top_k_logprobs, "method": METHOD}
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

        t0, dtype = time.monotonic(), calibration_dtype(p.reference_dtype)
        calibration = calibrate(ctx.model_dir, prompts, reference, full, dtype, study.model.trust_remote_code,
                                p.top_k_logprobs)
        data["calibration"] = {"dtype": dtype, "reference_dtype": p.reference_dtype,
                               "seconds": round(time.monotonic() - t0, 3), **calibration}
        calibration_step = ctx.step("calibration")
        ctx.commands.note(calibration_step.label, calibration_step.text)
        data["thresholds"], data["threshold_basis"] = metrics.derive_thresholds(data["params"], calibration)
        th = data["thresholds"]

        name = study.model.name_served
        with ctx.server_for(ctx.step("accuracy")) as srv:
            data["server"] = srv.label
            data["candidate"] = {"engine": "vllm", "dtype": study.model.dtype, "server_command": srv.command}
            judged = []
            for q, ref in zip(prompts, reference):
                row = full[q["id"]]

                def complete(start, max_tokens, q=q, ref=ref):
                    return vllm_free_running(srv, name, q["prompt_ids"] + ref["tokens"][:start], max_tokens,
                                             p.top_k_logprobs, ctx.commands if start == 0 else None)

                def ref_probs(j, tokens, row=row):
                    return {t: float(math.exp(row[j, t])) for t in tokens}

                judged.append(metrics.judge_free_running(ref["tokens"], complete, ref_probs, th["near_tie_margin"],
                                                         th["max_near_tie_kl"]))
            again = [vllm_free_running(srv, name, q["prompt_ids"], p.max_new_tokens, p.top_k_logprobs)
                     for q in prompts]
            forced = [vllm_teacher_forced(srv, name, q["prompt_ids"], r["tokens"], p.top_k_logprobs, ctx.commands)
                      for q, r in zip(prompts, reference)]
        mismatched = [q["id"] for q, a, b in zip(prompts, judged, again) if a["requests"][0]["tokens"] != b["tokens"]]
        data["determinism"] = {"passes": 2, "identical": not mismatched, "mismatched": mismatched}
        summary = compare(prompts, reference, full, judged, forced, p.top_k_logprobs,
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
        kinds = [dv.kind for dv in pp.divergences]
        rows.append({"prompt": pp.id, "chat": pp.chat, "token_agreement": pp.token_agreement,
                     "first_divergence": pp.first_divergence, "first_kind": d.kind if d else None,
                     "near_ties": kinds.count("near_tie"), "real_divergences": kinds.count("divergence"),
                     "top1_agreement": tf.top1_agreement if tf else None,
                     "prob_mae": tf.prob_mae if tf else None, "mean_kl": tf.mean_kl if tf else None})
    return pd.DataFrame(rows)


def divergence_rows(result: AccuracyResult | dict) -> list[dict]:
    """Every judged divergence, near ties and real ones, in prompt and position order, for the report: the two
    tokens, both engines' probabilities of each, both margins, the KL there and the kind. Takes the typed result
    (the notebook) or results/accuracy.json as read (the report); a run from before the resumed comparison lists
    its first divergences."""
    if isinstance(result, AccuracyResult):
        result = result.model_dump(mode="json")
    rows = []
    for pp in result.get("per_prompt") or []:
        first = pp.get("first_divergence_detail")
        for d in pp.get("divergences") or ([first] if first else []):
            rows.append({"prompt": pp["id"], "position": d["position"], "kind": d["kind"],
                         "ref_token": d["ref_token"], "ref_token_text": d.get("ref_token_text"),
                         "vllm_token": d["vllm_token"], "vllm_token_text": d.get("vllm_token_text"),
                         "p_ref_ref_token": d["p_ref_ref_token"], "p_ref_vllm_token": d["p_ref_vllm_token"],
                         "margin": d["margin"], "p_vllm_ref_token": d["p_vllm_ref_token"],
                         "p_vllm_vllm_token": d["p_vllm_vllm_token"], "vllm_margin": d.get("vllm_margin"),
                         "kl": d.get("kl"), "why": d["why"]})
    return rows


def divergence_table(result: AccuracyResult | dict):
    import pandas as pd

    return pd.DataFrame(divergence_rows(result))
