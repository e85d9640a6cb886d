"""The accuracy stage: the comparison functions on hand-made log-prob rows (KL, top-k, near ties judged by both
engines against real divergences, the resumed walk, the calibration), prompt files refused before any model
loads, its checks fed right and wrong results, the typed result, and a stage that fails on its input (what it had
is kept). The recorded default study replayed (clean, sampler slip, flattened) is test_accuracy_replay.py; the e2e
accuracy test is the real run."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from conftest import DATA, by_id, run_cli, tiny_study, typed_result
from studykit.params import ParamsError, parse_study
from studykit.schema import ResultError, validate_result
from studykit.stages.accuracy import checks
from studykit.stages.accuracy import compare as m
from studykit.stages.accuracy.params import AccuracyParams
from studykit.stages.accuracy.prompts import PromptFileError, load_prompts, tokenize_prompts
from studykit.stages.accuracy.stage import divergence_rows

GOLDEN = DATA / "runs"
IDS = ("accuracy.real_divergences", "accuracy.min_top1_agreement", "accuracy.max_mean_kl", "accuracy.determinism")


# --- the comparison, position by position -------------------------------------------------------------------------------

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


# --- free-running divergences: near ties judged by both engines ---------------------------------------------------

A, B = 7, 11  # the reference's token and vLLM's token at the divergence
MARGIN, KL = 0.2, 0.02


def judge(ref_p: dict[int, float], vllm_p: dict[int, float], margin=MARGIN, kl=KL, vllm_token=B):
    """judge_divergence at position 3 with the two distributions given as probabilities over the same tokens."""
    return m.judge_divergence(3, A, vllm_token, ref_p, {t: math.log(v) for t, v in vllm_p.items()}, margin, kl)


def test_a_close_call_in_both_engines_with_agreeing_distributions_is_a_near_tie():
    # the example: the reference 0.479 / 0.469, vLLM 0.481 / 0.469
    d = judge({A: 0.479, B: 0.469, 3: 0.01}, {B: 0.481, A: 0.469, 3: 0.01})
    assert d["kind"] == m.NEAR_TIE and (d["position"], d["ref_token"], d["vllm_token"]) == (3, A, B)
    assert d["margin"] == pytest.approx(0.010) and d["vllm_margin"] == pytest.approx(0.012)
    assert d["p_vllm_top"] == pytest.approx(0.481)
    expected_kl = (0.479 * math.log(0.479 / 0.469) + 0.469 * math.log(0.469 / 0.481)
                   + 0.042 * math.log(0.042 / 0.040))  # the two tokens, token 3 (equal) and the rest bucket
    assert d["kl"] == pytest.approx(expected_kl, rel=1e-6) and "same probability" not in d["why"]


def test_an_exact_tie_in_vllms_logits_is_a_near_tie_and_said():
    d = judge({A: 0.1414, B: 0.1334}, {A: 0.1353, B: 0.1353})
    assert d["kind"] == m.NEAR_TIE and d["vllm_margin"] == 0 and "same probability" in d["why"]


def test_a_token_vllm_ranks_below_its_own_top_is_a_sampler_defect():
    # flat in both engines, margins tiny: still real, because a greedy engine emitted its second choice
    d = judge({A: 0.20, B: 0.19}, {A: 0.20, B: 0.19})
    assert d["kind"] == m.DIVERGENCE and "sampler defect" in d["why"]


def test_a_large_reference_margin_is_real():
    d = judge({A: 0.60, B: 0.30}, {B: 0.46, A: 0.45})
    assert d["kind"] == m.DIVERGENCE and d["margin"] == pytest.approx(0.30) and "reference margin" in d["why"]


def test_a_large_vllm_margin_is_real():
    # the reference cannot tell the tokens apart, but vLLM is sure of its own: that is not rounding
    d = judge({A: 0.45, B: 0.44}, {B: 0.80, A: 0.10})
    assert d["kind"] == m.DIVERGENCE and d["vllm_margin"] == pytest.approx(0.70) and "vLLM's margin" in d["why"]


def test_a_flat_position_is_no_free_pass():
    # both margins tiny, vLLM emitted its top, but the rest of the distributions disagree
    d = judge({A: 0.10, B: 0.09, 3: 0.60}, {B: 0.10, A: 0.09, 3: 0.05})
    assert d["kind"] == m.DIVERGENCE and d["kl"] > KL and "distributions differ" in d["why"]


def test_the_reference_token_missing_from_vllms_answer_is_real():
    d = judge({A: 0.30, B: 0.29}, {B: 0.5})
    assert d["kind"] == m.DIVERGENCE and d["p_vllm_ref_token"] is None and "does not rank" in d["why"]


def test_the_margins_are_inclusive():
    ref_p, vllm_p = {A: 0.50, B: 0.40}, {B: 0.45, A: 0.45}
    assert judge(ref_p, vllm_p, margin=0.5 - 0.4, kl=1)["kind"] == m.NEAR_TIE
    assert judge(ref_p, vllm_p, margin=0.1 - 1e-9, kl=1)["kind"] == m.DIVERGENCE


def test_no_token_or_no_logprob_is_real():
    assert m.judge_divergence(2, A, None, {A: 0.9}, None, 1, 1)["kind"] == m.DIVERGENCE
    d = m.judge_divergence(2, A, B, {A: 0.5, B: 0.5}, None, 1, 1)
    assert d["kind"] == m.DIVERGENCE and "no log-probability" in d["why"]


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
    lone = m.position_metrics(1, 1, {1: 0.5}, [1, 2], {1: cand[1]}, 1)
    assert lone["margin_shift"] is None
    assert m.summarize([pos, lone])["max_margin_shift"] == pytest.approx(0.25)


# --- the walk: every position judged on the reference's context ---------------------------------------------------

def engine(choices: dict[int, int], probs: dict[int, dict[int, float]] | None = None, calls=None):
    """A stand-in vLLM: on the reference's context it emits the reference's token (REF below) except at the
    positions in `choices`; its log-probabilities at a position are probs[j] (default: its token 0.6, the other
    0.3)."""
    def complete(start, max_tokens):
        if calls is not None:
            calls.append((start, max_tokens))
        tokens, tops = [], []
        for j in range(start, start + max_tokens):
            tok = choices.get(j, REF[j])
            p = (probs or {}).get(j) or {tok: 0.6, REF[j] if tok != REF[j] else 99: 0.3}
            tokens.append(tok)
            tops.append({t: math.log(v) for t, v in p.items()})
            if tok != REF[j]:  # a real engine goes on from its own token; the walk never reads past a divergence
                tokens += [0] * (start + max_tokens - j - 1)
                tops += [None] * (start + max_tokens - j - 1)
                break
        return {"tokens": tokens, "top_logprobs": tops, "text": ""}
    return complete


REF = [20, 21, 22, 23, 24, 25, 26, 27]  # none of them A or B


def flat_ref(j, ids):
    return {t: 0.45 if t == REF[j] else 0.44 for t in ids}


def test_a_clean_engine_takes_one_request_and_agrees_everywhere():
    calls = []
    w = m.judge_free_running(REF, engine({}, calls=calls), flat_ref, MARGIN, KL)
    assert w["verdicts"] == [m.AGREE] * 8 and w["divergences"] == [] and calls == [(0, 8)]


def test_after_a_divergence_vllm_resumes_from_the_references_prefix():
    calls = []
    tie = {B: 0.45, REF[2]: 0.45}  # an exact tie in vLLM at position 2
    w = m.judge_free_running(REF, engine({2: B, 5: B}, {2: tie}, calls), flat_ref, MARGIN, 10)
    assert calls == [(0, 8), (3, 5), (6, 2)]  # one more request per divergence, from the next position
    assert w["verdicts"] == [m.AGREE, m.AGREE, m.NEAR_TIE, m.AGREE, m.AGREE, m.DIVERGENCE, m.AGREE, m.AGREE]
    assert [d["position"] for d in w["divergences"]] == [2, 5]
    assert "sampler defect" not in w["divergences"][1]["why"] and "vLLM's margin" in w["divergences"][1]["why"]


def test_a_slip_at_every_position_is_seen_at_every_position():
    slips = {j: 50 + j for j in range(8)}
    probs = {j: {REF[j]: 0.5, 50 + j: 0.49} for j in range(8)}  # vLLM ranks its own emitted token second
    w = m.judge_free_running(REF, engine(slips, probs), flat_ref, MARGIN, 10)
    assert w["verdicts"] == [m.DIVERGENCE] * 8 and len(w["requests"]) == 8
    assert all("sampler defect" in d["why"] for d in w["divergences"])


def test_a_short_answer_leaves_every_missing_position_real():
    def short(start, max_tokens):
        return {"tokens": REF[start:start + 5], "top_logprobs": [{t: -0.1} for t in REF[start:start + 5]], "text": ""}
    w = m.judge_free_running(REF, short, flat_ref, MARGIN, KL)
    assert w["verdicts"] == [m.AGREE] * 5 + [m.DIVERGENCE] * 3 and len(w["requests"]) == 1
    assert all("no token" in d["why"] for d in w["divergences"])


def prompt_record(pid, verdicts, equal=8):
    return {"id": pid, "equal_tokens": equal, "total_tokens": len(verdicts), "token_agreement": equal / len(verdicts),
            "verdicts": verdicts, "divergences": [], "requests": [{}] * (1 + sum(v != m.AGREE for v in verdicts))}


def test_the_summary_counts_positions():
    per_prompt = [prompt_record("a", [m.AGREE] * 8),
                  prompt_record("b", [m.AGREE, m.NEAR_TIE] + [m.AGREE] * 5 + [m.DIVERGENCE], equal=1)]
    fr = m.free_running_summary(per_prompt)
    assert (fr["positions"], fr["agreeing_positions"], fr["near_ties"], fr["real_divergences"]) == (16, 14, 1, 1)
    assert fr["requests"] == 4 and fr["position_agreement"] == pytest.approx(14 / 16)
    assert (fr["equal_tokens"], fr["total_tokens"], fr["token_agreement"]) == (9, 16, pytest.approx(9 / 16))


# --- calibration ---------------------------------------------------------------------------------------------------

def test_calibration_measures_the_noise_between_two_rows():
    p = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    q = np.log(np.array([[0.4, 0.35, 0.2, 0.05]]))
    (c,) = m.calibration_positions(p, q, [0], 2)
    assert c["abs_prob_error"] == pytest.approx(0.1)
    assert c["margin_shift"] == pytest.approx(abs((0.4 - 0.35) - (0.5 - 0.3)))
    assert c["top1_agree"]
    # q's top 2 (tokens 0, 1) plus the rest bucket
    assert c["kl"] == pytest.approx(0.5 * math.log(0.5 / 0.4) + 0.3 * math.log(0.3 / 0.35) + 0.2 * math.log(0.2 / 0.25))
    s = m.calibration_summary([c, {**c, "abs_prob_error": 0.3, "top1_agree": False}])
    assert s["positions"] == 2 and s["top1_disagreements"] == 1 and s["prob_max_error"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="no position"):
        m.calibration_summary([])


# --- report rows, result schema, params ------------------------------------------------------------------

def walked_prompt(pid, choices, probs=None):
    w = m.judge_free_running(REF, engine(choices, probs), flat_ref, MARGIN, KL)
    return {"id": pid, **m.token_agreement(REF, w["requests"][0]["tokens"]), "verdicts": w["verdicts"],
            "divergences": w["divergences"], "requests": w["requests"],
            "first_divergence_detail": w["divergences"][0] if w["divergences"] else None}


def test_divergence_rows_list_every_judged_position():
    per_prompt = [walked_prompt("zh", {3: B}, {3: {B: 0.45, REF[3]: 0.45}}), walked_prompt("en", {1: B, 4: B})]
    rows = divergence_rows({"per_prompt": per_prompt})
    assert [(r["prompt"], r["position"], r["kind"]) for r in rows] == [
        ("zh", 3, "near_tie"), ("en", 1, "divergence"), ("en", 4, "divergence")]
    assert divergence_rows(accuracy_result(per_prompt)) == rows  # the typed result gives the same rows
    # a run from before the resumed comparison: its first divergences
    old = {"per_prompt": [{"id": "x", "first_divergence_detail": per_prompt[0]["divergences"][0]}]}
    assert [(r["prompt"], r["position"]) for r in divergence_rows(old)] == [("x", 3)]


def accuracy_result(per_prompt, teacher_forced=None):
    return typed_result("accuracy", {
        "per_prompt": per_prompt, "free_running": m.free_running_summary(per_prompt),
        "teacher_forced": teacher_forced or {"positions": 8, "top1_agreement": 1.0, "mean_kl": 0.001},
        "determinism": {"passes": 2, "identical": True, "mismatched": []},
        "thresholds": {"min_top1_agreement": 0.95, "max_mean_kl": 0.002, "near_tie_margin": MARGIN}})


def accuracy_doc(per_prompt: list[dict]) -> dict:
    return {"stage": "accuracy", "study": "s", "status": "passed", "started_utc": "t", "ended_utc": "t",
            "wall_seconds": 1.0, "free_running": m.free_running_summary(per_prompt),
            "per_prompt": per_prompt, "thresholds": {"near_tie_margin": 0.05}}


def test_results_with_divergences_fit_the_schema_and_a_wrong_kind_does_not():
    per_prompt = [walked_prompt("zh", {3: B}, {3: {B: 0.45, REF[3]: 0.45}})]
    model = validate_result("accuracy", accuracy_doc(per_prompt))
    assert model.per_prompt[0].divergences[0].kind == "near_tie" and model.free_running.near_ties == 1
    bad = copy.deepcopy(per_prompt)
    bad[0]["divergences"][0]["kind"] = "tie-ish"
    with pytest.raises(ResultError, match="kind"):
        validate_result("accuracy", accuracy_doc(bad))
    bad = copy.deepcopy(per_prompt)
    bad[0]["divergences"][0]["marginn"] = 0.1
    with pytest.raises(ResultError, match="marginn"):
        validate_result("accuracy", accuracy_doc(bad))


@pytest.mark.parametrize("field,value", [("near_tie_margin", -0.1), ("near_tie_margin", 1.5),
                                         ("max_real_divergences", -1), ("max_mean_kl", -0.1)])
def test_a_bad_threshold_is_named(field, value):
    with pytest.raises(ParamsError, match=f"accuracy.{field}"):
        parse_study({"name": "s", "platform": "cpu", "model": {"source": "builtin", "id": "smollm2-135m-instruct"},
                     "accuracy": {field: value}})


# --- prompt files ----------------------------------------------------------------------------------------------

def test_default_set_has_chinese_and_english_chat_and_raw():
    prompts = load_prompts("builtin:default")
    assert len(prompts) >= 8
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in p["text"]) for p in prompts)
    assert any(p["text"].isascii() for p in prompts)
    assert {p["chat"] for p in prompts} == {True, False}


@pytest.mark.parametrize("content,needle", [
    (None, "does not exist"),
    (b"", "has no prompts"),
    (b"\xff\xfe bad", "is not UTF-8"),
    (b'{"text": "ok"}\n{not json}\n', ":2: not a JSON object"),
    (b'{"txt": "x"}\n', "non-empty string \"text\""),
    (b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "id 'a' is used twice"),
])
def test_bad_files(tmp_path, content, needle):
    path = tmp_path / "prompts.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PromptFileError, match=needle.replace("(", r"\(")):
        load_prompts(str(path))


def test_prompt_longer_than_max_model_len(default_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(default_model_dir))
    prompts = [{"id": "long", "text": "word " * 300, "chat": False}]
    with pytest.raises(PromptFileError, match="prompt 'long' has 30[0-9] tokens.*exceeds max_model_len 256"):
        tokenize_prompts(prompts, tok, 256, 16)


def test_stage_fails_on_bad_file_before_any_server(tmp_path):
    bad = tmp_path / "empty.jsonl"
    bad.write_text("")
    params = tiny_study(tmp_path, {"stages": ["accuracy"], "accuracy": {"prompts_file": str(bad)}})
    outputs = tmp_path / "outputs"
    result = run_cli("run", str(params), env={"STUDYKIT_OUTPUTS": str(outputs)})
    assert result.returncode == 1
    assert "has no prompts" in result.stdout
    run_dir = next(outputs.glob("*/*/"))
    assert not list((run_dir / "logs").glob("*.log"))  # no server was started


# --- the checks, fed right and wrong results ------------------------------------------------------------------

def good_summary():
    per_prompt = [prompt_record("a", [m.AGREE] * 16, equal=16)]
    return {"per_prompt": per_prompt, "free_running": m.free_running_summary(per_prompt),
            "teacher_forced": {"positions": 16, "top1_agreement": 1.0, "mean_kl": 0.001},
            "determinism": {"passes": 2, "identical": True, "mismatched": []},
            "thresholds": {"near_tie_margin": 0.2, "max_near_tie_kl": 0.02, "min_top1_agreement": 0.95,
                           "max_mean_kl": 0.002, "max_real_divergences": 0},
            "threshold_basis": {"max_mean_kl": {"value": 0.002, "source": "calibration",
                                                "measurement": "calibration.mean_kl", "measured": 0.0005,
                                                "multiple": 4},
                                "min_top1_agreement": {"value": 0.95, "source": "params"}}}


def test_accuracy_checks_pass_fail_and_not_run():
    p = AccuracyParams()
    res = checks.checks(p, typed_result("accuracy", good_summary()))
    assert [(c.id, c.status) for c in res] == [(i, "passed") for i in IDS]
    assert "4 x calibration.mean_kl 0.0005" in by_id(res, "accuracy.max_mean_kl")[0].detail
    assert "from params" in by_id(res, "accuracy.min_top1_agreement")[0].detail
    bad = good_summary()
    bad["per_prompt"] = [prompt_record("a", [m.AGREE] * 15 + [m.DIVERGENCE], equal=15)]
    bad["free_running"] = m.free_running_summary(bad["per_prompt"])
    bad["teacher_forced"].update(top1_agreement=0.5, mean_kl=1.0)
    bad["determinism"].update(identical=False, mismatched=["a"])
    res = checks.checks(p, typed_result("accuracy", bad))
    assert [(c.id, c.status) for c in res] == [(i, "failed") for i in IDS]
    assert by_id(res, "accuracy.real_divergences")[0].actual == 1
    none = good_summary()
    none["teacher_forced"] = {"positions": 0}
    res = checks.checks(p, typed_result("accuracy", none))
    assert [c.status for c in res][1:3] == ["not_run", "not_run"]
    assert by_id(res, "accuracy.max_mean_kl")[0].detail == "no teacher-forced position was compared"


def test_nothing_comparable_fails_never_not_run():
    empty = good_summary()
    empty["free_running"]["positions"] = 0
    (c,) = by_id(checks.checks(AccuracyParams(), typed_result("accuracy", empty)), "accuracy.real_divergences")
    assert c.status == "failed" and "judged 0 of 16" in c.detail
    partial = good_summary()
    partial["free_running"]["positions"] = 10  # fewer positions judged than generated
    (c,) = by_id(checks.checks(AccuracyParams(), typed_result("accuracy", partial)), "accuracy.real_divergences")
    assert c.status == "failed"


def test_each_threshold_is_compared_against_its_own_recorded_number():
    p = AccuracyParams()
    th = good_summary()["thresholds"]
    low_top1 = good_summary()
    low_top1["teacher_forced"]["top1_agreement"] = th["min_top1_agreement"] - 0.01
    res = checks.checks(p, typed_result("accuracy", low_top1))
    assert {c.id: c.status for c in res} == {**dict.fromkeys(IDS, "passed"), "accuracy.min_top1_agreement": "failed"}
    high_kl = good_summary()
    high_kl["teacher_forced"]["mean_kl"] = th["max_mean_kl"] + 0.0001
    res = checks.checks(p, typed_result("accuracy", high_kl))
    assert {c.id: c.status for c in res} == {**dict.fromkeys(IDS, "passed"), "accuracy.max_mean_kl": "failed"}
    at_kl = good_summary()
    at_kl["teacher_forced"]["mean_kl"] = th["max_mean_kl"]  # the threshold itself is allowed
    assert all(c.status == "passed" for c in checks.checks(p, typed_result("accuracy", at_kl)))
    unrecorded = good_summary()
    del unrecorded["thresholds"]["max_mean_kl"]
    (c,) = by_id(checks.checks(p, typed_result("accuracy", unrecorded)), "accuracy.max_mean_kl")
    assert c.status == "not_run" and "calibration" in c.detail


def test_the_recorded_failing_run_fails_on_mean_kl_with_its_params_threshold():
    """golden-failed ran with max_mean_kl 0 in its params: a params threshold is used as set."""
    doc = json.loads((GOLDEN / "golden-failed" / "results" / "accuracy.json").read_text())
    assert doc["params"]["max_mean_kl"] == 0.0
    values, basis = m.derive_thresholds({"max_mean_kl": 0.0}, {"positions": 144, "top1_disagreements": 4,
                                                               "max_margin_shift": 0.06, "max_kl": 0.006,
                                                               "mean_kl": 0.0008})
    data = {"teacher_forced": doc["teacher_forced"], "thresholds": values, "threshold_basis": basis}
    (c,) = by_id(checks.checks(AccuracyParams(), typed_result("accuracy", data)), "accuracy.max_mean_kl")
    assert c.status == "failed" and c.expected == 0.0 and "from params" in c.detail


def test_determinism_that_names_a_mismatch_is_not_passed():
    self_contradicting = good_summary()
    self_contradicting["determinism"]["mismatched"] = ["a"]  # identical stays True
    (c,) = by_id(checks.checks(AccuracyParams(), typed_result("accuracy", self_contradicting)), "accuracy.determinism")
    assert c.status == "failed" and "['a']" in c.detail


def test_a_result_without_summaries_is_not_run_everywhere():
    """A stage that failed before comparing anything: every check says why, none passes."""
    res = checks.checks(AccuracyParams(), typed_result("accuracy", {}))
    assert [(c.id, c.status) for c in res] == [(i, "not_run") for i in IDS]


# --- the stage on bad input ---------------------------------------------------------------------------------

def test_run_fails_on_a_bad_prompt_file_and_keeps_what_it_had(tmp_path):
    """The prompt file is read first: the stage fails naming it, before the checkpoint is even looked at."""
    from studykit.runner.context import StageFailed, open_stage
    from studykit.stages.accuracy import stage

    bad = tmp_path / "empty.jsonl"
    bad.write_text("")
    ctx = open_stage("accuracy", str(tmp_path / "run"), str(tiny_study(tmp_path, {"accuracy": {"prompts_file": str(bad)}})))
    p = ctx.params({})
    with pytest.raises(StageFailed, match="has no prompts"):
        stage.run(ctx, p)
    assert ctx._model_dir is None  # never resolved
    doc = json.loads((tmp_path / "run" / "results" / "accuracy.json").read_text())
    assert doc["status"] == "failed" and "PromptFileError" in doc["error"] and "has no prompts" in doc["error"]
    assert doc["params"]["prompts_file"] == str(bad) and doc["thresholds"] == {}  # no calibration was reached
    assert doc["reference"] is None and doc["per_prompt"] == []
