import json
import math

import pytest

from studykit.stages.accuracy import compare as m


def cand_from_probs(probs: dict[int, float], k: int) -> dict[int, dict]:
    order = sorted(probs, key=probs.get, reverse=True)
    return {t: {"logprob": math.log(probs[t]), "rank": i + 1} for i, t in enumerate(order) if i < k}


def test_identical_distributions_agree_with_zero_kl():
    probs = {1: 0.6, 2: 0.25, 3: 0.1}  # 0.05 elsewhere
    cand = cand_from_probs(probs, 3)
    pos = m.position_metrics(1, 1, probs, [1, 2, 3], cand, 3)
    assert pos["top1_agree"] and pos["abs_prob_error"] == pytest.approx(0, abs=1e-12)
    assert pos["kl_ref_cand"] == pytest.approx(0, abs=1e-12) and pos["topk_overlap"] == 1
    assert m.token_agreement([1, 2, 3], [1, 2, 3]) == {"equal_tokens": 3, "total_tokens": 3,
                                                        "token_agreement": 1.0, "first_divergence": None}


def test_known_shift_gives_the_hand_computed_kl():
    ref = {1: 0.5, 2: 0.5}
    cand_probs = {1: 0.25, 2: 0.75}
    pos = m.position_metrics(1, 1, ref, [1, 2], cand_from_probs(cand_probs, 2), 2)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert pos["kl_ref_cand"] == pytest.approx(expected, rel=1e-9)
    assert pos["abs_prob_error"] == pytest.approx(0.25)
    assert not pos["top1_agree"]  # vLLM's top token is 2, the reference's is 1


def test_remaining_mass_bucket_is_used():
    # vLLM returned one token; both distributions keep the rest in one bucket each.
    ref_on = {7: 0.8}
    cand = {7: {"logprob": math.log(0.6), "rank": 1}}
    expected = 0.8 * math.log(0.8 / 0.6) + 0.2 * math.log(0.2 / 0.4)
    assert m.position_metrics(7, 7, ref_on, [7], cand, 1)["kl_ref_cand"] == pytest.approx(expected)


def test_reference_token_outside_topk_is_counted_not_filled():
    # vLLM returns the actual token with its true rank even when it is outside the top-k.
    cand = {1: {"logprob": math.log(0.7), "rank": 1}, 2: {"logprob": math.log(0.2), "rank": 2},
            9: {"logprob": math.log(0.01), "rank": 5}}
    ref_on = {1: 0.3, 2: 0.1, 9: 0.5}
    pos = m.position_metrics(9, 9, ref_on, [9, 1], cand, 2)
    assert pos["ref_token_outside_cand_topk"] and pos["ref_token_rank_in_cand"] == 5
    assert pos["abs_prob_error"] == pytest.approx(0.49)
    summary = m.summarize([pos])
    assert summary["ref_token_outside_cand_topk"] == 1
    text = json.dumps([pos, summary])
    assert "1e+09" not in text and "-1000000000" not in text
    assert all(abs(v) < 1e8 for v in _numbers([pos, summary]))


def test_missing_prompt_token_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="lacks the prompt token 4"):
        m.position_metrics(4, 4, {1: 0.5}, [1], {1: {"logprob": -0.1, "rank": 1}}, 1)


def test_first_divergence_and_length_mismatch():
    assert m.token_agreement([1, 2, 3, 4], [1, 2, 9, 4])["first_divergence"] == 2
    r = m.token_agreement([1, 2, 3], [1, 2])
    assert r["first_divergence"] == 2 and r["token_agreement"] == pytest.approx(2 / 3)


def _numbers(obj):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
