"""Agreement between a reference (full-vocabulary log-probabilities) and vLLM (what it returned: the actual
token's logprob and rank plus the top-k). Pure functions on plain data, so anyone can recompute from the JSON.

No sentinels: a probability vLLM did not return is never invented. The KL divergence is taken over the
tokens vLLM returned plus one bucket holding the remaining mass of each distribution.
"""

from __future__ import annotations

import math

# Remaining-mass buckets can come out a hair below zero from float rounding; this is only a floor for log().
_MASS_FLOOR = 1e-12


def token_agreement(ref_tokens: list[int], cand_tokens: list[int]) -> dict:
    """Position-wise equality of two free-running greedy sequences, and where they first part."""
    n = max(len(ref_tokens), len(cand_tokens))
    equal = sum(1 for a, b in zip(ref_tokens, cand_tokens) if a == b)
    first = next((i for i, (a, b) in enumerate(zip(ref_tokens, cand_tokens)) if a != b), None)
    if first is None and len(ref_tokens) != len(cand_tokens):
        first = min(len(ref_tokens), len(cand_tokens))
    return {"equal_tokens": equal, "total_tokens": n, "token_agreement": equal / n if n else 1.0,
            "first_divergence": first}


def position_metrics(ref_token: int, ref_top1: int, ref_probs_on: dict[int, float], ref_topk: list[int],
                     cand: dict[int, dict], k: int) -> dict:
    """Metrics at one teacher-forced position.

    ref_token: the reference's token here (the continuation token fed to vLLM).
    ref_top1: the reference's argmax (equal to ref_token for a greedy reference).
    ref_probs_on: reference probability of every token in `cand` (ids → p).
    ref_topk: the reference's k most likely token ids.
    cand: what vLLM returned at this position: token id → {"logprob", "rank"} (top-k plus the actual token).
    """
    if ref_token not in cand:
        # vLLM always returns the actual prompt token; its absence means the data is not vLLM's prompt_logprobs.
        raise ValueError(f"vLLM's answer lacks the prompt token {ref_token}; cannot compare this position")
    cand_top1 = min(cand, key=lambda t: cand[t]["rank"])
    cand_topk = {t for t, v in cand.items() if v["rank"] <= k}
    p_ref_tok = ref_probs_on[ref_token]
    p_cand_tok = math.exp(cand[ref_token]["logprob"])
    # How far vLLM moves the reference's top-2 margin: the noise a near tie is judged against (a free-running
    # flip needs a shift larger than the margin). None when vLLM did not return the reference's second token.
    runner_up = ref_topk[1] if len(ref_topk) > 1 else None
    margin_shift = None
    if ref_top1 in cand and runner_up in cand:
        ref_margin = ref_probs_on[ref_top1] - ref_probs_on[runner_up]
        cand_margin = math.exp(cand[ref_top1]["logprob"]) - math.exp(cand[runner_up]["logprob"])
        margin_shift = abs(cand_margin - ref_margin)
    return {
        "ref_token": ref_token,
        "cand_top1": cand_top1,
        "top1_agree": cand_top1 == ref_top1,
        "ref_token_rank_in_cand": cand[ref_token]["rank"],
        "ref_token_outside_cand_topk": cand[ref_token]["rank"] > k,
        "p_ref": p_ref_tok,
        "p_cand": p_cand_tok,
        "abs_prob_error": abs(p_ref_tok - p_cand_tok),
        "topk_overlap": len(cand_topk & set(ref_topk[:k])) / k,
        "margin_shift": margin_shift,
        "kl_ref_cand": bucket_kl({t: ref_probs_on[t] for t in cand}, {t: math.exp(v["logprob"]) for t, v in cand.items()}),
    }


def bucket_kl(p_on: dict[int, float], q_on: dict[int, float]) -> float:
    """KL(P‖Q) over the listed tokens plus one 'everything else' bucket per distribution."""
    kl = 0.0
    for t, p in p_on.items():
        if p > 0:
            kl += p * math.log(p / max(q_on[t], _MASS_FLOOR))
    p_rest = max(1.0 - sum(p_on.values()), 0.0)
    q_rest = max(1.0 - sum(q_on.values()), _MASS_FLOOR)
    if p_rest > 0:
        kl += p_rest * math.log(max(p_rest, _MASS_FLOOR) / q_rest)
    return max(kl, 0.0)


def summarize(positions: list[dict]) -> dict:
    n = len(positions)
    if n == 0:
        return {"positions": 0}
    errors = [p["abs_prob_error"] for p in positions]
    return {
        "positions": n,
        "top1_agreement": sum(p["top1_agree"] for p in positions) / n,
        "prob_mae": sum(errors) / n,
        "prob_max_error": max(errors),
        "mean_topk_overlap": sum(p["topk_overlap"] for p in positions) / n,
        "mean_kl": sum(p["kl_ref_cand"] for p in positions) / n,
        "max_kl": max(p["kl_ref_cand"] for p in positions),
        "ref_token_outside_cand_topk": sum(p["ref_token_outside_cand_topk"] for p in positions),
        "max_margin_shift": max((p["margin_shift"] for p in positions if p["margin_shift"] is not None),
                                default=None),
    }


# --- free-running divergences: near ties against real divergences ---------------------------------------------

NEAR_TIE = "near_tie"
DIVERGENCE = "divergence"
_TOKEN_ID_PREFIX = "token_id:"


def token_id_logprobs(top_logprobs: dict[str, float] | None) -> dict[int, float] | None:
    """vLLM's top_logprobs of one position, requested with return_tokens_as_token_ids ('token_id:<id>' keys).

    Keys by id, not text: different ids can decode to the same text, and byte-fallback tokens decode to none."""
    if top_logprobs is None:
        return None
    out = {}
    for key, logprob in top_logprobs.items():
        if not key.startswith(_TOKEN_ID_PREFIX) or not key[len(_TOKEN_ID_PREFIX):].isdigit():
            raise ValueError(f"vLLM logprob key {key!r} is not 'token_id:<id>'; the request must set "
                             f"return_tokens_as_token_ids")
        out[int(key[len(_TOKEN_ID_PREFIX):])] = float(logprob)
    return out


def first_divergence_detail(position: int | None, ref_tokens: list[int], vllm_tokens: list[int], ref_row,
                            vllm_logprobs: dict[int, float] | None, near_tie_margin: float) -> dict | None:
    """Explains a prompt's first free-running divergence, or None when the sequences agree.

    position: where the two greedy sequences first part (token_agreement's first_divergence).
    ref_row: the reference's full-vocabulary log-probs at that position (indexable by token id). Both sequences
      are equal before `position`, so this row has the context vLLM had when it chose its token.
    vllm_logprobs: what vLLM returned at that position (its top-k plus its own token), by token id; a token it
      did not return gets no probability (None), never a guess.
    The margin is the reference's p(own token) - p(vLLM's token), >= 0 for a greedy reference. A margin
    <= near_tie_margin is a near tie: the reference itself could not tell the two tokens apart by more than the
    bf16-vs-fp32 noise, so which one wins says nothing about the port. A larger margin, or sequences of different
    lengths, is a real divergence.
    """
    if position is None:
        return None
    ref_token = ref_tokens[position] if position < len(ref_tokens) else None
    vllm_token = vllm_tokens[position] if position < len(vllm_tokens) else None

    def ref_p(token):
        return None if token is None or ref_row is None else float(math.exp(float(ref_row[token])))

    def vllm_p(token):
        if token is None or vllm_logprobs is None or token not in vllm_logprobs:
            return None
        return float(math.exp(vllm_logprobs[token]))

    p_ref_ref, p_ref_vllm = ref_p(ref_token), ref_p(vllm_token)
    margin = None if p_ref_ref is None or p_ref_vllm is None else p_ref_ref - p_ref_vllm
    if margin is None:
        kind = DIVERGENCE
        why = (f"the sequences differ in length ({len(ref_tokens)} reference tokens, {len(vllm_tokens)} vLLM "
               f"tokens); no margin to compare")
    elif margin <= near_tie_margin:
        kind, why = NEAR_TIE, f"margin {margin:.4f} <= near_tie_margin {near_tie_margin:g}"
    else:
        kind, why = DIVERGENCE, f"margin {margin:.4f} > near_tie_margin {near_tie_margin:g}"
    p_vllm_ref, p_vllm_vllm = vllm_p(ref_token), vllm_p(vllm_token)
    if p_vllm_ref is not None and p_vllm_ref == p_vllm_vllm:
        # Seen on the default study: bf16 rounds both logits to the same value and vLLM's argmax takes one.
        why += "; vLLM gives both tokens the same probability (an exact tie in its logits)"
    return {"position": position, "kind": kind, "why": why, "ref_token": ref_token, "vllm_token": vllm_token,
            "p_ref_ref_token": p_ref_ref, "p_ref_vllm_token": p_ref_vllm, "margin": margin,
            "p_vllm_ref_token": p_vllm_ref, "p_vllm_vllm_token": p_vllm_vllm}


def free_running_summary(per_prompt: list[dict]) -> dict:
    """Raw (the seed's) and near-tie-aware agreement over prompts carrying token_agreement's counts and
    `first_divergence_detail`.

    token_agreement (raw): position-wise equal tokens / all tokens, whatever happened before.
    token_agreement_excluding_near_ties: agreeing_tokens / comparable_tokens, where per prompt of N tokens
      - no divergence: N agreeing of N comparable;
      - first divergence at d is a near tie: d agreeing of d comparable. The tokens after it are not comparable:
        the two sequences continue from different contexts, so position-wise equality there says nothing about
        the port (the teacher-forced metrics do compare those positions, on the reference's context);
      - first divergence at d is real: d agreeing of N comparable; from d on vLLM's sequence is wrong.
    None when nothing is comparable (every prompt's first token is a near tie).
    """
    equal = sum(p["equal_tokens"] for p in per_prompt)
    total = sum(p["total_tokens"] for p in per_prompt)
    details = [p.get("first_divergence_detail") for p in per_prompt]
    agreeing = comparable = 0
    for p, d in zip(per_prompt, details):
        if d is None:
            agreeing += p["total_tokens"]
            comparable += p["total_tokens"]
        else:
            agreeing += d["position"]
            comparable += d["position"] if d["kind"] == NEAR_TIE else p["total_tokens"]
    return {"prompts": len(per_prompt), "equal_tokens": equal, "total_tokens": total,
            "token_agreement": equal / total if total else 1.0,
            "near_ties": sum(1 for d in details if d and d["kind"] == NEAR_TIE),
            "real_divergences": sum(1 for d in details if d and d["kind"] == DIVERGENCE),
            "agreeing_tokens": agreeing, "comparable_tokens": comparable,
            "token_agreement_excluding_near_ties": agreeing / comparable if comparable else None}
