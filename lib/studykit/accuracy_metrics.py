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
    }
