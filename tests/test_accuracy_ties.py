"""Free-running divergences: near ties against real divergences, the gate on real ones, and the typed records.
Pure functions on hand-made log-prob rows; the e2e accuracy test is the real check."""

import copy
import math

import numpy as np
import pytest
from studykit.stages.accuracy import compare as m
from studykit.stages.accuracy.stage import accuracy_checks, divergence_rows
from studykit.params import ParamsError, parse_study
from studykit.stages.accuracy.params import AccuracyParams
from studykit.schema import ResultError, validate_result

VOCAB = 50
A, B = 7, 11  # the reference's token and vLLM's token at the divergence
DEFAULT_MARGIN = AccuracyParams().near_tie_margin


def ref_row(probs: dict[int, float]) -> np.ndarray:
    """A full-vocabulary log-prob row: the given probabilities, the rest spread evenly."""
    rest = (1.0 - sum(probs.values())) / (VOCAB - len(probs))
    p = np.full(VOCAB, rest)
    for t, v in probs.items():
        p[t] = v
    return np.log(p).astype(np.float32)


def vllm_top(probs: dict[int, float]) -> dict[int, float]:
    return {t: math.log(v) for t, v in probs.items()}


def prompt(pid: str, ref: list[int], cand: list[int], row, top, margin: float) -> dict:
    agreement = m.token_agreement(ref, cand)
    detail = m.first_divergence_detail(agreement["first_divergence"], ref, cand, row, top, margin)
    return {"id": pid, **agreement, "first_divergence_detail": detail}


def test_the_issue_example_is_a_near_tie():
    # The issue's Chinese prompt at position 3: the reference gives its own token p 0.479 and vLLM's token
    # p 0.469; vLLM ranks the reference's token second with p 0.469.
    row = ref_row({A: 0.479, B: 0.469})
    top = vllm_top({B: 0.481, A: 0.469, 3: 0.01})
    d = m.first_divergence_detail(3, [1, 2, 3, A, 5], [1, 2, 3, B, 6], row, top, DEFAULT_MARGIN)
    assert d["kind"] == m.NEAR_TIE and d["position"] == 3
    assert (d["ref_token"], d["vllm_token"]) == (A, B)
    assert d["p_ref_ref_token"] == pytest.approx(0.479, abs=1e-6)
    assert d["p_ref_vllm_token"] == pytest.approx(0.469, abs=1e-6)
    assert d["margin"] == pytest.approx(0.010, abs=1e-6)
    assert d["p_vllm_ref_token"] == pytest.approx(0.469) and d["p_vllm_vllm_token"] == pytest.approx(0.481)
    assert "<=" in d["why"] and "same probability" not in d["why"]


def test_an_exact_tie_in_vllms_logits_is_said():
    # What the default study showed at all three divergences: vLLM gives both tokens the same probability.
    d = m.first_divergence_detail(0, [A], [B], ref_row({A: 0.1414, B: 0.1334}), vllm_top({A: 0.1353, B: 0.1353}),
                                  DEFAULT_MARGIN)
    assert d["kind"] == m.NEAR_TIE and "same probability" in d["why"]


def test_a_large_margin_is_a_real_divergence():
    d = m.first_divergence_detail(1, [1, A], [1, B], ref_row({A: 0.9, B: 0.05}), vllm_top({B: 0.6, A: 0.3}), 0.05)
    assert d["kind"] == m.DIVERGENCE and d["margin"] == pytest.approx(0.85, abs=1e-6)
    assert ">" in d["why"]


def test_the_tolerance_is_inclusive_and_nothing_above_it_is_a_tie():
    row = ref_row({A: 0.50, B: 0.40})
    margin = float(np.exp(row[A]) - np.exp(row[B]))
    assert m.first_divergence_detail(0, [A], [B], row, None, margin)["kind"] == m.NEAR_TIE
    assert m.first_divergence_detail(0, [A], [B], row, None, margin - 1e-6)["kind"] == m.DIVERGENCE


def test_a_token_vllm_did_not_return_gets_no_probability():
    # vLLM's answer lacks the reference's token (outside its top-k): None, not a guess.
    d = m.first_divergence_detail(0, [A], [B], ref_row({A: 0.5, B: 0.48}), vllm_top({B: 0.7}), 0.05)
    assert d["p_vllm_ref_token"] is None and d["p_vllm_vllm_token"] == pytest.approx(0.7)
    assert m.first_divergence_detail(0, [A], [B], ref_row({A: 0.5, B: 0.48}), None, 0.05)["p_vllm_vllm_token"] is None


def test_different_lengths_are_a_real_divergence_without_a_margin():
    d = m.first_divergence_detail(2, [1, 2, 3], [1, 2], ref_row({3: 0.9}), None, 0.05)
    assert d["kind"] == m.DIVERGENCE and d["margin"] is None and d["vllm_token"] is None
    assert "length" in d["why"]


def test_no_divergence_has_no_detail():
    assert m.first_divergence_detail(None, [1, 2], [1, 2], None, None, 0.05) is None


def test_vllm_logprob_keys_are_token_ids():
    assert m.token_id_logprobs({"token_id:42": -0.5, "token_id:7": -1.0}) == {42: -0.5, 7: -1.0}
    assert m.token_id_logprobs(None) is None
    with pytest.raises(ValueError, match="'Paris'.*return_tokens_as_token_ids"):
        m.token_id_logprobs({"Paris": -0.1})


def test_margin_shift_is_how_far_vllm_moves_the_references_top_two_margin():
    ref_on = {1: 0.5, 2: 0.3, 3: 0.1}
    cand = {1: {"logprob": math.log(0.4), "rank": 2}, 2: {"logprob": math.log(0.45), "rank": 1},
            3: {"logprob": math.log(0.1), "rank": 3}}
    pos = m.position_metrics(1, 1, ref_on, [1, 2, 3], cand, 3)
    assert pos["margin_shift"] == pytest.approx(abs((0.4 - 0.45) - (0.5 - 0.3)))  # 0.25
    # the reference's runner-up not among vLLM's returned tokens: no shift, not a guess
    lone = m.position_metrics(1, 1, {1: 0.5}, [1, 2], {1: cand[1]}, 1)
    assert lone["margin_shift"] is None
    assert m.summarize([pos, lone])["max_margin_shift"] == pytest.approx(0.25)
    assert m.summarize([lone])["max_margin_shift"] is None


# --- counting and the gate ---------------------------------------------------------------------------------

def issue_like_run(second_kind_margin: float) -> list[dict]:
    """The issue's shape: 5 prompts x 8 tokens, 4 identical, one parting at position 3 and nothing equal
    after it: raw agreement 35/40 = 0.875, below the 0.9 threshold (the issue saw 34/40)."""
    same = [prompt(f"p{i}", list(range(8)), list(range(8)), None, None, DEFAULT_MARGIN) for i in range(4)]
    ref = [1, 2, 3, A, 5, 6, 7, 8]
    cand = [1, 2, 3, B, 0, 0, 0, 0]
    row = ref_row({A: 0.479, B: 0.479 - second_kind_margin})
    return same + [prompt("zh", ref, cand, row, vllm_top({B: 0.481, A: 0.469}), DEFAULT_MARGIN)]


def checks_for(per_prompt, p=None):
    p = p or AccuracyParams()
    summary = {"per_prompt": per_prompt, "free_running": m.free_running_summary(per_prompt),
               "teacher_forced": {"positions": 40, "top1_agreement": 1.0, "mean_kl": 0.001}}
    return summary, accuracy_checks(summary, {"identical": True, "mismatched": []}, p)


def test_a_near_tie_does_not_fail_the_gate_though_the_raw_agreement_does():
    summary, checks = checks_for(issue_like_run(0.010))
    fr = summary["free_running"]
    assert fr["token_agreement"] == pytest.approx(35 / 40)
    assert fr["token_agreement"] < AccuracyParams().min_token_agreement
    assert (fr["near_ties"], fr["real_divergences"]) == (1, 0)
    # 4 x 8 agreeing + the 3 tokens before the near tie; the 5 after it are not comparable
    assert (fr["agreeing_tokens"], fr["comparable_tokens"]) == (35, 35)
    assert fr["token_agreement_excluding_near_ties"] == 1.0
    gate = checks[0]
    assert gate["status"] == "passed" and gate["metric"] == "accuracy.token_agreement_excluding_near_ties"
    assert "35/40" in gate["detail"] and "not gating" in gate["detail"]
    assert all(c["status"] == "passed" for c in checks)


def test_a_real_divergence_of_large_margin_fails_the_gate():
    summary, checks = checks_for(issue_like_run(0.40))
    fr = summary["free_running"]
    assert (fr["near_ties"], fr["real_divergences"]) == (0, 1)
    # the real divergence's prompt keeps all 8 tokens comparable, only the 3 before it agree
    assert (fr["agreeing_tokens"], fr["comparable_tokens"]) == (35, 40)
    gate = checks[0]
    assert gate["status"] == "failed" and gate["actual"] == pytest.approx(35 / 40)
    assert "zh@3 (margin 0.4000)" in gate["detail"]


def test_a_late_real_divergence_is_counted_not_magnified():
    per_prompt = [prompt("late", list(range(16)), list(range(15)) + [49], ref_row({15: 0.9, 49: 0.01}), None,
                         0.05)]
    fr = m.free_running_summary(per_prompt)
    assert fr["real_divergences"] == 1 and fr["token_agreement_excluding_near_ties"] == pytest.approx(15 / 16)


def test_nothing_comparable_is_not_run_not_passed():
    per_prompt = [prompt("z", [A, 1], [B, 1], ref_row({A: 0.5, B: 0.49}), None, 0.05)]
    summary, checks = checks_for(per_prompt)
    assert summary["free_running"]["token_agreement_excluding_near_ties"] is None
    assert checks[0]["status"] == "not_run" and "near tie" in checks[0]["detail"]


def test_the_margin_param_decides():
    strict = AccuracyParams(near_tie_margin=0.0)
    per_prompt = issue_like_run(0.010)
    for pp in per_prompt:  # reclassify with the stricter tolerance, as the stage would have
        pp["first_divergence_detail"] = m.first_divergence_detail(
            pp["first_divergence"], [1, 2, 3, A, 5, 6, 7, 8], [1, 2, 3, B, 0, 0, 0, 0],
            ref_row({A: 0.479, B: 0.469}), None, strict.near_tie_margin) if pp["id"] == "zh" else None
    assert checks_for(per_prompt, strict)[1][0]["status"] == "failed"


# --- report rows, result schema, params ------------------------------------------------------------------

def test_divergence_rows_list_both_kinds_with_the_margin():
    per_prompt = issue_like_run(0.010) + [prompt("en", [1, A], [1, B], ref_row({A: 0.9, B: 0.05}), None, 0.05)]
    rows = divergence_rows({"per_prompt": per_prompt})
    assert [(r["prompt"], r["position"], r["kind"]) for r in rows] == [("zh", 3, "near_tie"), ("en", 1, "divergence")]
    assert rows[0]["margin"] == pytest.approx(0.010, abs=1e-6) and rows[1]["margin"] == pytest.approx(0.85, abs=1e-6)
    assert divergence_rows({"per_prompt": issue_like_run(0.01)[:4]}) == []


def accuracy_doc(per_prompt: list[dict]) -> dict:
    return {"stage": "accuracy", "study": "s", "status": "passed", "started_utc": "t", "ended_utc": "t",
            "wall_seconds": 1.0, "free_running": m.free_running_summary(per_prompt),
            "per_prompt": per_prompt, "thresholds": {"near_tie_margin": 0.05}}


def test_results_with_divergences_fit_the_schema_and_a_wrong_kind_does_not():
    per_prompt = issue_like_run(0.010)
    model = validate_result("accuracy", accuracy_doc(per_prompt))
    assert model.per_prompt[4].first_divergence_detail.kind == "near_tie"
    assert model.free_running.token_agreement_excluding_near_ties == 1.0
    bad = copy.deepcopy(per_prompt)
    bad[4]["first_divergence_detail"]["kind"] = "tie-ish"
    with pytest.raises(ResultError, match="kind"):
        validate_result("accuracy", accuracy_doc(bad))
    bad = copy.deepcopy(per_prompt)
    bad[4]["first_divergence_detail"]["marginn"] = 0.1
    with pytest.raises(ResultError, match="marginn"):
        validate_result("accuracy", accuracy_doc(bad))


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_a_bad_margin_is_named(value):
    with pytest.raises(ParamsError, match="accuracy.near_tie_margin"):
        parse_study({"name": "s", "platform": "cpu", "model": {"source": "builtin", "id": "smollm2-135m-instruct"},
                         "accuracy": {"near_tie_margin": value}})
